# boot.py: runs first at every boot, soft resets included. Kept minimal on purpose:
# the application lives in main.py, and nothing here may stop the REPL from being
# reachable (a failing boot.py would make a board hard to recover without reflashing).
#
# It also switches in a committed firmware update (docs/DEVICE.md "Firmware updates"):
# with the marker /ht/update and a complete /lib/hashtrail.new (the update module
# renames the marker into place only after every staged file matched its signed hash),
# /lib/hashtrail becomes /lib/hashtrail.old and /lib/hashtrail.new becomes
# /lib/hashtrail. Each step is one littlefs rename (atomic), and the test of each step
# is its result, so a power cut anywhere is finished at the next boot: the device runs
# the old firmware complete or the new one complete. The new firmware (fwboot.py) then
# records the update in its chain and removes the old folder and the marker.
import gc
import os


def _ht_exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


try:
    if _ht_exists("/ht/update") and _ht_exists("/lib/hashtrail.new"):
        if _ht_exists("/lib/hashtrail"):
            if _ht_exists("/lib/hashtrail.old"):  # an older update's leftovers
                for _n in os.listdir("/lib/hashtrail.old"):
                    os.remove("/lib/hashtrail.old/" + _n)
                os.rmdir("/lib/hashtrail.old")
            os.rename("/lib/hashtrail", "/lib/hashtrail.old")
        os.rename("/lib/hashtrail.new", "/lib/hashtrail")
except Exception as e:  # noqa: the REPL must stay reachable
    print("hashtrail: update switch failed:", e)
del _ht_exists
gc.collect()
