# boot.py: runs first at every boot, soft resets included. Kept minimal on purpose:
# the application lives in main.py, and nothing here may stop the REPL from being
# reachable (a failing boot.py would make a board hard to recover without reflashing).
# It is compiled from source at every boot, so it stays this small: when a firmware
# update is pending (the marker /ht/update, or a roll-back to finish), the switch itself
# is the compiled module htboot (/htboot.mpy beside this file), loaded for that and
# dropped after.
import gc
import os

_ht = 0
for _p in ("/ht/update", "/lib/hashtrail.bad"):
    try:
        os.stat(_p)
        _ht = 1
    except OSError:
        pass
if _ht:
    try:
        import htboot

        htboot.run()
    except Exception as e:  # noqa: the REPL must stay reachable
        print("hashtrail: update switch failed:", e)
    import sys

    sys.modules.pop("htboot", None)
del _ht, _p
gc.collect()
