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
import time
import zlib
from pathlib import Path
from typing import Any

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


def _stall_server(lsock: socket.socket, tls: object = None) -> None:
    """Connection k gets scenario k (then silence for good): 0 accepts and never answers
    the CONNECT; 1 completes the handshake, then sends 3 bytes of a 50-byte PUBLISH; 2
    completes it, sends a HELLO request and never acknowledges the reply (no PUBACK).
    Each stalled connection is held open (not closed: a closed socket is an EOF, which
    the client sees at once). With `tls` (an ssl.SSLContext), connections 1 and 2 are
    TLS; 0 and the later ones never answer the ClientHello."""
    import ssl

    held = []
    k = 0
    while True:
        conn, _ = lsock.accept()
        held.append(conn)
        try:
            if k in (1, 2):
                if isinstance(tls, ssl.SSLContext):
                    conn = tls.wrap_socket(conn, server_side=True)
                    held.append(conn)
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


# -- the collector of tests/firmware/test_app_mqtt.py, in this process ------------------
#
# It runs here, not in the device's VM: the app then has the heap of the board budget to
# itself (less the test harness), and a second MQTT client and the replies it reads do
# not compete with it (in the VM they did: under load the collector's own read of a
# reply was the allocation that failed). The device test and this thread meet in the
# data folder: the device writes app_mqtt.ready (its id) once it is connected and has
# ~300 entries; this thread then speaks to it only through the broker and writes
# app_mqtt.result (JSON), which ends the device's run.

_READY = "app_mqtt.ready"
_RESULT = "app_mqtt.result"
_WAIT_S = 15.0  # longest wait for one reply over the broker
_IDLE_S = 4.0  # a step that expects no reply waits this long


