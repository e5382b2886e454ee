# Sensors: small objects with read() -> (name, unit, value), made from the board
# definition's "sensors" list (boards/*.json, copied to the device as /board.json).
#
# API
#   build(specs, mcu_temperature=None, adc=None, ticks_ms=None) -> list of sensors
#       specs: the "sensors" list; hardware arrives as arguments so this module never
#       imports machine/esp32:
#         mcu_temperature: function() -> Celsius            (kind "mcu_temperature")
#         adc: function(spec) -> object with read_uv()       (kind "adc")
#              (or read_u16(), scaled to 0..3.3 V)
#         ticks_ms: function() -> ms, the slow phase of simulated sensors
#                   (default time.ticks_ms)                   (kind "simulated")
#       Raises SensorError for an unknown kind or a kind whose hardware is missing.
#   McuTemperature(name, unit, fn)  Adc(name, unit, adc)
#   Simulated(name, unit, base, swing, period_s=900, noise=None, ticks_ms=None)
#       base + swing * sin(2 pi t / period) + noise, noise uniform in +-noise
#       (default swing / 20) from os.urandom: plausible, slowly varying readings
#       for the virtual `unix` board.
#
# Values are rounded to 3 decimals (sensor resolution is far coarser). Allocation:
# read() allocates the result tuple and a float (and 1 urandom byte when simulated).
import math
import os
import time


class SensorError(ValueError):
    pass


def _round(x):
    return round(x, 3)


class McuTemperature:
    def __init__(self, name, unit, fn):
        self.name = name
        self.unit = unit
        self._fn = fn

    def read(self):
        return self.name, self.unit, _round(float(self._fn()))


class Adc:
    def __init__(self, name, unit, adc):
        self.name = name
        self.unit = unit
        self._adc = adc

    def read(self):
        a = self._adc
        if hasattr(a, "read_uv"):
            v = a.read_uv() / 1000000
        else:
            v = a.read_u16() * 3.3 / 65535
        return self.name, self.unit, _round(v)


class Simulated:
    def __init__(self, name, unit, base, swing, period_s=900, noise=None, ticks_ms=None):
        self.name = name
        self.unit = unit
        self.base = float(base)
        self.swing = float(swing)
        self.period_ms = float(period_s) * 1000
        self.noise = self.swing / 20 if noise is None else float(noise)
        self._ticks = ticks_ms or time.ticks_ms
        # Each sensor starts at its own random phase, so devices do not move in step.
        self._phase = os.urandom(1)[0] / 256 * 2 * math.pi

    def read(self):
        t = self._ticks() % 0x40000000
        x = 2 * math.pi * t / self.period_ms + self._phase
        r = (os.urandom(1)[0] - 127.5) / 127.5
        return self.name, self.unit, _round(
            self.base + self.swing * math.sin(x) + self.noise * r)


def build(specs, mcu_temperature=None, adc=None, ticks_ms=None):
    out = []
    for spec in specs:
        kind = spec.get("kind")
        name = spec.get("name")
        unit = spec.get("unit")
        if not name:
            raise SensorError("sensor without a name")
        if kind == "simulated":
            out.append(Simulated(name, unit, spec.get("base", 0.0), spec.get("swing", 1.0),
                                 spec.get("period_s", 900), spec.get("noise"), ticks_ms))
        elif kind == "mcu_temperature":
            if mcu_temperature is None:
                raise SensorError("sensor %s: this board has no MCU temperature" % name)
            out.append(McuTemperature(name, unit, mcu_temperature))
        elif kind == "adc":
            if adc is None:
                raise SensorError("sensor %s: this board has no ADC" % name)
            out.append(Adc(name, unit, adc(spec)))
        else:
            raise SensorError("sensor %s: unknown kind %r" % (name, kind))
    return out
