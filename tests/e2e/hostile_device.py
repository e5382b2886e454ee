"""A fake device on a real pseudo-terminal that speaks the serial protocol, honestly or not.

Why a fake and not the firmware: the collector plugs into devices it does not control
(a counterfeit sensor, a compromised one, a malicious USB gadget), so its bounds must
hold against a device that speaks the protocol correctly up to a point and then does
what the firmware never would. The honest behaviour is the control case: the same fake,
misbehaving in nothing, must be collected and accepted.

Frames are built with the host's own reference encoder (`hashtrail.link.encode_frame`)
and requests parsed with its decoder (`decode_request`); the log is a real signed chain
(tools/devchain.py: P-256 keys with `cryptography`, entries and checkpoints as the
firmware writes them), so everything up to the misbehaviour verifies.

Use: `with FakeDevice(Behaviour()) as dev:` gives `dev.port` (the pty's slave path for
`hashtrail --port`); subclass `Behaviour` and override a hook to misbehave.
"""

from __future__ import annotations

import hashlib
import os
import select
import struct
import sys
import threading
import time
import tty
from pathlib import Path
from typing import Any

import cbor2
from hashtrail.device.link import (
    REP_ACK,
    REP_CHECKPOINT,
    REP_CHUNK,
    REP_END,
    REP_ERROR,
    REP_INFO,
    REP_TIME,
    REQ_ACK,
    REQ_CHECKPOINT,
    REQ_CREDIT,
    REQ_HELLO,
    REQ_RECORDS,
    REQ_SET_TIME,
    decode_request,
    encode_frame,
)
from hashtrail.formats.keys import device_id_bytes
from hashtrail.formats.records import MAGIC_ENTRY, format_record

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import devchain

SECRET = 0x3C2A7E51D04B96F8A1C3E5079B2D4F6182A3C5E7F9B1D3F5072941638A5B7C9D
CHUNK = 512


class Stop(Exception):
    """The test is over: the device thread ends."""


class Behaviour:
    """The honest device: override a hook to misbehave. `dev` is the running FakeDevice."""

    entries = 20            # readings after entry 0
    board = "fake-board"
    fw = "0.1.0"

    def __init__(self) -> None:
        self.chain = devchain.Device(SECRET, per_entry_sig=True)
        self.chain.readings(self.entries)
        self.first_seq = 0
        self.time_set = True

    # -- what the device announces ----------------------------------------------------

    @property
    def pub(self) -> bytes:
        return bytes(self.chain.pub)

    def last_seq(self) -> int:
        return len(self.chain.entries) - 1

    def info_map(self) -> dict[int, Any]:
        head = self.chain.entries[min(self.last_seq(), len(self.chain.entries) - 1)][1]
        return {0: 1, 1: device_id_bytes(self.pub), 2: self.pub, 3: self.fw,
                4: self.board, 5: self.first_seq, 6: self.last_seq(), 7: 100_000, 8: 1,
                9: 1_700_000_000 if self.time_set else None,
                10: hashlib.sha256(head).digest(), 11: CHUNK, 12: None}

    def info(self) -> bytes:
        return bytes(cbor2.dumps(self.info_map(), canonical=True))

    # -- hooks, one per request ---------------------------------------------------------

    def hello(self, dev: FakeDevice, rid: int) -> None:
        dev.send(REP_INFO, rid, self.info())

    def records(self, dev: FakeDevice, rid: int, from_seq: int, credit: int) -> None:
        recs = [format_record(MAGIC_ENTRY, s, raw, sig) for s, raw, sig in self.chain.entries
                if from_seq <= s <= self.last_seq()]
        dev.stream(rid, recs, credit)

    def checkpoint(self, dev: FakeDevice, rid: int, nonce: bytes) -> None:
        dev.send(REP_CHECKPOINT, rid, self.chain.checkpoint(nonce, self.last_seq()))

    def set_time(self, dev: FakeDevice, rid: int, t: int) -> None:
        self.chain.entry(4, {1: t})
        dev.send(REP_TIME, rid, struct.pack("<I", self.last_seq()))

    def ack(self, dev: FakeDevice, rid: int, seq: int) -> None:
        self.first_seq = seq + 1
        dev.send(REP_ACK, rid, struct.pack("<I", seq + 1))

    def other(self, dev: FakeDevice, rid: int, cmd: int) -> None:
        dev.send(REP_ERROR, rid, bytes((3,)) + b"unknown command")


