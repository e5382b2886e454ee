# The virtual board's `machine` module: the unix port's built-in one plus reset(), which
# a board has and the unix port lacks (mpremote reset runs machine.reset()). rom.py puts
# it in sys.modules["machine"] before boot.py, so firmware and REPL code import it.
import machine as _m

import _vboard


def reset():
    # A hard reset: the ROM ends this VM without a soft reboot, the supervisor boots
    # a fresh one with reset cause "hard" and runs boot.py and main.py.
    _vboard.hard_reset = True
    raise SystemExit


def __getattr__(name):
    return getattr(_m, name)
