"""Per-entry signatures checked in worker processes: entry bytes in, hashes and verdicts out.

Why processes: OpenSSL drops the GIL while it verifies, but every verify returns into
Python, and with the ledger's own per-entry work (parse, walk, SQLite) on the same
interpreter the threads queue for the GIL; threads never took a per-entry-signed
reconcile past about 0.7 of what OpenSSL alone verifies on all cores
(tools/bench_ledger.py). A worker process has its own interpreter: it hashes each entry
and checks its signature, while the calling process parses, walks the chain and
writes the ledger.

What a worker sees and does: one device key and a batch of (entry bytes, signature or
none) as one bytes frame, and it answers SHA-256 of each entry with one verdict byte
each (1: the signature verifies or there is none; 0: it does not), by the one check
every host path uses (`keys.DeviceKey.signed`). It opens no file: no ledger, no store,
no key file. It reads its batches on stdin and answers on stdout, so a worker whose
parent is gone (killed, crashed, Ctrl-C) reads end-of-file and exits: no orphans. It
runs in its own process group, so a Ctrl-C at the terminal reaches only the parent,
which closes the pipes (`VerifyPool.close`); but in the parent's session, so the
scheduler (autogroups) gives the workers the parent's share of the CPU, not one share
each beside other sessions' work.

Starting a worker costs a fresh interpreter and the `cryptography` import (about
0.1 s of CPU each): a pool pays off only on batches large enough, which the caller
decides (ledger.reconcile: `POOL_MIN`, `COLD_MIN`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
from array import array
from collections.abc import Sequence
from typing import IO

from hashtrail.errors import HashtrailError
from hashtrail.formats import keys

_LEN = struct.Struct("<I")
_PUB = 65
_SIG = 64
_NO_SIG = bytes(_SIG)


class PoolError(HashtrailError):
    """A verify worker stopped or answered out of protocol: nothing it checked counts."""

    hint = "nothing of the interrupted batch was accepted; run the command again"


def encode_batch(pub: bytes, bodies: Sequence[bytes], sigs: Sequence[bytes | None]) -> bytes:
    """One batch as the worker reads it: n, the key, each body's length, a flag per
    signature (0 none, 1 one, 2 one of another length than 64 bytes), the signatures
    (64 bytes each, zeros where none or malformed), the bodies."""
    n = len(bodies)
    flags = bytes(0 if s is None else 1 if len(s) == _SIG else 2 for s in sigs)
    return b"".join((_LEN.pack(n), pub, array("I", map(len, bodies)).tobytes(), flags,
                     b"".join([s if s is not None and len(s) == _SIG else _NO_SIG
                               for s in sigs]),
                     b"".join(bodies)))


def check_batch(frame: bytes, key_cache: dict[bytes, keys.DeviceKey]) -> bytes:
    """The worker's answer to one batch: SHA-256 of each body, then a verdict byte each
    (a signature of another length than 64 bytes travels as flag 2: it does not verify,
    as `DeviceKey.signed` says of it)."""
    mv = memoryview(frame)
    (n,) = _LEN.unpack_from(mv)
    pub = bytes(mv[4:4 + _PUB])
    key = key_cache.get(pub)
    if key is None:
        key_cache.clear()
        key = key_cache[pub] = keys.DeviceKey(pub)
    at = 4 + _PUB
    lens = array("I")
    lens.frombytes(mv[at:at + 4 * n])
    at += 4 * n
    flags = mv[at:at + n]
    at += n
    sig_at, at = at, at + _SIG * n
    sha256, signed = hashlib.sha256, key.signed
    hashes = []
    ok = bytearray(n)
    for i, ln in enumerate(lens):
        h = sha256(mv[at:at + ln]).digest()
        at += ln
        hashes.append(h)
        f = flags[i]
        if f == 0:
            ok[i] = 1
        elif f == 1:
            s = sig_at + _SIG * i
            ok[i] = signed(h, bytes(mv[s:s + _SIG]))
    if at != len(frame):
        raise PoolError("verify batch: lengths do not add up")
    return b"".join(hashes) + ok


class Verdicts:
    """The answer to one submitted batch, read when asked for (`result`)."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[tuple[_Worker, int, int]]) -> None:
        self._parts = parts

    def result(self) -> tuple[list[bytes], bytes]:
        """(entry hashes, verdict bytes) in the order the batch was submitted."""
        hashes: list[bytes] = []
        ok = bytearray()
        for wk, ticket, k in self._parts:
            ans = wk.answer(ticket)
            if len(ans) != 33 * k:
                raise PoolError(f"verify worker: {len(ans)} bytes for {k} entries")
            hashes += [ans[i:i + 32] for i in range(0, 32 * k, 32)]
            ok += ans[32 * k:]
        return hashes, bytes(ok)

    def discard(self) -> None:
        """Not needed (any more): answers not read yet are dropped when they arrive;
        a no-op once `result` was read, and after the pool closed."""
        for wk, ticket, _ in self._parts:
            wk.drop(ticket)


