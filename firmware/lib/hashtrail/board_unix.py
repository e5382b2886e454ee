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
#   network(cfg)               None: the host's network is always up (no Wi-Fi to join)
#
# The ROM publishes its facts in the module `_vboard` (reset_cause, name); without a
# ROM (the device tests) it is absent and the board reports "power_on".
# Allocation: as board_esp32; nothing here is on a hot path.
from hashtrail.clock import Clock  # board.Clock is part of the board-layer interface


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


def watchdog(timeout_ms):
    return None


def network(cfg):
    return None


def sensors(cfg):
    from hashtrail import sensors as _s

    return _s.build(cfg.get("sensors", ()))
