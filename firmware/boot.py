# boot.py: runs first at every boot, soft resets included. Kept minimal on purpose:
# the application lives in main.py, and nothing here may stop the REPL from being
# reachable (a failing boot.py would make a board hard to recover without reflashing).
#
# It also switches in a committed firmware update, and takes it back when the new
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
#   /lib/hashtrail, the count and the marker removed, then the rejected folder.
import gc
import os

_L = "/lib/hashtrail"


def _ht_exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _ht_rm(p):
    if _ht_exists(p):
        for n in os.listdir(p):
            os.remove(p + "/" + n)
        os.rmdir(p)


def _ht_boot():
    if _ht_exists(_L + ".bad"):  # a roll-back to finish
        if not _ht_exists(_L) and _ht_exists(_L + ".old"):
            os.rename(_L + ".old", _L)
        if _ht_exists("/ht/update.try"):
            os.remove("/ht/update.try")
        if _ht_exists("/ht/update"):
            os.remove("/ht/update")
        _ht_rm(_L + ".bad")
        return
    if not _ht_exists("/ht/update"):
        return
    if _ht_exists(_L + ".new"):
        if _ht_exists(_L):
            _ht_rm(_L + ".old")  # an older update's leftovers
            os.rename(_L, _L + ".old")
        os.rename(_L + ".new", _L)
    if _ht_exists(_L + ".old"):
        n = 0
        if _ht_exists("/ht/update.try"):
            with open("/ht/update.try") as f:
                n = len(f.read())
        if n >= 2:
            os.rename(_L, _L + ".bad")
            os.rename(_L + ".old", _L)
            os.remove("/ht/update.try")
            os.remove("/ht/update")
            _ht_rm(_L + ".bad")
            print("hashtrail: the new firmware did not start twice: rolled back")
        else:
            with open("/ht/update.try", "a") as f:
                f.write("x")  # one byte per try: an append, no rename needed


try:
    _ht_boot()
except Exception as e:  # noqa: the REPL must stay reachable
    print("hashtrail: update switch failed:", e)
del _ht_exists, _ht_rm, _ht_boot, _L
gc.collect()
