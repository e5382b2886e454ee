# Sensor objects from board definitions; hardware is passed in, never imported.
import json
import math

import dtest
from hashtrail import boardcfg, sensors

UNIX_SENSORS = [
    {"name": "temp", "kind": "simulated", "unit": "Cel", "base": 4.0, "swing": 1.5},
    {"name": "humidity", "kind": "simulated", "unit": "%RH", "base": 55.0, "swing": 8.0},
]


def test_simulated_readings_vary_plausibly():
    clock = [0]
    ss = sensors.build(UNIX_SENSORS, ticks_ms=lambda: clock[0])
    dtest.eq(len(ss), 2)
    temps = []
    for i in range(200):
        clock[0] = i * 10000  # 10 s steps over 2000 s: more than one 900 s period
        name, unit, v = ss[0].read()
        dtest.eq((name, unit), ("temp", "Cel"))
        dtest.true(isinstance(v, float))
        temps.append(v)
    lo = min(temps)
    hi = max(temps)
    # base 4.0, swing 1.5, noise 0.075: stays in range and actually swings
    dtest.true(4.0 - 1.6 <= lo and hi <= 4.0 + 1.6, "%r..%r" % (lo, hi))
    dtest.true(hi - lo > 2.0, "too flat: %r..%r" % (lo, hi))
    temps.sort()  # (a set of 200 floats exhausts this VM's heap: count by sorting)
    distinct = 1 + sum(1 for i in range(1, len(temps)) if temps[i] != temps[i - 1])
    dtest.true(distinct > 100, "only %d distinct readings" % distinct)


def test_hardware_sensors_use_passed_in_objects():
    class FakeAdcPin:  # the object shape machine.ADC gives, from a test double pin
        def read_uv(self):
            return 1234567

    seen = []

    def adc(spec):
        seen.append(spec["pin"])
        return FakeAdcPin()

    specs = [{"name": "mcu_temp", "kind": "mcu_temperature", "unit": "Cel"},
             {"name": "adc0", "kind": "adc", "pin": 34, "unit": "V", "atten_db": 11}]
    ss = sensors.build(specs, mcu_temperature=lambda: 41.25, adc=adc)
    dtest.eq(ss[0].read(), ("mcu_temp", "Cel", 41.25))
    dtest.eq(ss[1].read(), ("adc0", "V", 1.235))
    dtest.eq(seen, [34])


def test_errors():
    dtest.raises(sensors.SensorError, sensors.build, [{"name": "x", "kind": "lidar"}])
    dtest.raises(sensors.SensorError, sensors.build,
                 [{"name": "t", "kind": "mcu_temperature"}])
    dtest.raises(sensors.SensorError, sensors.build, [{"kind": "simulated"}])


def test_boardcfg_layers():
    dtest.eq(boardcfg.layer_for({"name": "esp32", "chip": "esp32"}), "board_esp32")
    dtest.eq(boardcfg.layer_for({"name": "s3", "chip": "esp32s3"}), "board_esp32")
    dtest.eq(boardcfg.layer_for({"name": "c3", "chip": "esp32c3"}), "board_esp32")
    dtest.eq(boardcfg.layer_for({"name": "unix", "chip": None}), "board_unix")
    dtest.raises(boardcfg.BoardConfigError, boardcfg.layer_for, {"name": "x", "chip": "rp2040"})
    dtest.raises(boardcfg.BoardConfigError, boardcfg.load, "/nonexistent/board.json")
    with open("board_test.json", "w") as f:
        f.write(json.dumps({"name": "unix", "chip": None, "sensors": UNIX_SENSORS}))
    cfg, layer = boardcfg.load("board_test.json")
    dtest.eq(layer, "board_unix")
    dtest.eq(len(sensors.build(cfg["sensors"])), 2)
    with open("board_bad.json", "w") as f:
        f.write("{not json")
    dtest.raises(boardcfg.BoardConfigError, boardcfg.load, "board_bad.json")
    dtest.true(math.pi > 3)
