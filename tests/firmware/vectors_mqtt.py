"""Host-side data for tests/firmware/test_app_mqtt.py: the virtual board's definition
with a broker named, after checking that broker answers.

Why a real broker: the device test runs the firmware's MQTT link (umqtt over the unix
port's sockets) against the Mosquitto this machine runs on 127.0.0.1:1883. Without it
the test cannot say anything: it fails under CI (CI=true, where .ci/run starts the
broker) and is skipped with one line elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
BROKER = ("127.0.0.1", 1883)


def require_broker(host: str = BROKER[0], port: int = BROKER[1]) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        msg = f"no MQTT broker on {host}:{port} ({e}); start one: mosquitto -d"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


def make_app_mqtt_board(out: Path) -> None:
    require_broker()
    cfg = json.loads((ROOT / "boards" / "unix.json").read_text())
    cfg["sample_interval_s"] = 0.01
    cfg["log"] = {"checkpoint_every": 50, "checkpoint_s": 0, "prune_on_ack": True,
                  "seg_records": 64}
    cfg["mqtt"] = {"host": BROKER[0], "port": BROKER[1]}
    (out / "board_mqtt.json").write_text(json.dumps(cfg, indent=2))