class _AppCollector:
    """Request by request over the broker; every reply frame checked (sync, header CRC,
    one frame per message, CRC), every streamed record checked (CRC, whole records,
    entries in seq order, END counts)."""

    def __init__(self, did: str, broker: tuple[str, int] = BROKER) -> None:
        import queue

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.base = f"hashtrail/{did}/"
        self.replies: queue.Queue[bytes] = queue.Queue()
        self.got: list[int] = []
        self.chunks = self.records = self.entries = 0
        self.next_seq: int | None = None
        self.last_seq = self.first_seq = -1
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dtest-collector-{did[:8]}")
        c.on_message = lambda _c, _u, m: self.replies.put(bytes(m.payload))
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect(*broker)
        c.loop_start()
        c.subscribe(self.base + "rep", 1)
        if not subscribed.wait(_WAIT_S):
            raise AssertionError("no SUBACK from the broker")
        self.c = c

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()

    def send(self, leaf: str, rid: int, cmd: int, args: bytes = b"") -> None:
        p = bytes((1, rid, cmd)) + args
        p += struct.pack("<I", zlib.crc32(p))
        self.c.publish(self.base + leaf, b"@HT" + p.hex().encode() + b"\n", qos=1)

    def reply(self, timeout: float = _WAIT_S) -> tuple[int, bytes] | None:
        import queue

        try:
            b = self.replies.get(timeout=timeout)
        except queue.Empty:
            return None
        if b[0:3] != b"\xa5\x5a\x01":
            raise AssertionError(f"bad sync/version: {b[:8].hex()}")
        n = struct.unpack_from("<H", b, 5)[0]
        if len(b) != 8 + n + 4:
            raise AssertionError(f"not one frame per message: {len(b)} bytes, length {n}")
        if b[7] != zlib.crc32(b[0:7]) & 0xFF or struct.unpack_from("<I", b, 8 + n)[0] \
                != zlib.crc32(b[0:8 + n]):
            raise AssertionError("bad frame check")
        if b[3] == 0xFF:
            raise AssertionError(f"device error {b[8]}: {b[9:8 + n]!r}")
        return b[3], b[8:8 + n]

    def expect(self, want: int) -> bytes:
        got = self.reply()
        if got is None:
            raise AssertionError(f"no reply 0x{want:02x} over MQTT in {_WAIT_S:.0f} s")
        if got[0] != want:
            raise AssertionError(f"reply 0x{got[0]:02x}, expected 0x{want:02x}")
        self.got.append(want)
        return got[1]

    def chunk(self, body: bytes) -> None:
        if struct.unpack_from("<H", body, 0)[0] != self.chunks:
            raise AssertionError(f"chunk number, expected {self.chunks}")
        self.chunks += 1
        pos = 2
        while pos < len(body):
            ln = struct.unpack_from("<H", body, pos + 6)[0]
            size = 8 + ln + (64 if body[pos + 1] & 1 else 0) + 4
            if struct.unpack_from("<I", body, pos + size - 4)[0] != zlib.crc32(
                    body[pos:pos + size - 4]):
                raise AssertionError(f"record CRC in chunk {self.chunks - 1}")
            if body[pos] == 0xA7:
                seq = struct.unpack_from("<I", body, pos + 2)[0]
                if self.next_seq is not None and seq != self.next_seq:
                    raise AssertionError(f"seq {seq} after {self.next_seq - 1}")
                self.next_seq = seq + 1
                self.entries += 1
            self.records += 1
            pos += size
        if pos != len(body):
            raise AssertionError("a chunk ends inside a record")

    def run(self) -> None:
        self.send("req", 1, 0x01)  # HELLO
        self.expect(0x81)
        self.send("req", 2, 0x05, struct.pack("<Q", 1700000000))  # SET_TIME
        self.expect(0x85)
        self.send("req", 3, 0x04, b"mqtt-nonce-0123456789abcdef")  # CHECKPOINT
        self.expect(0x84)
        self.send("req", 4, 0x02, struct.pack("<IH", 0, 1))  # RECORDS from 0, 1 credit
        while True:
            got = self.reply()
            if got is None:
                raise AssertionError(f"records stream stalled after {self.chunks} chunks")
            if got[0] != 0x82:
                break
            self.chunk(got[1])
            self.send("req", 4, 0x03, struct.pack("<H", 1))  # one more credit
        if got[0] != 0x83:
            raise AssertionError(f"reply 0x{got[0]:02x} in a records stream")
        self.got.append(0x83)
        sent, nxt = struct.unpack_from("<II", got[1], 0)
        if (sent, nxt) != (self.records, self.next_seq):
            raise AssertionError(f"END says {sent} records up to {nxt}, "
                                 f"got {self.records} up to {self.next_seq}")
        self.last_seq = nxt - 1
        # An ACK on the request topic is refused: no reply (the device checks it pruned
        # nothing), then the same ACK on the ack topic prunes and is answered.
        self.send("req", 6, 0x06, struct.pack("<I", self.last_seq))
        late = self.reply(_IDLE_S)
        if late is not None:
            raise AssertionError(f"reply 0x{late[0]:02x} to an ACK on the request topic")
        self.send("ack", 7, 0x06, struct.pack("<I", self.last_seq))
        self.first_seq = struct.unpack_from("<I", self.expect(0x86), 0)[0]
        time.sleep(_IDLE_S)  # sampling goes on after the ACK


def _app_collector(out: Path, broker: tuple[str, int] = BROKER) -> None:
    ready = out / _READY
    deadline = time.monotonic() + 120
    while not ready.exists():
        if time.monotonic() > deadline:
            return  # the device test fails on its own (it never got ready)
        time.sleep(0.05)
    res: dict[str, object] = {"error": None}
    col: _AppCollector | None = None
    try:
        col = _AppCollector(ready.read_text().strip(), broker)
        col.run()
    except Exception as e:  # reported to the device test, which fails with it
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        if col is not None:
            res.update(replies=col.got, chunks=col.chunks, entries=col.entries,
                       last_seq=col.last_seq, first_seq=col.first_seq)
            col.close()
        tmp = out / (_RESULT + ".tmp")
        tmp.write_text(json.dumps(res))
        os.replace(tmp, out / _RESULT)


