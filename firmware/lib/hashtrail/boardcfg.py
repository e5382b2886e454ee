# Board configuration on the device: the board definition JSON (boards/<name>.json)
# that deploy/image tools copy onto the device as /board.json.
#
# API
#   load(path="/board.json") -> (cfg dict, board-layer module name)
#       module name: "board_esp32" for chips esp32/esp32s3/esp32c3, "board_unix" for
#       the virtual board (chip null / name "unix"). Raises BoardConfigError with a
#       clear message when the file is missing, not JSON, or names an unknown chip.
#   layer_for(cfg) -> module name       (the mapping alone)
#
# Allocation: the parsed JSON, once per boot.
import json

_ESP32_CHIPS = ("esp32", "esp32s3", "esp32c3")


class BoardConfigError(Exception):
    pass


def layer_for(cfg):
    chip = cfg.get("chip")
    if chip in _ESP32_CHIPS:
        return "board_esp32"
    if chip is None and cfg.get("name") == "unix":
        return "board_unix"
    raise BoardConfigError("board %r: unsupported chip %r" % (cfg.get("name"), chip))


def load(path="/board.json"):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise BoardConfigError(
            "no board definition at %s: deploy the firmware with `hashtrail deploy`" % path)
    try:
        cfg = json.loads(text)
    except ValueError:
        raise BoardConfigError("board definition %s is not valid JSON" % path)
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise BoardConfigError("board definition %s has no name" % path)
    return cfg, layer_for(cfg)