class _Worker:
    """One worker process and its answers, which come back in the order asked."""

    __slots__ = ("closed", "dropped", "proc", "read", "sent", "stash")

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.sent = 0                        # tickets handed out
        self.read = 0                        # answers read
        self.stash: dict[int, bytes] = {}    # answers read ahead of their turn
        self.dropped: set[int] = set()
        self.closed = False

    def answer(self, ticket: int) -> bytes:
        got = self.stash.pop(ticket, None)
        if got is not None:
            return got
        while not self.closed:
            ans = _read_frame(self.proc.stdout)
            if ans is None:
                break
            t = self.read
            self.read += 1
            if t == ticket:
                return ans
            if t in self.dropped:
                self.dropped.discard(t)
            else:
                self.stash[t] = ans
        raise PoolError(f"verify worker {self.proc.pid} stopped (exit status "
                        f"{self.proc.poll()})")

    def drop(self, ticket: int) -> None:
        if self.stash.pop(ticket, None) is None and ticket >= self.read and not self.closed:
            self.dropped.add(ticket)


class VerifyPool:
    """Worker processes started on the first batch (or `start`), stopped by `close`
    (or leaving the `with` block). Each batch is cut into one part per worker."""

    def __init__(self, workers: int | None = None) -> None:
        self.size = workers or keys.cpu_workers()
        self._workers: list[_Worker] = []

    @property
    def running(self) -> bool:
        return bool(self._workers)

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers (PoolError, and none left running, if one cannot start)."""
        if self._workers:
            return
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (f"import sys; sys.path.insert(0, {here!r}); "
                "from hashtrail.chain.verify_pool import serve; serve()")
        try:
            for _ in range(self.size):
                self._workers.append(_Worker(subprocess.Popen(
                    [sys.executable, "-c", code], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, process_group=0)))
        except OSError as e:
            self.close()
            raise PoolError(f"cannot start a verify worker ({e})") from None
        except BaseException:
            self.close()
            raise

    def submit(self, pub: bytes, bodies: Sequence[bytes], sigs: Sequence[bytes | None]
               ) -> Verdicts:
        """Hand a batch to the workers (one slice each); returns at once."""
        self.start()
        n = len(bodies)
        k = len(self._workers)
        step = max(1, -(-n // k))
        parts = []
        for w, lo in enumerate(range(0, n, step)):
            hi = min(n, lo + step)
            wk = self._workers[w]
            frame = encode_batch(pub, bodies[lo:hi], sigs[lo:hi])
            stdin = wk.proc.stdin
            assert stdin is not None
            try:
                stdin.write(_LEN.pack(len(frame)) + frame)
                stdin.flush()
            except OSError as e:
                raise PoolError(f"verify worker {wk.proc.pid} is gone ({e})") from None
            parts.append((wk, wk.sent, hi - lo))
            wk.sent += 1
        return Verdicts(parts)

    def close(self) -> None:
        """End every worker: end-of-file on its stdin ends it; one still there after a
        second is killed. Safe to call twice."""
        workers, self._workers = self._workers, []
        for wk in workers:
            wk.closed = True
            try:
                if wk.proc.stdin is not None:
                    wk.proc.stdin.close()
            except OSError:
                pass
        for wk in workers:
            try:
                wk.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                wk.proc.kill()
                wk.proc.wait()
            if wk.proc.stdout is not None:
                wk.proc.stdout.close()


def _read_frame(f: IO[bytes] | None) -> bytes | None:
    """One length-prefixed frame; None at end-of-file (also mid-frame: the peer is gone)."""
    assert f is not None
    head = f.read(4)
    if len(head) < 4:
        return None
    (n,) = _LEN.unpack(head)
    body = f.read(n)
    return body if len(body) == n else None


def serve() -> None:
    """A worker's main loop: batches on stdin, answers on stdout, until end-of-file.

    A thread reads stdin ahead, so the parent never waits to hand over the next batch
    while this one is being checked (and this worker never idles between two)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    tasks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def reader() -> None:
        try:
            while (frame := _read_frame(inp)) is not None:
                tasks.put(frame)
        finally:
            tasks.put(None)

    threading.Thread(target=reader, daemon=True).start()
    cache: dict[bytes, keys.DeviceKey] = {}
    try:
        while (task := tasks.get()) is not None:
            ans = check_batch(task, cache)
            out.write(_LEN.pack(len(ans)) + ans)
            out.flush()
    except BrokenPipeError:       # the parent is gone: nobody to answer
        pass
