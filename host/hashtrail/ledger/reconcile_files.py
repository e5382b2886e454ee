"""`hashtrail reconcile` as a function: bundle files in, one reconcile Result per bundle
out, a checkpoint signed after each.

Why every bundle is read before the ledger is opened: a bad file (not a bundle, cut
short, the wrong kind) is bad input that merges nothing, and it must not leave half of
a run in the ledger, nor move the ledger's key (`Ledger.open_signing`) on its way.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hashtrail import userfile
from hashtrail.collector.bundle import Bundle, read_bundle
from hashtrail.errors import FormatError, InputError
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
        return {"bundle": self.bundle, "signed_by": r.signed_by, "enrolled": r.enrolled,
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
    read = [read_bundle_file(path) for path in bundles]
    runs = []
    with Ledger.open_signing(ledger, key_file) as led:
        if led.migrated is not None and migrated is not None:
            migrated(led.migrated)
        for i, (path, bundle) in enumerate(zip(bundles, read, strict=True)):
            if progress is not None:
                progress(i, len(bundles))
            t0 = time.monotonic()
            runs.append(BundleRun(path, reconcile(led, bundle)))
            log.debug("%s: reconciled in %.2f s", path, time.monotonic() - t0)
        if progress is not None:
            progress(len(bundles), len(bundles))
        size = led.size
    return ReconcileRun(runs, size)
