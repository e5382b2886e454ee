"""reconcile carries a device's held entries from one chunk to the next in memory
(reconcile._Carry) instead of writing them to `pending` and reading them back.

Held to three things: it decides exactly what reading them back decided (every case
of test_reconcile_extend, with the carry refused at every chunk, which is the old
way: write, then reload); a device whose signature comes only in its last chunk is
read from `pending` once, not once per chunk (the quadratic cost this removes); and
another reconcile of the same ledger between two chunks (many collectors, on either
backend) is seen: the walk goes back to `pending`, nothing is lost, nothing is
written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hashtrail.collector.bundle import Bundle
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from ledgerkit import Device, bundle, trust
from test_reconcile_extend import _cases, _run

CHUNK = 37


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "CHUNK", CHUNK)


@pytest.mark.parametrize("case", list(_cases()))
def test_carried_decides_what_reloaded_decides(case: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bundles = _cases()[case]()
    carried = _run(tmp_path, "carried", bundles)
    monkeypatch.setattr(rec._Carry, "holds", lambda self, db, dev: False)
    reloaded = _run(tmp_path, "reloaded", bundles)
    assert carried == reloaded


def _dev(secret: int, n: int) -> Device:
    d = Device(secret)
    d.readings(n - 1)
    return d


def _ledger(tmp: Path, name: str = "l") -> Ledger:
    return trust(Ledger.create(tmp / f"{name}.db", "test/carry", key_file=tmp / f"{name}.key"))


@pytest.mark.parametrize("spill", [False, True])
def test_held_entries_are_read_back_once_per_run(spill: bool, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Carried, not one row is written or read back; spilled past SPILL_CHUNKS chunks
    (reconcile._Spill), each spilled entry is written once and read back once, a
    chunk at a time: linear either way."""
    monkeypatch.setattr(rec, "SPILL_CHUNKS", 4 if spill else 10 ** 6)
    monkeypatch.setattr(rec, "FLOAT_CHUNKS", 4 if spill else 10 ** 6)
    d = _dev(701, 20 * CHUNK)
    b = bundle([d], cps=[(d, d.checkpoint())])     # one signature, in the last chunk
    reads: list[int] = []
    writes: list[int] = []
    with _ledger(tmp_path) as led:
        db = type(led.storage)
        pending, add = db.pending, db.add_pending

        def read(self: Any, *a: Any) -> Any:
            rows = pending(self, *a)
            reads.append(len(rows))
            return rows
        monkeypatch.setattr(db, "pending", read)
        monkeypatch.setattr(db, "add_pending",
                            lambda self, rows: writes.append(len(rows)) or add(self, rows))
        r = rec.reconcile(led, b, workers=1)
        assert (r.accepted, r.pending, r.findings) == (20 * CHUNK, 0, [])
        if not spill:
            # (before: 20 reads, the last of 19 chunks' rows, and 19 chunks written)
            assert len(reads) == 1 and sum(writes) == 0
        else:
            # 16 chunks spilled, 4 at a time; read back at the signature, CHUNK a read
            assert [w for w in writes if w] == [4 * CHUNK] * 4 and sum(reads) == 16 * CHUNK
            assert len(reads) == 1 + 16 and max(reads) == CHUNK
        assert list(led.storage.scan_pending()) == []


def test_a_run_ending_with_entries_held_writes_them_once(tmp_path: Path) -> None:
    d = _dev(702, 6 * CHUNK)
    b = bundle([d], cps=[(d, d.checkpoint(seq=2 * CHUNK - 1))])
    with _ledger(tmp_path) as led:
        r = rec.reconcile(led, b, workers=1)
        assert (r.accepted, r.pending) == (2 * CHUNK, 4 * CHUNK)
        held = sorted(row[1] for row in led.storage.scan_pending())
        assert held == list(range(2 * CHUNK, 6 * CHUNK))
        # the rest comes signed from another collector: all of it is accepted from pending
        r = rec.reconcile(led, bundle([d], cps=[(d, d.checkpoint())], name="c2"), workers=1)
        assert (r.accepted, r.pending, r.findings) == (4 * CHUNK, 0, [])
        assert list(led.storage.scan_pending()) == []


def _between_chunks(monkeypatch: pytest.MonkeyPatch, after: int, act: Any) -> None:
    """Run `act()` once, after the main run's chunk number `after` (from 1)."""
    chunk = rec._Run.chunk
    seen = [0]

    def wrapped(self: rec._Run, *a: Any, **k: Any) -> None:
        chunk(self, *a, **k)
        seen[0] += 1
        if seen[0] == after:
            act()

    monkeypatch.setattr(rec._Run, "chunk", wrapped)


def _other(target: str, key: Path, b: Bundle) -> Any:
    def act() -> None:      # another collector's reconcile, its own connection
        with trust(Ledger.open_signing(target, key)) as led:
            r = rec.reconcile(led, b, workers=1)
            assert not [f for f in r.findings if "refused" in f.reason]
    return act


@pytest.mark.parametrize("other", ["accepts what we carry", "holds more of the device",
                                   "signs what we carry"])
def test_another_reconcile_between_chunks(other: str, tmp_path: Path,
                                          ledger_at: Callable[[str], str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    n = 5 * CHUNK
    d = _dev(703, n)
    mine = bundle([d], cps=[(d, d.checkpoint())])
    theirs = {
        # entries 0..CHUNK+9, signed: the other run accepts past what this run carries
        "accepts what we carry": bundle([d], ranges={d.id_hex: (0, CHUNK + 10)},
                                        cps=[(d, d.checkpoint(seq=CHUNK + 9))], name="c2"),
        # entries above a hole: held by the other run, rows this run has not read
        "holds more of the device": bundle([d], ranges={d.id_hex: (3 * CHUNK, 4 * CHUNK)},
                                           name="c2"),
        # a checkpoint over a carried entry, alone; this run's bundle has none
        "signs what we carry": bundle([d], ranges={d.id_hex: (0, 0)},
                                      cps=[(d, d.checkpoint(seq=CHUNK - 5))], name="c2"),
    }[other]
    upto = n
    if other == "signs what we carry":
        mine, upto = bundle([d]), CHUNK - 4
    target, key = ledger_at("l"), tmp_path / "l.key"
    Ledger.create(target, "test/carry", key_file=key).close()
    _between_chunks(monkeypatch, 1, _other(target, key, theirs))
    with trust(Ledger.open_signing(target, key)) as led:
        r = rec.reconcile(led, mine, workers=1)
        assert [f for f in r.findings] == []
        assert r.pending == n - upto
        dev = led.storage.device(d.id_hex)
        assert dev is not None and dev.tip_seq == upto - 1
        assert sorted(row[1] for row in led.storage.scan_pending()) == list(range(upto, n))
        assert sorted(led.storage.entry_hashes(d.id_hex, 0, n)) == list(range(upto))
        assert led.size == upto
        report = verify_ledger(led)
        assert report.ok, report
