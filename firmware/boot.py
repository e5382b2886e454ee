# boot.py: runs first at every boot, soft resets included. Kept minimal on purpose:
# the application lives in main.py, and nothing here may stop the REPL from being
# reachable (a failing boot.py would make a board hard to recover without reflashing).
# It is compiled from source at every boot, so it stays small: when a firmware update
# is pending (the marker /ht/update, or a roll-back to finish), the switch itself is
# the compiled module htboot (/htboot.mpy beside this file), loaded for that and
# dropped after.
import gc
import os


def _ht_pending():
    for p in ("/ht/update", "/lib/hashtrail.bad"):
        try:
            os.stat(p)
            return True
        except OSError:
            pass
    return False


if _ht_pending():
    try:
        import htboot

        htboot.run()
    except Exception as e:  # noqa: the REPL must stay reachable
        print("hashtrail: update switch failed:", e)
    import sys

    sys.modules.pop("htboot", None)
del _ht_pending
gc.collect()
