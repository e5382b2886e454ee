# boot.py: runs first at every boot, soft resets included. Kept minimal on purpose:
# the application lives in main.py, and nothing here may stop the REPL from being
# reachable (a failing boot.py would make a board hard to recover without reflashing).
import gc

gc.collect()
