# The device firmware's package: /lib/hashtrail/ on a board (hashtrail deploy, mip), or
# frozen as "hashtrail" in a custom build (firmware/manifest.py). One namespace, so no
# module here collides with another package's in /lib (a user's own `cbor` or `link`).
# Modules import each other as `from hashtrail import cbor`.
#
#   drop(name)   forget the submodule hashtrail.<name>: boot-only modules (boardcfg,
#                keyfile, logscan, bootcheck, bootfind) are imported, used once and
#                dropped, so their code is not resident while the app runs. Importing
#                a submodule also binds it in this package's namespace, so leaving
#                sys.modules alone would not free it.
import sys


def drop(name):
    sys.modules.pop("hashtrail." + name, None)
    globals().pop(name, None)
