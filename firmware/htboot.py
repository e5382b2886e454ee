# htboot.py: the firmware-update switch that boot.py runs before the application, when
# an update is pending (docs/DEVICE.md "Firmware updates").
#
# Why a module and not boot.py itself: boot.py is compiled from source at every boot,
# and compiling this much code left the heap fragmented for the rest of the run (with
# MQTT at the 100 KB budget the application then could not load its MQTT client). This
# module is compiled to .mpy like the rest, and boot.py loads it only when there is
# something to do (the marker /ht/update or a roll-back to finish). It lives beside
# boot.py at the root of the filesystem (/htboot.mpy, put there by deploy and image),
# outside /lib/hashtrail, so an update never replaces the code that can take it back.
#
# It switches in a committed firmware update, and takes it back when the new
# firmware does not prove itself (docs/DEVICE.md "Firmware updates"). Every step is one
# littlefs rename or remove, decided by what is on flash, so a power cut anywhere is
# finished at the next boot and the device runs the old firmware complete or the new one:
# - switch: with the marker /ht/update and a complete /lib/hashtrail.new (the update
#   module renames the marker into place only after every staged file matched its
#   signed hash): /lib/hashtrail -> /lib/hashtrail.old, /lib/hashtrail.new ->
#   /lib/hashtrail.
# - trial: while the marker and /lib/hashtrail.old are there, the new firmware has not
#   yet opened its log and recorded the update (fwboot.py, which then removes both);
#   each boot counts one try in /ht/update.try. At the third boot without that proof:
# - roll back: /lib/hashtrail -> /lib/hashtrail.bad, /lib/hashtrail.old ->
#   /lib/hashtrail, the count removed, the marker renamed to /ht/update.reverted (the
#   old firmware's fwboot appends the update-reverted entry, kind 8, from it and removes
#   it: the chain says the update was tried and taken back), then the rejected folder.
import os


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _rm(p):
    if _exists(p):
        for n in os.listdir(p):
            os.remove(p + "/" + n)
        os.rmdir(p)


def run(base=""):
    """The switch, trial count or roll-back due now; `base` prefixes every path (a
    device test mounts its flash under a folder)."""
    lib = base + "/lib/hashtrail"
    marker = base + "/ht/update"
    tries = base + "/ht/update.try"
    if _exists(lib + ".bad"):  # a roll-back to finish
        if not _exists(lib) and _exists(lib + ".old"):
            os.rename(lib + ".old", lib)
        if _exists(tries):
            os.remove(tries)
        if _exists(marker):
            os.rename(marker, marker + ".reverted")
        _rm(lib + ".bad")
        return
    if not _exists(marker):
        return
    if _exists(lib + ".new"):
        if _exists(lib):
            _rm(lib + ".old")  # an older update's leftovers
            os.rename(lib, lib + ".old")
        os.rename(lib + ".new", lib)
    if _exists(lib + ".old"):
        n = 0
        if _exists(tries):
            with open(tries) as f:
                n = len(f.read())
        if n >= 2:
            os.rename(lib, lib + ".bad")
            os.rename(lib + ".old", lib)
            os.remove(tries)
            os.rename(marker, marker + ".reverted")
            _rm(lib + ".bad")
            print("hashtrail: the new firmware did not start twice: rolled back")
        else:
            with open(tries, "a") as f:
                f.write("x")  # one byte per try: an append, no rename needed