class FakeDevice:
    """A thread serving one `Behaviour` on the master side of a pty."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.requests: list[tuple[int, int, bytes]] = []   # all but CREDIT
        self.credits = 0
        self.bytes_out = 0
        self._stop = threading.Event()
        self._credit: dict[int, int] = {}
        self._line = bytearray()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeDevice:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        os.close(self.master)
        os.close(self.slave)

    # -- I/O ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                raise Stop
            _, w, _ = select.select([], [self.master], [], 0.05)
            if not w:
                self.poll(0)      # read what the host sent meanwhile (credit)
                continue
            try:
                k = os.write(self.master, view)
            except BlockingIOError:
                continue
            except OSError as e:       # the host closed the port
                raise Stop from e
            self.bytes_out += k
            view = view[k:]

    def send(self, typ: int, rid: int, payload: bytes) -> None:
        self.write(encode_frame(typ, rid, payload))

    def sleep(self, seconds: float) -> None:
        """Wait, still reading the host's lines (credit), until `seconds` or the end."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.poll(min(left, 0.05))

    def poll(self, timeout: float) -> list[tuple[int, int, bytes]]:
        """Read request lines; CREDIT is counted here, the rest returned in order."""
        if self._stop.is_set():
            raise Stop
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return []
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return []
        except OSError as e:
            raise Stop from e
        self._line += data
        out = []
        while (i := self._line.find(b"\n")) >= 0:
            line = bytes(self._line[:i + 1])
            del self._line[:i + 1]
            try:
                rid, cmd, args = decode_request(line)
            except Exception:
                continue
            if cmd == REQ_CREDIT:
                self.credits += 1
                self._credit[rid] = self._credit.get(rid, 0) + struct.unpack("<H", args)[0]
            else:
                self.requests.append((rid, cmd, args))
                out.append((rid, cmd, args))
        return out

    def wait_credit(self, rid: int) -> None:
        while self._credit.get(rid, 0) <= 0:
            self.poll(0.05)
        self._credit[rid] -= 1

    def stream(self, rid: int, records: list[bytes], credit: int, *, end: bool = True,
               chunk_no: int = 0) -> int:
        """Send records as CHUNK frames within credit, then END; returns the next chunk no."""
        self._credit[rid] = self._credit.get(rid, 0) + credit
        buf = b""
        n = 0
        for rec in records:
            if buf and len(buf) + len(rec) > CHUNK - 2:
                self.wait_credit(rid)
                self.send(REP_CHUNK, rid, struct.pack("<H", chunk_no & 0xFFFF) + buf)
                chunk_no += 1
                buf = b""
            buf += rec
            n += 1
        if buf:
            self.wait_credit(rid)
            self.send(REP_CHUNK, rid, struct.pack("<H", chunk_no & 0xFFFF) + buf)
            chunk_no += 1
        if end:
            self.send(REP_END, rid, struct.pack("<II", n, self.b.last_seq() + 1))
        return chunk_no

    # -- the serving loop ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                for rid, cmd, args in self.poll(0.1):
                    self._dispatch(rid, cmd, args)
        except Stop:
            return

    def _dispatch(self, rid: int, cmd: int, args: bytes) -> None:
        b = self.b
        if cmd == REQ_HELLO:
            b.hello(self, rid)
        elif cmd == REQ_RECORDS:
            from_seq, credit = struct.unpack("<IH", args)
            b.records(self, rid, from_seq, credit)
        elif cmd == REQ_CHECKPOINT:
            b.checkpoint(self, rid, args)
        elif cmd == REQ_SET_TIME:
            b.set_time(self, rid, struct.unpack("<Q", args)[0])
        elif cmd == REQ_ACK:
            b.ack(self, rid, struct.unpack("<I", args)[0])
        else:
            b.other(self, rid, cmd)
