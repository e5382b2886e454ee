"""The serial link holds when either side is slow (issue 18, item 2).

A virtual device (the real firmware in a MicroPython process) is paused with
SIGSTOP/SIGCONT, the line loses frames, and the host runs beside CPU-bound processes.
Slowness that still makes progress must not end a collection: entries are never
declared lost while the device is still sending. A device that makes no progress is
still stopped, with a message that says exactly why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.collector.collect import collect
from hashtrail.collector.store import Store
from hashtrail.device.boards import load_board
from hashtrail.device.link import REP_CHUNK, SYNC, VERSION, FdStream, Link
from hashtrail.errors import HashtrailError
from hashtrail.sim import VirtualDevice, provision

pytestmark = pytest.mark.e2e

BOARD = dataclasses.replace(load_board("unix"), heap_budget=160 * 1024)
CHUNK_HEAD = SYNC + bytes((VERSION, REP_CHUNK))


@contextlib.contextmanager
def cpu_load(n: int = 2, seconds: float = 90.0) -> Iterator[None]:
    """`n` CPU-bound processes beside the test, each ending by itself after `seconds`."""
    code = f"import time\nt = time.monotonic() + {seconds}\nwhile time.monotonic() < t: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@contextlib.contextmanager
def device(tmp: Path, name: str, interval: float) -> Iterator[VirtualDevice]:
    dev = provision.make_device(tmp, name, interval, BOARD, ready_timeout=30.0)
    try:
        yield dev
    finally:
        pid = dev.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        dev.stop()


def open_raw(port: str) -> int:
    import termios
    import tty

    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    termios.tcsetattr(fd, termios.TCSANOW, termios.tcgetattr(fd))
    return fd


class LossyStream:
    """A real pty stream on which chunk `lose` of every records stream arrives with one
    byte flipped (its CRC fails: the chunk is lost, as on a noisy cable), so every
    stream longer than that breaks after delivering chunks 0..lose-1."""

    def __init__(self, fd: int, lose: int) -> None:
        self.inner = FdStream(fd)
        self.lose = lose
        self.lost = 0
        self._tail = b""
        self._from = 0  # where in _tail + data the next header search starts

    def read(self, n: int, timeout: float) -> bytes:
        data = bytearray(self.inner.read(n, timeout))
        if not data:
            return b""
        buf = self._tail + bytes(data)
        off = len(self._tail)
        i = buf.find(CHUNK_HEAD, self._from)
        while i >= 0 and i + 10 <= len(buf):  # header and chunk number at hand
            if buf[i + 8] | buf[i + 9] << 8 == self.lose:
                data[i + 9 - off] ^= 0xFF
                self.lost += 1
            i = buf.find(CHUNK_HEAD, i + 1)
        keep = i if i >= 0 else max(0, len(buf) - 9)
        self._tail = buf[keep:]
        self._from = 0 if i >= 0 else max(0, len(self._tail) - 3)
        return bytes(data)

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def close(self) -> None:
        pass


def enroll(link: Link, st: Store) -> str:
    info = link.hello()
    st.enroll(info.device_id, info.pub, label="slow", board=info.board, fw=info.fw)
    return info.device_id


@contextlib.contextmanager
def enrolled(tmp: Path, name: str) -> Iterator[tuple[VirtualDevice, Link, Store, str]]:
    """A device sampling every 50 ms for 2 s, enrolled over a plain (lossless) link
    into a fresh store: the set-up of the pause tests."""
    with device(tmp, name, 0.05) as dev:
        time.sleep(2.0)
        fd = open_raw(dev.port)
        try:
            link = Link(FdStream(fd), timeout=1.0)
            with Store.open(tmp / "c.db") as st:
                yield dev, link, st, enroll(link, st)
        finally:
            os.close(fd)


def clean_chain(st: Store, did: str) -> int:
    seqs = [r.seq for r in st.accepted_records(did)]
    assert seqs == list(range(len(seqs)))
    return len(seqs)


def test_lossy_line_paused_device_and_loaded_host_still_collect(tmp_path: Path) -> None:
    with device(tmp_path, "lossy", 0.05) as dev, cpu_load():
        time.sleep(8.0)  # ~160 readings: some 60 chunks, every stream's 5th lost
        fd = open_raw(dev.port)
        try:
            stream = LossyStream(fd, lose=4)
            link = Link(stream)
            with Store.open(tmp_path / "c.db") as st:
                did = enroll(link, st)
                paused = threading.Event()
                calls = [0]

                def progress(got: int, expected: int, nbytes: int) -> None:
                    calls[0] += 1
                    if calls[0] == 6 and dev.pid is not None:
                        paused.set()  # the device freezes for 2 s in mid-stream
                        os.kill(dev.pid, signal.SIGSTOP)
                        threading.Timer(2.0, os.kill, (dev.pid, signal.SIGCONT)).start()

                res = collect(link, st, progress=progress)
                n = clean_chain(st, did)
        finally:
            os.close(fd)
    print(f"figures: {res.new_entries} entries in {res.seconds:.1f} s, {stream.lost} chunks "
          f"lost on the line, {res.retries} resumed attempts, device paused 2 s, 2 CPU "
          "burners")
    assert paused.is_set() and stream.lost >= 13
    # More lost chunks than the 12 failed attempts a run allows: a stream that breaks
    # after delivering new entries is resumed, never counted against the device.
    assert res.retries >= 13 and res.new_entries == n == res.upto_seq + 1


def test_device_silent_longer_than_hello_retries_is_waited_for(tmp_path: Path) -> None:
    """The device stops for 5 s right after the stream broke: longer than HELLO's three
    tries of 1 s. The collector backs off and asks again instead of giving up."""
    with enrolled(tmp_path, "sleepy") as (dev, link, st, did):
        paused = threading.Event()

        def progress(got: int, expected: int, nbytes: int) -> None:
            if nbytes > 1000 and not paused.is_set() and dev.pid is not None:
                paused.set()
                os.kill(dev.pid, signal.SIGSTOP)
                threading.Timer(5.0, os.kill, (dev.pid, signal.SIGCONT)).start()

        res = collect(link, st, progress=progress)
        n = clean_chain(st, did)
    print(f"figures: {res.new_entries} entries in {res.seconds:.1f} s with the device "
          f"stopped 5 s, {res.retries} failed attempts")
    assert paused.is_set() and res.retries >= 2 and res.new_entries == n


def test_device_that_stops_for_good_is_stopped_with_the_reason(tmp_path: Path) -> None:
    """No progress is not slowness: four attempts in a row without a new entry end the
    run, and the message says what was received and why it stopped."""
    with enrolled(tmp_path, "dead") as (dev, link, st, did):
        stopped = threading.Event()

        def progress(got: int, expected: int, nbytes: int) -> None:
            if nbytes > 1000 and not stopped.is_set() and dev.pid is not None:
                stopped.set()
                os.kill(dev.pid, signal.SIGSTOP)

        t0 = time.monotonic()
        with pytest.raises(HashtrailError) as ei:
            collect(link, st, progress=progress)
        secs = time.monotonic() - t0
        assert st.anchor(did) is None
    msg = str(ei.value)
    print(f"figures: stopped after {secs:.1f} s: {msg}")
    assert "4 attempts in a row received no new entry" in msg, msg
    assert "received seq 0.." in msg and "entries from seq 0" in msg, msg
    assert secs < 60
