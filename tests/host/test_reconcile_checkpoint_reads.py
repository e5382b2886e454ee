"""A reconcile reads each of a device's checkpoints a bounded number of times.

Why: a device's bundle checkpoints are all stored when its first chunk starts, and
each chunk's walk (reconcile._extend) and fork check (reconcile._forks) read the
device's checkpoints from its tip up. Read to the end each time, a device of many
chunks had its checkpoints above the tip read again at every chunk: quadratic in its
entries (at 2 devices of 10^5 entries, a checkpoint every 100: 42,000 rows read
instead of 4,000). Each read now stops at the highest seq the walk can use."""

from __future__ import annotations

from pathlib import Path

import pytest
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.ledger_db import Ledger
from ledgerkit import Device, bundle, trust

CHUNK = 37


def test_each_checkpoint_is_read_at_most_twice(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "CHUNK", CHUNK)
    d = Device(703)
    d.readings(20 * CHUNK - 1)
    cps = [(d, d.checkpoint(seq=s)) for s in range(9, 20 * CHUNK, 10)]
    b = bundle([d], cps=cps)
    rows: list[int] = []
    with trust(Ledger.create(tmp_path / "l.db", "test/cps", key_file=tmp_path / "l.key")
               ) as led:
        db = type(led.storage)
        read = db.device_checkpoints
        monkeypatch.setattr(db, "device_checkpoints",
                            lambda self, *a: rows.append(len(got := read(self, *a))) or got)
        r = rec.reconcile(led, b, workers=1)
        assert (r.accepted, r.pending, r.findings) == (20 * CHUNK, 0, [])
        assert r.checkpoints == len(cps)
    # (the walk's and the fork check's, each once; before: 20 chunks each reading all
    # the checkpoints above the tip, about 10 times as many)
    assert sum(rows) <= 2 * len(cps), (sum(rows), len(rows))
