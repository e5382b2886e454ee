"""A bundle file's second pass in a process of its own: chunks read, decoded and hashed
ahead of reconcile, on the other core.

Why: reconcile of a large checkpoint-signed bundle is one process doing everything in
turn, and about 4 us of its 12 us an entry (docs/LEDGER.md "A reader process") is
reading the entry lines again, decoding each entry and hashing it and its Merkle
leaf: work that needs nothing of the ledger. A reader process does that for the next
chunks while reconcile walks and writes this one, so the two run side by side; taking
a prepared chunk off the socket costs reconcile well under 1 us an entry.

What the reader does is what reconcile would do with the same file: the second pass
(collector.bundle.BundleFile.runs: the same strict reading, the same errors), cut into
the same chunks (`chunks`), and for each chunk whose entries carry no per-entry
signature and all decode, each entry's hash, decoded fields and leaf hash
(`Prepared`), by the same functions. Any other chunk (a per-entry signature: checked
with the device's key by reconcile, on threads or the verify pool; an entry that does
not decode: reconcile words the finding) comes as its records alone. So the ledger
accepts, holds and refuses exactly what it would without the reader
(tests/host/test_chunk_reader.py runs reconcile both ways).

The reader opens only the bundle file, read-only: no ledger, no key. It talks over a
socket pair only the two processes hold, in frames of plain tuples, lists, bytes,
strings and numbers (the unpickler here refuses any class). It runs in its own
process group (a Ctrl-C reaches reconcile, which closes the socket) and ends when the
socket does: reconcile gone, killed or done, the reader reads nothing more and exits.
The socket's buffers hold a few chunks: the reader stays a few chunks ahead, and
blocks there, so memory is bounded as in one process.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any, NamedTuple

from hashtrail.collector.bundle import BundleFile
from hashtrail.collector.store import RawEntry
from hashtrail.errors import FormatError, HashtrailError
from hashtrail.formats.entry import Entry, parse_entry
from hashtrail.formats.leaf import leaf_hashes

log = logging.getLogger(__name__)

READER_MIN_BYTES = 4 << 20   # a bundle file from which a reader pays (~20,000 entries)
_BUFFER = 4 << 20            # socket buffer each way: a few chunks ahead, no more
_LEN = struct.Struct("<Q")
_CHUNK, _END, _ERROR, _FAILED = b"C", b"E", b"X", b"F"
_new = tuple.__new__


class ReaderError(HashtrailError):
    """The reader process stopped or answered out of protocol: nothing of the chunk it
    was reading counts (whole chunks before it were each one transaction)."""

    hint = "nothing of the interrupted chunk was accepted; run the command again"


class Prepared(NamedTuple):
    """One chunk of a device's entries as reconcile takes it: the records, and when the
    reader did the work, each record's (entry hash, decoded entry, True) as
    reconcile's own check gives it and each one's Merkle leaf hash; both None when
    reconcile must check the chunk itself."""

    device_id: str
    recs: list[RawEntry]
    checked: list[tuple[bytes, Entry | HashtrailError, bool]] | None
    leaves: list[bytes] | None


# -- cutting a bundle's entries into chunks (the reader and reconcile alike) ----------------

def chunks(runs: Iterable[tuple[str, list[RawEntry]]], whole: bool, size: int
           ) -> Iterator[tuple[str, list[RawEntry]]]:
    """(device, up to `size` of its entries in bundle order), each device's in order,
    from `runs`: (device, some of its entries), in bundle order (runs_of).

    An in-memory bundle (`whole`) goes by device id, as one batch per device up to
    `size`. A streamed one is buffered up to `size` entries in all: a device whose run
    reaches `size` goes at once, a full buffer goes all, by device id. The exporter
    writes devices in id order and each by seq, so a large bundle makes full chunks;
    any other order is still correct, only in smaller batches (as several bundles)."""
    buf: dict[str, list[RawEntry]] = {}
    n = 0
    # A bundle names one device for many lines in a row: each run is taken in slices
    # that end exactly where the entry-by-entry rule would act (a device's size-th
    # entry, the size-th entry in all), so the chunks, and the leaf order, are the
    # same, without a Python step per entry (tests/host/test_reconcile_chunks.py).
    for did, run in runs:
        if whole:
            lst = buf.get(did)
            if lst is None:
                buf[did] = list(run)
            else:
                lst += run
            continue
        i, k = 0, len(run)
        while i < k:
            lst = buf.get(did)
            if lst is None:
                lst = buf[did] = []
            room = min(size - len(lst), size - n)
            got = run if i == 0 and room >= k else run[i:i + room]
            lst += got
            n += len(got)
            i += len(got)
            if len(lst) >= size:
                n -= len(lst)
                yield did, buf.pop(did)
            elif n >= size:
                for d in sorted(buf):
                    yield d, buf[d]
                buf, n = {}, 0
    for d in sorted(buf):
        lst = buf[d]
        for i in range(0, len(lst), size):
            yield d, lst[i:i + size]


def runs_of(items: Iterable[tuple[str, RawEntry]], size: int
            ) -> Iterator[tuple[str, list[RawEntry]]]:
    """(device, entries) pairs as runs for `chunks`: each device's run of consecutive
    items, in lists of at most `size` (a stream stays bounded in memory)."""
    for did, run in itertools.groupby(items, key=_first):
        while True:
            got = [r for _, r in itertools.islice(run, size)]
            if not got:
                break
            yield did, got


_first = itemgetter(0)


def prepare(did: str, recs: list[RawEntry]) -> tuple[list[bytes], list[Entry],
                                                      list[bytes]] | None:
    """(entry hashes, decoded entries, leaf hashes) of a chunk without per-entry
    signatures whose entries all decode; None for any other chunk (reconcile checks
    it itself: the signatures need the device's key, a bad entry its finding)."""
    if any(r.sig is not None for r in recs):
        return None
    try:
        fs = [parse_entry(r.body) for r in recs]
    except HashtrailError:
        return None
    if any(type(f) is not Entry for f in fs):
        return None
    sha256 = hashlib.sha256
    hs = [sha256(r.body).digest() for r in recs]
    return hs, fs, leaf_hashes(did, [(r.seq, h, r.body)
                                     for r, h in zip(recs, hs, strict=True)])


# -- the reader process -----------------------------------------------------------------

def serve(fd: int, path: str, size: int) -> None:
    """The reader's main loop: every chunk of the bundle file `path` (chunks of `size`),
    prepared where it can be, as one frame each, then an end frame; a bad line ends
    with an error frame carrying the message the same pass in reconcile would raise.
    Stops quietly when reconcile is gone (the socket closed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # (it makes only acyclic tuples and lists, freed by reference counting: the cyclic
    # collector would rescan them over and over, about a tenth of its time)
    gc.disable()
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    try:
        try:
            for did, recs in chunks(BundleFile(path).runs(), False, size):
                got = prepare(did, recs)
                rows = [tuple(r) for r in recs]
                body: Any = ((did, rows, None) if got is None else
                             (did, rows, got[0], [tuple(f) for f in got[1]], got[2]))
                _send(sock, _CHUNK, body)
        except FormatError as e:
            _send(sock, _ERROR, str(e))
            return
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:      # a fault of the reader's own: said, not a traceback
            _send(sock, _FAILED, f"{type(e).__name__}: {e}")
            return
        _send(sock, _END, None)
    except (BrokenPipeError, ConnectionResetError):     # reconcile is gone
        pass


def _send(sock: socket.socket, tag: bytes, body: Any) -> None:
    data = pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LEN.pack(len(data) + 1) + tag + data)


class _PlainUnpickler(pickle.Unpickler):
    """Frames hold only built-in values: any class named in one is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise ReaderError(f"bundle reader: unexpected {module}.{name} in a frame")


class ChunkReader:
    """A running reader process over one bundle file; `prepared()` yields its chunks.

    Start it with `start` (None, with one warning, where it cannot run: reconcile then
    reads the file itself). Close it (or leave the `with` block) when done or on any
    error: the process ends with the socket."""

    def __init__(self, path: str, size: int, proc: subprocess.Popen[bytes] | None,
                 sock: socket.socket) -> None:
        self.path, self.size = path, size
        self._proc: subprocess.Popen[bytes] | None = proc
        self._sock: socket.socket | None = sock

    @classmethod
    def start(cls, path: str | os.PathLike[str], size: int) -> ChunkReader | None:
        """A reader over bundle file `path` in chunks of `size`, started now (it reads
        ahead while the caller does other work, the first pass, say)."""
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            mine, theirs = socket.socketpair()
        except OSError as e:
            log.warning("cannot start a bundle reader (%s); reconcile reads the file "
                        "itself", e)
            return None
        for sk in (mine, theirs):
            with contextlib.suppress(OSError):
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        p = os.fspath(path)
        code = (f"import sys; sys.path.insert(0, {here!r}); "
                "from hashtrail.ledger.chunk_reader import serve; "
                f"serve({theirs.fileno()}, {p!r}, {int(size)})")
        try:
            proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                    pass_fds=(theirs.fileno(),), process_group=0)
        except OSError as e:
            mine.close()
            log.warning("cannot start a bundle reader (%s); reconcile reads the file "
                        "itself", e)
            return None
        finally:
            theirs.close()
        return cls(p, size, proc, mine)

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepared(self) -> Iterator[Prepared]:
        """Every chunk of the file, in the order reconcile would cut them; FormatError
        with the pass's own message for a bad line, ReaderError if the reader stops."""
        while True:
            was = gc.isenabled()
            gc.disable()      # (thousands of acyclic objects a frame: reconcile._no_cyclic_gc)
            try:
                p = self._next()
            finally:
                if was:
                    gc.enable()
            if p is None:
                return
            yield p

    def _next(self) -> Prepared | None:
        """The next frame's chunk; None at the end."""
        rebuild = _new
        tag, body = self._frame()
        if tag == _END:
            return None
        if tag == _ERROR:
            raise FormatError(str(body))
        if tag == _FAILED:
            raise ReaderError(f"bundle reader failed reading {self.path}: {body}")
        if len(body) == 3:
            did, rows, _ = body
            return Prepared(did, [rebuild(RawEntry, r) for r in rows], None, None)
        did, rows, hs, fs, leaves = body
        if not len(rows) == len(hs) == len(fs) == len(leaves):
            raise ReaderError("bundle reader: a chunk's parts differ in length")
        return Prepared(did, [rebuild(RawEntry, r) for r in rows],
                        [(h, rebuild(Entry, f), True) for h, f in zip(hs, fs, strict=True)],
                        leaves)

    def _frame(self) -> tuple[bytes, Any]:
        sock = self._sock
        if sock is None:
            raise ReaderError("bundle reader: closed")
        head = self._exactly(sock, _LEN.size)
        (n,) = _LEN.unpack(head)
        data = self._exactly(sock, n)
        tag = bytes(data[:1])
        if tag not in (_CHUNK, _END, _ERROR, _FAILED):
            raise ReaderError("bundle reader: a frame of no known kind")
        try:
            body = _PlainUnpickler(io.BytesIO(memoryview(data)[1:])).load()
        except ReaderError:
            raise
        except Exception as e:       # (pickle's own errors have no common base)
            raise ReaderError(f"bundle reader: a frame that does not decode ({e})") from None
        return tag, body

    def _exactly(self, sock: socket.socket, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = sock.recv_into(view[got:])
            except OSError as e:
                raise ReaderError(f"bundle reader is gone ({e})") from None
            if k == 0:
                raise ReaderError(self._stopped())
            got += k
        return buf

    def _stopped(self) -> str:
        proc = self._proc
        code = None if proc is None else proc.poll()
        if proc is not None and code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=1.0)
        return (f"bundle reader stopped (exit status {code}) while reading {self.path}"
                if code is not None else f"bundle reader closed its socket ({self.path})")

    def close(self) -> None:
        """End the reader: the socket closed, it stops at its next send; one still there
        after a second is killed. Safe to call twice."""
        sock, self._sock = self._sock, None
        proc, self._proc = self._proc, None
        if sock is not None:
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
