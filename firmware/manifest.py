# Manifest for a custom MicroPython build with the hashtrail firmware frozen in.
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/hashtrail/firmware/manifest.py
#
# (ESP32_GENERIC_S3 / ESP32_GENERIC_C3 likewise.) MicroPython's build runs this file with
# tools/manifestfile.py: relative paths resolve against this file's folder, $(PORT_DIR)
# is the port being built (see docs.micropython.org, "MicroPython manifest files").
#
# Why freeze: frozen modules are bytecode executed from flash, with their constants
# (strings, bytes) in flash too. Nothing is compiled or loaded into RAM at import, and
# the P-256 comb table p256_table.COMB (16,320 bytes) costs no heap at all.
#
# The firmware is frozen as the package "hashtrail" (firmware/lib/hashtrail/), imported
# as on a board that got it from `hashtrail deploy` or mip (/lib/hashtrail/).
#
# What a frozen board does with p256_table.bin: nothing. p256.py reads the table from
# a p256_table.bin next to its own module file (the .mpy deploy ships
# /lib/hashtrail/p256_table.bin), else imports p256_table.COMB. A frozen p256's
# __file__ is its path inside the image ("hashtrail/p256.py", no folder before the
# package), so it looks for no table file and takes the frozen constant from flash.
# The file is not frozen: a manifest freezes only .py/.mpy.
#
# Not frozen:
# - main.py and boot.py: stay files on the board's filesystem (copy them with
#   `mpremote cp firmware/main.py firmware/boot.py :`, and the board definition with
#   `mpremote cp boards/esp32.json :board.json`). A frozen main.py would run at every
#   boot even with no main.py on the filesystem, so the app could no longer be switched
#   off without reflashing.
# - the virtual board's modules (VIRTUAL_ONLY): board_unix.py is the board layer of the
#   MicroPython unix port (boardcfg names it only for board "unix"), blockdev_file.py
#   is the device tests' file-backed block device. Neither is imported on an ESP32.
#
# Frozen modules come before /lib in sys.path (["", ".frozen", "/lib"]): a board that
# once ran `hashtrail deploy` keeps its old /lib/hashtrail files but imports the frozen
# package. tests/host/test_manifest.py runs this file with recording versions of the
# manifest functions and checks it freezes every module a board imports.

# The port's own frozen modules (_boot.py, inisetup.py, flashbdev.py, mip, ...): a
# FROZEN_MANIFEST replaces the board's manifest, so it must include the port's.
include("$(PORT_DIR)/boards/manifest.py")

VIRTUAL_ONLY = ("board_unix.py", "blockdev_file.py")


def _firmware_modules():
    import os  # CPython's os: manifests run on the build host

    return sorted(n for n in os.listdir("lib/hashtrail")
                  if n.endswith(".py") and n not in VIRTUAL_ONLY)


package("hashtrail", files=_firmware_modules(), base_path="lib")
