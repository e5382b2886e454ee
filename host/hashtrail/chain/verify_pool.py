"""Per-entry signatures checked in worker processes: entry bytes in, hashes and verdicts out.

Why processes: OpenSSL drops the GIL while it verifies, but every verify returns into
Python, and with the ledger's own per-entry work (parse, walk, SQLite) on the same
interpreter the threads queue for the GIL; threads never took a per-entry-signed
reconcile past about 0.7 of what OpenSSL alone verifies on all cores
(tools/bench_ledger.py). A worker process has its own interpreter: it hashes each entry
and checks its signature, while the calling process parses, walks the chain and
writes the ledger.

What a worker sees and does: one device key and a task of (entry bytes, signature or
none) as one bytes frame, and it answers SHA-256 of each entry with one verdict byte
each (1: the signature verifies or there is none; 0: it does not), by the one check
every host path uses (`keys.DeviceKey.signed`; a task whose entries all carry a
signature through `signed_all`, the same verdicts for less per entry). It opens no
file: no ledger, no store, no key file. All workers read their tasks from one socket
the parent holds the other end of, and answer on it, so a worker whose parent is gone
(killed, crashed, Ctrl-C) reads end-of-file (or cannot answer) and exits: no
orphans. It runs in its own process group, so a Ctrl-C at the terminal reaches only
the parent, which closes the socket (`VerifyPool.close`); but in the parent's session,
so the scheduler (autogroups) gives the workers the parent's share of the CPU, not one share
each beside other sessions' work.

Starting a worker costs a fresh interpreter and the `cryptography` import (about
0.1 s of CPU each): a pool pays off only on batches large enough, which the caller
decides (ledger.reconcile: `POOL_MIN`, `COLD_MIN`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
from array import array
from collections import deque
from collections.abc import Sequence

from hashtrail.errors import HashtrailError
from hashtrail.formats import keys

log = logging.getLogger(__name__)

_LEN = struct.Struct("<I")
_PUB = 65
_SIG = 64
_NO_SIG = bytes(_SIG)
_TICKET = struct.Struct("<Q")
TASK = 125                  # entries a task at most: what one free worker takes at a time
_TASK_BYTES = 96 * 1024     # entry bytes a task at most (one entry is at most 65,535)
_TASK_MAX = 4 + _PUB + TASK * (4 + 1 + _SIG) + _TASK_BYTES    # a task's frame at most
_ANSWER_MAX = _TICKET.size + 33 * TASK
_LOOK = 0.5                 # seconds between looks at the workers while waiting


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


def check_batch(frame: bytes | memoryview, key_cache: dict[bytes, keys.DeviceKey]) -> bytes:
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
    flags = bytes(mv[at:at + n])
    at += n
    sigs = bytes(mv[at:at + _SIG * n])
    at += _SIG * n
    sha256 = hashlib.sha256
    hashes = []
    for ln in lens:
        hashes.append(sha256(mv[at:at + ln]).digest())
        at += ln
    if at != len(frame):
        raise PoolError("verify batch: lengths do not add up")
    if flags.count(1) == n:             # (a per-entry-signed chunk: every entry signed)
        ok = key.signed_all(hashes, sigs)
    else:
        ok = bytearray(n)
        for i, f in enumerate(flags):
            ok[i] = 1 if f == 0 else f == 1 and key.signed(hashes[i],
                                                           sigs[_SIG * i:_SIG * i + _SIG])
    return b"".join(hashes) + ok


class Verdicts:
    """The answer to one submitted batch (its tasks' tickets), read when asked for."""

    __slots__ = ("_pool", "_tickets")

    def __init__(self, pool: VerifyPool, tickets: list[tuple[int, int]]) -> None:
        self._pool, self._tickets = pool, tickets

    def result(self) -> tuple[list[bytes], bytes]:
        """(entry hashes, verdict bytes) in the order the batch was submitted."""
        hashes: list[bytes] = []
        ok = bytearray()
        for ticket, k in self._tickets:
            ans = self._pool._answer(ticket)
            if len(ans) != 33 * k:
                raise PoolError(f"verify worker: {len(ans)} bytes for {k} entries")
            hashes += [ans[i:i + 32] for i in range(0, 32 * k, 32)]
            ok += ans[32 * k:]
        return hashes, bytes(ok)

    def discard(self) -> None:
        """Not needed (any more): tasks not sent yet are never sent, answers not read
        yet are dropped when they arrive; a no-op once `result` was read, and after the
        pool closed."""
        for ticket, _ in self._tickets:
            self._pool._drop(ticket)


class _Worker:
    """One worker process (it takes tasks from the pool's shared socket)."""

    __slots__ = ("proc",)

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc


class VerifyPool:
    """Worker processes started on the first batch (or `start`), stopped by `close`
    (or leaving the `with` block).

    Each batch is cut into tasks of at most TASK entries, and a task goes to whichever
    worker is free: all workers read one socket (SOCK_SEQPACKET: each read takes one
    whole task), so none idles while another still has work. Why: cut one slice per
    worker, the worker that shared its CPU with this process (which wakes where the
    answer came from) finished its slices a third later than the other, which then sat
    idle (tools/bench_ledger.py; docs/LEDGER.md "Per-entry signatures in worker
    processes"). This process sends tasks and reads answers without blocking, whenever
    it submits or waits for a verdict; between those, the socket's buffers hold work
    for the workers and their answers."""

    def __init__(self, workers: int | None = None) -> None:
        self.size = workers or keys.cpu_workers()
        self._workers: list[_Worker] = []
        self._sock: socket.socket | None = None
        self._out: deque[tuple[int, bytes]] = deque()    # tasks not sent yet
        self._open: set[int] = set()            # tickets whose answer nobody read yet
        self._answers: dict[int, bytes] = {}    # answers read, not asked for yet
        self._dropped: set[int] = set()         # open tickets nobody will ask for
        self._next = 0
        self._buf = bytearray(_ANSWER_MAX)

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
        try:      # (no SOCK_SEQPACKET for AF_UNIX on some systems: then threads)
            mine, theirs = socket.socketpair(socket.AF_UNIX,
                                             getattr(socket, "SOCK_SEQPACKET", -1))
        except (OSError, AttributeError) as e:
            raise PoolError(f"cannot start a verify worker (no task socket: {e})") from None
        for sk in (mine, theirs):       # more tasks and answers in flight where allowed
            with contextlib.suppress(OSError):
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        code = (f"import sys; sys.path.insert(0, {here!r}); "
                f"from hashtrail.chain.verify_pool import serve; serve({theirs.fileno()})")
        try:
            for _ in range(self.size):
                self._workers.append(_Worker(subprocess.Popen(
                    [sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                    pass_fds=(theirs.fileno(),), process_group=0)))
        except OSError as e:
            mine.close()
            self.close()
            raise PoolError(f"cannot start a verify worker ({e})") from None
        except BaseException:
            mine.close()
            self.close()
            raise
        finally:
            theirs.close()      # (the workers hold it: when all are gone, reads end)
        mine.setblocking(False)
        self._sock = mine

    def start_or_warn(self) -> bool:
        """Start the workers unless running; False, with one warning, when they cannot
        start (no interpreter to start, no fork, no task socket...): the caller then
        checks its signatures on threads."""
        if self.running:
            return True
        try:
            self.start()
        except PoolError as e:
            log.warning("%s; per-entry signatures are checked on threads", e)
            return False
        return True

    def submit(self, pub: bytes, bodies: Sequence[bytes], sigs: Sequence[bytes | None]
               ) -> Verdicts:
        """Hand a batch to the workers (TASK entries a task); returns at once."""
        self.start()
        self._check_workers()
        n = len(bodies)
        tickets = []
        lo = 0
        while lo < n:
            hi = min(n, lo + TASK)
            while hi - lo > 1 and sum(map(len, bodies[lo:hi])) > _TASK_BYTES:
                hi = lo + (hi - lo) // 2
            t = self._next
            self._next += 1
            self._out.append((t, _TICKET.pack(t) + encode_batch(pub, bodies[lo:hi],
                                                                sigs[lo:hi])))
            self._open.add(t)
            tickets.append((t, hi - lo))
            lo = hi
        self._pump()
        return Verdicts(self, tickets)

    def close(self) -> None:
        """End every worker: the socket closed, each reads end-of-file (or cannot answer)
        and exits; one still there after a second is killed. Safe to call twice."""
        workers, self._workers = self._workers, []
        sock, self._sock = self._sock, None
        self._out.clear()
        self._open.clear()
        self._answers.clear()
        self._dropped.clear()
        if sock is not None:
            sock.close()
        for wk in workers:
            try:
                wk.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                wk.proc.kill()
                wk.proc.wait()

    def _pump(self) -> None:
        """Send what the socket takes now, read every answer that is there."""
        sock = self._sock
        if sock is None:
            raise PoolError("verify pool: closed")
        out, dropped = self._out, self._dropped
        try:
            while out:
                t, task = out[0]
                if t in dropped:
                    dropped.discard(t)
                    self._open.discard(t)
                else:
                    sock.send(task)
                out.popleft()
        except BlockingIOError:
            pass
        except OSError as e:
            raise PoolError(f"verify workers are gone ({e})") from None
        buf = self._buf
        while True:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                return
            except OSError as e:
                raise PoolError(f"verify workers are gone ({e})") from None
            if n < _TICKET.size:
                self._check_workers()
                raise PoolError("verify workers stopped")
            (t,) = _TICKET.unpack_from(buf)
            if t in dropped:
                dropped.discard(t)
                self._open.discard(t)
            elif t in self._open:
                self._answers[t] = bytes(buf[_TICKET.size:n])
            else:
                raise PoolError(f"verify worker: an answer to no task ({t})")

    def _answer(self, ticket: int) -> bytes:
        while True:
            got = self._answers.pop(ticket, None)
            if got is not None:
                self._open.discard(ticket)
                return got
            if ticket not in self._open:
                raise PoolError("verify pool: that batch was dropped or the pool closed")
            self._pump()
            if ticket in self._answers:
                continue
            sock = self._sock
            assert sock is not None
            r, w, _ = select.select([sock], [sock] if self._out else [], [], _LOOK)
            if not r and not w:         # a worker that died holding a task never answers
                self._check_workers()

    def _drop(self, ticket: int) -> None:
        if ticket in self._open:
            if self._answers.pop(ticket, None) is not None:
                self._open.discard(ticket)
            else:
                self._dropped.add(ticket)

    def _check_workers(self) -> None:
        """PoolError when a worker has stopped: a task it took may never be answered."""
        for wk in self._workers:
            if wk.proc.poll() is not None:
                raise PoolError(f"verify worker {wk.proc.pid} stopped (exit status "
                                f"{wk.proc.returncode})")


def serve(fd: int) -> None:
    """A worker's main loop: one task at a time from the shared socket `fd`, its answer
    back on the same socket, until end-of-file (the parent closed it or is gone: no
    orphans) or the parent can no longer read answers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    buf = bytearray(_TICKET.size + _TASK_MAX)
    view = memoryview(buf)
    cache: dict[bytes, keys.DeviceKey] = {}
    try:
        while (n := sock.recv_into(buf)) > 0:
            sock.send(bytes(view[:_TICKET.size]) + check_batch(view[_TICKET.size:n], cache))
    except (BrokenPipeError, ConnectionResetError):     # the parent is gone
        pass
