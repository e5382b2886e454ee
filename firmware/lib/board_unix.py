# Board layer for the virtual board (boards/unix.json): the firmware under the
# MicroPython unix port, launched by the virtual device's ROM (host/hashtrail/sim/rom/).
# Same interface as board_esp32.py (see the docstring there):
#
#   reset_cause() -> str       what the ROM says caused this boot ("power_on" after a
#                              fresh start or a power cut, "hard" after restart(),
#                              "soft" after Ctrl-D / machine.soft_reset())
#   Clock()                    .now() (None until set this boot), .uptime_ms(), .set(t)
#   watchdog(timeout_ms)       None: the virtual board has no watchdog
#   sensors(cfg)               sensors.py objects for cfg["sensors"] (kind "simulated")
#
# The ROM publishes its facts in the module `_vboard` (reset_cause, name); without a
# ROM (the device tests) it is absent and the board reports "power_on".
# Allocation: as board_esp32; nothing here is on a hot path.
import time


def _rom(attr, default):
    try:
        import _vboard
    except ImportError:
        return default
    return getattr(_vboard, attr, default)


def reset_cause():
    return _rom("reset_cause", "power_on")


def device_name():
    """The virtual device's name given by the supervisor (seeds simulated sensors)."""
    return _rom("name", "unix")


class Clock:
    """Wall clock that is "never set" until the host sets it in this boot.

    The unix port's time.time() is the host's Unix time, but a board cannot know the
    time before a host tells it, so now() stays None until set(), exactly like the
    ESP32 board. Uptime accumulates ticks_diff so it never wraps.
    """

    def __init__(self):
        self._offset = None
        self._last = time.ticks_ms()
        self._up = 0

    def uptime_ms(self):
        now = time.ticks_ms()
        self._up += time.ticks_diff(now, self._last)
        self._last = now
        return self._up

    def now(self):
        if self._offset is None:
            return None
        return time.time() + self._offset

    def set(self, t):
        t = int(t)
        if t < 0:
            raise ValueError("time before 1970")
        prev = self.now()
        self._offset = t - time.time()
        return prev


def watchdog(timeout_ms):
    return None


def sensors(cfg):
    import sensors as _s

    return _s.build(cfg.get("sensors", ()))
