"""`hashtrail reconcile` as a function: bundle files in, one reconcile Result per bundle
out, a checkpoint signed after each.

Why every bundle is read before the ledger is opened to sign: a bad file (not a bundle,
cut short, the wrong kind) is bad input that merges nothing, and it must not leave half
of a run in the ledger, nor move the ledger's key (`Ledger.open_signing`) on its way.
That first pass streams (collector.bundle.BundleFile.scan: it keeps no entries); the
entries are read again, in bounded chunks, as they are reconciled.

A bundle the ledger already reconciled to the end (its digest in `bundles`,
collector.bundle.bundle_digest: the signature line, O(1)) is not read at all: it is
reported "already reconciled" and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hashtrail import userfile
from hashtrail.chain.verify_pool import VerifyPool
from hashtrail.collector.bundle import (
    Bundle,
    BundleFile,
    bundle_digest,
    cursor_text,
    read_bundle,
)
from hashtrail.errors import FormatError, HashtrailError, InputError
from hashtrail.formats import note
from hashtrail.formats.keys import cpu_workers
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.chunk_reader import READER_MIN_BYTES, ChunkReader
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import Result, reconcile

log = logging.getLogger(__name__)

BUNDLE_FILE = "a bundle (JSON lines, from `hashtrail export`)"


def read_bundle_file(path: str | os.PathLike[str]) -> Bundle:
    """A bundle file the user named; InputError naming it when it is not one."""
    userfile.check_input(path, BUNDLE_FILE, max_bytes=None)
    try:
        return read_bundle(os.fspath(path))
    except FormatError as e:
        raise InputError(f"{os.fspath(path)}: {e}; expected {BUNDLE_FILE}") from None


class BundleRun(NamedTuple):
    bundle: str         # the file, as given
    result: Result

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {"bundle": self.bundle, "already": r.already,
                "signed_by": r.signed_by, "enrolled": r.enrolled,
                "enrollments_signed": r.enrollments_signed,
                "accepted": r.accepted, "duplicates": r.duplicates, "pending": r.pending,
                "checkpoints": r.checkpoints, "forks": r.forks,
                "findings": [f._asdict() for f in r.findings]}


class ReconcileRun(NamedTuple):
    bundles: list[BundleRun]
    size: int           # the ledger's tree size afterwards

    @property
    def findings(self) -> int:
        return sum(len(b.result.findings) for b in self.bundles)


def reconcile_files(ledger: str | os.PathLike[str], bundles: Sequence[str],
                    key_file: str | os.PathLike[str] | None = None,
                    migrated: Callable[[Path], None] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> ReconcileRun:
    """Verify the bundle files `bundles` and merge them, in order, into `ledger` (its
    signing key from `key_file`, else the default place: hashtrail.ledger.ledger_key).
    `migrated` hears of a key that opening the ledger moved out of the ledger file;
    `progress` sees (bundles merged, bundles) as the run goes."""
    for path in bundles:
        userfile.check_input(path, BUNDLE_FILE, max_bytes=None)
    try:
        digests = [bundle_digest(path) for path in bundles]
    except OSError as e:
        raise InputError(f"cannot read bundle: {e}") from None
    seen = _seen(ledger, digests)
    files = [BundleFile(path) for path in bundles]
    new = [d not in seen for d in digests]
    with contextlib.ExitStack() as stack:
        readers = _Readers(stack, bundles, new)
        # the first large bundle's reader reads ahead while the first pass runs
        readers.start_first()
        heads = [_scan(f) if n else None for n, f in zip(new, files, strict=True)]
        return _merge(ledger, key_file, bundles, files, heads, digests, readers, migrated,
                      progress)


def _merge(ledger: str | os.PathLike[str], key_file: str | os.PathLike[str] | None,
           bundles: Sequence[str], files: list[BundleFile], heads: list[Bundle | None],
           digests: list[bytes], readers: _Readers,
           migrated: Callable[[Path], None] | None,
           progress: Callable[[int, int], None] | None) -> ReconcileRun:
    runs = []
    # one pool of verify workers for all the bundles, started by the first that needs
    # it (ledger.reconcile: COLD_MIN), ended before the ledger closes
    with Ledger.open_signing(ledger, key_file) as led, VerifyPool() as pool:
        if led.migrated is not None and migrated is not None:
            migrated(led.migrated)
        for i, (path, f, head, digest) in enumerate(
                zip(bundles, files, heads, digests, strict=True)):
            if progress is not None:
                progress(i, len(bundles))
            if head is None:
                head = Bundle("", "", 0)       # seen: reconcile returns before reading
            t0 = time.monotonic()
            # (a bundle named twice is seen by its second turn: no reader to start)
            reader = None if led.storage.bundle_seen(digest) else readers.get(i)
            runs.append(BundleRun(path, reconcile(
                led, head, runs=f.runs(), digest=digest, pool=pool,
                prepared=None if reader is None else reader.prepared())))
            readers.close(i)
            log.debug("%s: reconciled in %.2f s", path, time.monotonic() - t0)
        if progress is not None:
            progress(len(bundles), len(bundles))
        size = led.size
    return ReconcileRun(runs, size)


class _Readers:
    """The bundle readers (ledger.chunk_reader) of the large bundles not seen before, one
    at a time: each started when its bundle's turn comes (the first one before the
    first pass, which it overlaps), closed when its bundle is done or the run fails."""

    def __init__(self, stack: contextlib.ExitStack, bundles: Sequence[str],
                 new: list[bool]) -> None:
        self.stack = stack
        self.want = [n and _large(p) for n, p in zip(new, bundles, strict=True)]
        self.bundles = bundles
        self.started: dict[int, ChunkReader | None] = {}

    def start_first(self) -> None:
        if True in self.want:
            self.get(self.want.index(True))

    def get(self, i: int) -> ChunkReader | None:
        if not self.want[i]:
            return None
        if i not in self.started:
            r = self.started[i] = ChunkReader.start(self.bundles[i], rec.CHUNK)
            if r is not None:
                self.stack.callback(r.close)
        return self.started[i]

    def close(self, i: int) -> None:
        r = self.started.get(i)
        if r is not None:
            r.close()


def _large(path: str) -> bool:
    """Whether a bundle file is large enough for a reader process to pay, on a machine
    where it has a CPU of its own."""
    if cpu_workers() < 2:
        return False
    try:
        return os.path.getsize(path) >= READER_MIN_BYTES
    except OSError:
        return False


def _scan(f: BundleFile) -> Bundle:
    try:
        return f.scan()
    except FormatError as e:
        raise InputError(f"{f.path}: {e}; expected {BUNDLE_FILE}") from None


def _seen(ledger: str | os.PathLike[str], digests: list[bytes]) -> set[bytes]:
    """The digests the ledger already reconciled. A ledger that cannot be opened here
    sees none: opening it to sign, after the bundles are read, says what is wrong."""
    try:
        with Ledger.open(ledger) as led:
            return {d for d in digests if led.storage.bundle_seen(d)}
    except HashtrailError:
        return set()


def collector_cursor(ledger: str | os.PathLike[str], key: note.Verifier) -> str:
    """The cursor file text of collector `key` in `ledger`: per device, the highest seq
    its signed bundles delivered (`export --since` sends only what lies above)."""
    with Ledger.open(ledger) as led:
        k = key.to_string()
        return cursor_text(k, led.storage.cursor(k))