def make_app_mqtt_collector(out: Path) -> threading.Thread:
    """The collector thread of test_app_mqtt.py, started before the device's VM; it waits
    for app_mqtt.ready in `out` (returned: tools/bench_mqtt.py waits for it to end)."""
    require_broker()
    for name in (_READY, _RESULT):
        (out / name).unlink(missing_ok=True)
    t = threading.Thread(target=_app_collector, args=(out,), daemon=True)
    t.start()
    return t


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


# -- the same app over TLS (tests/firmware/test_app_mqtt_tls.py) --------------------------
#
# A private Mosquitto (tests/e2e/mqtt_broker.py) with a TLS listener for the device and a
# plain one for the collector thread (the device's side is what that test measures),
# stopped when pytest exits. Its CA goes to the data folder in DER (ca.der): MicroPython's
# mbedtls build parses no PEM.

_TLS: dict[str, object] = {}


def _tls_files(d: Path, ca_der: Path) -> Any:
    """mqtt_broker.make_tls_files in the new folder `d`, and its CA as DER at `ca_der`
    (MicroPython's mbedtls build parses no PEM)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from mqtt_broker import make_tls_files

    d.mkdir(exist_ok=True)
    files = make_tls_files(d)
    ca_der.write_bytes(x509.load_pem_x509_certificate(
        files.ca.read_bytes()).public_bytes(serialization.Encoding.DER))
    return files


def _tls_broker(out: Path) -> object:
    if "broker" not in _TLS:
        import atexit

        d = out / "tls-broker"
        files = _tls_files(d, out / "ca.der")  # puts tests/e2e on the path
        from mqtt_broker import PrivateBroker

        b = PrivateBroker(d, tls=files).start()
        atexit.register(b.stop)
        _TLS["broker"] = b
    return _TLS["broker"]


def make_app_mqtt_tls_board(out: Path) -> None:
    """board_mqtt_tls.json: test_app_mqtt's board, its broker a private Mosquitto's TLS
    listener, verified against ca.der (on the test's flash folder: the data folder)."""
    b = _tls_broker(out)
    cfg = json.loads((ROOT / "boards" / "unix.json").read_text())
    cfg["sample_interval_s"] = 0.01
    cfg["log"] = {"checkpoint_every": 50, "checkpoint_s": 0, "prune_on_ack": True,
                  "seg_records": 64}
    cfg["mqtt"] = {"host": "127.0.0.1", "port": b.tls_port,  # type: ignore[attr-defined]
                   "ssl": True, "ca": str(out / "ca.der")}
    (out / "board_mqtt_tls.json").write_text(json.dumps(cfg, indent=2))


def make_app_mqtt_tls_collector(out: Path) -> threading.Thread:
    """test_app_mqtt's collector thread, on the private broker's plain listener."""
    b = _tls_broker(out)
    for name in (_READY, _RESULT):
        (out / name).unlink(missing_ok=True)
    t = threading.Thread(target=_app_collector,
                         args=(out, ("127.0.0.1", b.port)),  # type: ignore[attr-defined]
                         daemon=True)
    t.start()
    return t


def make_stall_broker_tls(out: Path) -> None:
    """The stalling server of make_stall_broker over TLS (test_app_mqtt_stall_tls.py):
    its certificate signed by a CA made here, which board_stall_tls.json names
    (stall_ca.der, DER: MicroPython's mbedtls build parses no PEM)."""
    import ssl

    files = _tls_files(out / "stall-tls", out / "stall_ca.der")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    threading.Thread(target=_stall_server, args=(lsock, ctx), daemon=True).start()
    cfg = json.loads((ROOT / "boards" / "unix.json").read_text())
    cfg["sample_interval_s"] = 0.05
    cfg["log"] = {"checkpoint_every": 50, "checkpoint_s": 0, "seg_records": 64}
    cfg["mqtt"] = {"host": "127.0.0.1", "port": lsock.getsockname()[1],
                   "timeout_s": 0.5, "retry_s": 0.2, "push": 0, "ssl": True,
                   "ca": str(out / "stall_ca.der")}
    (out / "board_stall_tls.json").write_text(json.dumps(cfg, indent=2))
