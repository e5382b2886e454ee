# Board layer for the real chips (esp32, esp32s3, esp32c3): the ONLY module that
# imports `machine` / `esp32`. Everything above it receives hardware as arguments.
#
# Board-layer interface (board_unix.py, the virtual board, implements the same names):
#
#   reset_cause() -> str
#       why this boot happened, one of the FORMATS.md names: "power_on", "hard",
#       "soft", "watchdog", "deepsleep", "brownout", "unknown".
#   Clock()                      one per boot
#       .now() -> int or None    Unix seconds, or None while the clock was never set
#                                since this boot (entries then carry t = null)
#       .uptime_ms() -> int      milliseconds since this boot, monotonic, never wraps
#       .set(t) -> int or None   set wall-clock time (Unix seconds, from the host);
#                                returns the previous now() for the "time set" entry
#   watchdog(timeout_ms) -> object with .feed(), or None when the board has none
#   sensors(cfg) -> list of sensors.py objects, each .read() -> (name, unit, value),
#       built from cfg["sensors"] (cfg is the /board.json dict from boardcfg.load())
#   network(cfg) -> object with .isconnected(), or None when the board needs no set-up:
#       joins the Wi-Fi network cfg["wifi"] names ({"ssid", "password"}) and returns at
#       once (network.WLAN connects in the background; the MQTT link waits for it)
#
# Allocation: reset_cause() and Clock.set() allocate a little; Clock.now() and
# uptime_ms() allocate only small ints; nothing here is on a hot path.
import time

import machine

from hashtrail.clock import Clock as _Clock

# Offset between the port's time.time() epoch and the Unix epoch: older ESP32 ports
# count from 2000-01-01, newer ones from 1970. Computed once.
_EPOCH_2000 = 946684800


def _epoch_offset():
    return _EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0


def reset_cause():
    c = machine.reset_cause()
    for attr, name in (
        ("PWRON_RESET", "power_on"),
        ("HARD_RESET", "hard"),
        ("SOFT_RESET", "soft"),
        ("WDT_RESET", "watchdog"),
        ("DEEPSLEEP_RESET", "deepsleep"),
        ("BROWNOUT_RESET", "brownout"),
    ):
        if getattr(machine, attr, None) == c:
            return name
    return "unknown"


class Clock(_Clock):
    """clock.Clock ("never set" until the host sets it in this boot, uptime that does
    not wrap), keeping the hardware RTC roughly right too (for deep sleep wakeups): a
    value nobody set since this boot may be garbage (2000-01-01 after power-on)."""

    def _set_hw(self, t):
        try:
            tm = time.gmtime(t - _epoch_offset())
            machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
        except (OverflowError, ValueError, OSError):
            pass


def watchdog(timeout_ms):
    return machine.WDT(timeout=int(timeout_ms))


def network(cfg):
    w = cfg.get("wifi")
    if not w:
        return None
    import network as _network

    wlan = _network.WLAN(_network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(w["ssid"], w.get("password", ""))
    return wlan


def _mcu_temperature():
    import esp32

    if hasattr(esp32, "mcu_temperature"):
        return esp32.mcu_temperature()  # Celsius (S2/S3/C3 and newer ports)
    return (esp32.raw_temperature() - 32) / 1.8  # original ESP32: Fahrenheit


_ATTEN = {0: "ATTN_0DB", 2.5: "ATTN_2_5DB", 6: "ATTN_6DB", 11: "ATTN_11DB", 12: "ATTN_11DB"}


def _adc(spec):
    pin = machine.Pin(int(spec["pin"]))
    atten = spec.get("atten_db", 11)
    name = _ATTEN.get(atten)
    if name is None:
        raise ValueError("unsupported atten_db %r" % (atten,))
    return machine.ADC(pin, atten=getattr(machine.ADC, name))


def sensors(cfg):
    from hashtrail import sensors as _s

    return _s.build(cfg.get("sensors", ()), mcu_temperature=_mcu_temperature, adc=_adc)
