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
import struct
import threading
import zlib
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


# -- a broker that stalls (tests/firmware/test_app_mqtt_stall.py) ------------------------


def _packet(conn: socket.socket) -> tuple[int, bytes]:
    """One MQTT packet read off `conn`: (first byte, body)."""

    def get(n: int) -> bytes:
        b = b""
        while len(b) < n:
            part = conn.recv(n - len(b))
            if not part:
                raise ConnectionError("client went away")
            b += part
        return b

    first = get(1)[0]
    n = shift = 0
    while True:
        c = get(1)[0]
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            break
    return first, get(n)


def _handshake(conn: socket.socket) -> str:
    """CONNECT -> CONNACK, both SUBSCRIBEs -> SUBACKs; returns the first topic filter."""
    first, _ = _packet(conn)
    assert first == 0x10, first
    conn.sendall(b"\x20\x02\x00\x00")
    filters = []
    for _ in range(2):
        first, body = _packet(conn)
        assert first == 0x82, first
        n = struct.unpack_from(">H", body, 2)[0]
        filters.append(body[4:4 + n].decode())
        conn.sendall(b"\x90\x03" + body[:2] + b"\x01")
    return filters[0]


def _stall_server(lsock: socket.socket) -> None:
    """Connection k gets scenario k (then silence for good): 0 accepts and never answers
    the CONNECT; 1 completes the handshake, then sends 3 bytes of a 50-byte PUBLISH; 2
    completes it, sends a HELLO request and never acknowledges the reply (no PUBACK).
    Each stalled connection is held open (not closed: a closed socket is an EOF, which
    the client sees at once)."""
    held = []
    k = 0
    while True:
        conn, _ = lsock.accept()
        held.append(conn)
        try:
            if k in (1, 2):
                req_filter = _handshake(conn)
                if k == 1:
                    conn.sendall(b"\x30\x32\x00")
                else:
                    t = req_filter.replace("#", "stall").encode()
                    p = bytes((1, 9, 1))
                    p += struct.pack("<I", zlib.crc32(p))
                    line = b"@HT" + p.hex().encode() + b"\n"
                    body = struct.pack(">H", len(t)) + t + b"\x00\x01" + line
                    conn.sendall(bytes((0x32, len(body))) + body)
        except (OSError, AssertionError):
            pass
        k += 1


def make_stall_broker(out: Path) -> None:
    """A real TCP server on a free port (a daemon thread of this pytest process, alive
    while the device test runs) that stalls the device's MQTT client three ways, and
    board_stall.json naming it, with a 0.5 s socket timeout and 0.2 s between tries."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    threading.Thread(target=_stall_server, args=(lsock,), daemon=True).start()
    cfg = json.loads((ROOT / "boards" / "unix.json").read_text())
    cfg["sample_interval_s"] = 0.05
    cfg["log"] = {"checkpoint_every": 50, "checkpoint_s": 0, "seg_records": 64}
    cfg["mqtt"] = {"host": "127.0.0.1", "port": lsock.getsockname()[1],
                   "timeout_s": 0.5, "retry_s": 0.2, "push": 0}
    (out / "board_stall.json").write_text(json.dumps(cfg, indent=2))
