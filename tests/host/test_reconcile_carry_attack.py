"""Attacks on the carry (reconcile._Carry): what another reconcile of the same ledger
can do to the entries a run holds in memory between two chunks of a device.

A held entry that carries its own device signature (a per-entry signed device above a
hole) must keep it when the carry is written to `pending`, whoever wrote an unsigned
copy of the same bytes there first: anyone may send a bundle, and a copy stripped of
its signatures, raced in between two chunks, must not leave the device's entries held
for good (before the carry, the signed copy was a row first, or signed the row).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hashtrail.collector.bundle import BundleFile, bundle_digest
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from ledgerkit import Device, bundle, save, trust
from test_reconcile_carry import _between_chunks, _other
from test_reconcile_extend import _run

CHUNK = 37


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "CHUNK", CHUNK)


def _stripped(d: Device) -> Device:
    """The same chain with every per-entry signature taken off (what anyone can send)."""
    u = copy.copy(d)
    u.entries = [(s, body, None) for s, body, _ in d.entries]
    return u


@pytest.mark.parametrize("when", ["between two chunks", "after the last chunk"])
def test_an_unsigned_copy_raced_in_does_not_strip_carried_signatures(
        when: str, tmp_path: Path, ledger_at: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    n, hole = 5 * CHUNK, 10
    d = Device(711, per_entry_sig=True)
    d.readings(n - 1)
    other = Device(712)                  # a second device: the run moves on, flushes
    other.readings(5)
    # mine: every entry but `hole`, signed; 11.. are held (carried) above the hole
    mine = bundle([d, other], cps=[(other, other.checkpoint())])
    mine.entries = [(i, r) for i, r in mine.entries if not (i == d.id_hex and r.seq == hole)]
    upto = 3 * CHUNK if when == "after the last chunk" else CHUNK
    theirs = bundle([_stripped(d)], ranges={d.id_hex: (hole + 1, upto)}, name="c2")
    target, key = ledger_at("l"), tmp_path / "l.key"
    Ledger.create(target, "test/carry", key_file=key).close()
    # chunk 1 of d is entries 0..37 (without 10); d has 5 chunks, `other` comes after
    after = (1 if when == "between two chunks" else 5) + (other.id_hex < d.id_hex)
    _between_chunks(monkeypatch, after, _other(target, key, theirs))
    with trust(Ledger.open_signing(target, key)) as led:
        r = rec.reconcile(led, mine, workers=1)
        assert (r.accepted, r.pending) == (hole + 6, n - hole - 1)
        # the missing entry comes, signed: everything above it is signed, accepted
        r = rec.reconcile(led, bundle([d], ranges={d.id_hex: (hole, hole + 1)}, name="c3"),
                          workers=1)
        assert r.findings == []
        assert r.accepted == n - hole
        assert list(led.storage.scan_pending()) == []
        assert verify_ledger(led).ok


@pytest.mark.parametrize("then", ["the run ends", "the run moves on to another device"])
def test_a_signature_that_comes_after_the_last_chunk_is_not_missed(
        then: str, tmp_path: Path, ledger_at: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another reconcile brings only a checkpoint over entries this run carries, after
    this run's last chunk of the device, before the carry is written to `pending`: it
    saw no entries to accept. Serially, in either order, they are accepted; so must
    they be here (before the carry they were rows by then, and the other run took
    them)."""
    n = 4 * CHUNK
    d = Device(713)
    d.readings(n - 1)
    devs = [d]
    other = Device(714)
    other.readings(5)
    if then == "the run moves on to another device":
        devs.append(other)
    mine = bundle(devs, cps=[(other, other.checkpoint())] if len(devs) > 1 else [])
    theirs = bundle([d], ranges={d.id_hex: (0, 0)}, cps=[(d, d.checkpoint(seq=n - 10))],
                    name="c2")
    target, key = ledger_at("l"), tmp_path / "l.key"
    Ledger.create(target, "test/carry", key_file=key).close()
    after = 4 + (len(devs) > 1 and other.id_hex < d.id_hex)
    _between_chunks(monkeypatch, after, _other(target, key, theirs))
    with trust(Ledger.open_signing(target, key)) as led:
        rec.reconcile(led, mine, workers=1)
        dev = led.storage.device(d.id_hex)
        assert dev is not None and dev.tip_seq == n - 10
        assert sorted(row[1] for row in led.storage.scan_pending()) == list(range(n - 9, n))
        assert verify_ledger(led).ok


@pytest.mark.parametrize("spill", [False, True])
def test_a_refused_device_between_two_chunks_keeps_the_carry(
        spill: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A streamed bundle that interleaves a device of many chunks with one whose
    enrollment is refused (the bundle is not signed by a trusted collector; the first
    device was enrolled before): the refused device's chunks do nothing,
    so the carry goes on (one read of `pending`, nothing written; spilled, its span
    read back once), and the ledger and findings are those of reloading at every
    chunk."""
    monkeypatch.setattr(rec, "SPILL_CHUNKS", 2 if spill else 10 ** 6)
    monkeypatch.setattr(rec, "FLOAT_CHUNKS", 2 if spill else 10 ** 6)
    d = Device(721)
    d.readings(6 * CHUNK - 1)
    bad = Device(722)
    bad.readings(3 * CHUNK)
    b = bundle([d, bad], cps=[(d, d.checkpoint())], signer=None)
    mine = [r for r in b.entries if r[0] == d.id_hex]
    theirs = [r for r in b.entries if r[0] == bad.id_hex]
    b.entries = [r for i in range(0, len(mine), 10)
                 for r in mine[i:i + 10] + theirs[i // 2:i // 2 + 5]]
    path = save(b, tmp_path / "b.jsonl")

    def run(name: str) -> tuple[Any, ...]:
        with trust(Ledger.create(tmp_path / f"{name}.db", "t/r",
                                 key_file=tmp_path / f"{name}.key")) as led:
            rec.reconcile(led, bundle([d], ranges={d.id_hex: (0, 0)}), workers=1)
            f = BundleFile(path)
            r = rec.reconcile(led, f.scan(), workers=1, entries=f.entries(),
                              digest=bundle_digest(path))
            return ((r.accepted, r.pending, r.findings),
                    sorted(led.storage.entry_hashes(d.id_hex, 0, 10 ** 6).items()),
                    sorted(row[:3] for row in led.storage.scan_pending()))

    reads: list[str] = []
    with Ledger.create(tmp_path / "probe.db", "t/p", key_file=tmp_path / "p.key") as probe:
        db = type(probe.storage)
    pending = db.pending
    monkeypatch.setattr(db, "pending",
                        lambda self, did, *a: reads.append(did) or pending(self, did, *a))
    carried = run("carried")
    assert carried[0][:2] == (6 * CHUNK, 0)
    # (spilled: the spilled span read back a chunk at a time, once: a few reads more)
    assert reads[0] == d.id_hex and set(reads) == {d.id_hex}
    assert len(reads) == 1 or spill
    assert [f.device_id for f in carried[0][2]] == [bad.id_hex]
    monkeypatch.setattr(rec._Carry, "holds", lambda self, db, dev: False)
    assert run("reloaded") == carried


@pytest.mark.parametrize("spill", [False, True])
def test_a_fork_accepted_by_another_run_after_the_last_chunk_is_evidence(
        spill: bool, tmp_path: Path, ledger_at: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """This run carries a clone's chain (unsigned, linked from the tip); after its last
    chunk another run accepts the real chain over the same seqs and stores the clone's
    checkpoint. The clone's entries reach `pending` only at the flush: the other run
    could not see them, so it is the flush's walk that keeps the fork's evidence (as
    the other run did when they were rows, before the carry). Spilled (reconcile._Spill)
    they were rows when the other run looked: that run keeps the evidence."""
    monkeypatch.setattr(rec, "SPILL_CHUNKS", 4 if spill else 10 ** 6)
    monkeypatch.setattr(rec, "FLOAT_CHUNKS", 4 if spill else 10 ** 6)
    k = 20
    real = Device(731)
    real.readings(k + 2 * CHUNK)
    clone = real.fork(k)
    clone.readings(4 * CHUNK)
    target, key = ledger_at("l"), tmp_path / "l.key"
    with trust(Ledger.create(target, "test/carry", key_file=key)) as led:
        rec.reconcile(led, bundle([real], ranges={real.id_hex: (0, k)},
                                  cps=[(real, real.checkpoint(seq=k - 1))], name="c0"),
                      workers=1)
    mine = bundle([clone], ranges={clone.id_hex: (k, len(clone.entries))})
    theirs = bundle([real], ranges={real.id_hex: (k, len(real.entries))},
                    cps=[(real, real.checkpoint()), (clone, clone.checkpoint())], name="c2")
    _between_chunks(monkeypatch, 4, _other(target, key, theirs))
    with trust(Ledger.open_signing(target, key)) as led:
        r = rec.reconcile(led, mine, workers=1)
        if spill:
            # the other run saw the clone's rows, a chain its checkpoint covers, before
            # the real one's: it accepted the clone's and keeps the real checkpoint
            # and the real chain that disagrees as the fork's evidence (before the
            # carry, the same)
            assert r.forks == 0
            assert {row[0] for row in led.storage.scan_evidence()} == {real.id_hex}
            dev = led.storage.device(real.id_hex)
            assert dev is not None and dev.forked
            assert verify_ledger(led).problems == []      # (an alarm: the fork)
            return
        assert r.forks == 1
        assert [(row[0], int(row[1])) for row in led.storage.scan_evidence()] == \
            [(real.id_hex, k)]
        dev = led.storage.device(real.id_hex)
        assert dev is not None and dev.tip_seq == len(real.entries) - 1


def test_a_signed_copy_later_in_the_bundle_signs_a_carried_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One bundle holds a per-entry signed device's entries twice: stripped of their
    signatures first (carried, chunk after chunk: not rows of `pending`), then signed.
    The signed copy signs the carried candidate in memory (what sign_pending does to a
    row): everything is accepted, as when every chunk went through `pending`."""
    d = Device(741, per_entry_sig=True)
    d.readings(3 * CHUNK)
    b = bundle([d])
    unsigned = [(did, r._replace(sig=None)) for did, r in b.entries]
    b.entries = unsigned[1:] + b.entries[1:] + b.entries[:1]   # entry 0 last: all held
    carried = _run(tmp_path, "carried", [b])
    assert carried[0][0][:3] == (3 * CHUNK + 1, 0, 0)
    monkeypatch.setattr(rec._Carry, "holds", lambda self, db, dev: False)
    assert _run(tmp_path, "reloaded", [b]) == carried


@pytest.mark.parametrize("spill", [False, True])
def test_pending_says_what_is_held_at_the_end(
        spill: bool, tmp_path: Path, ledger_at: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """This run holds a device's entries (no signature in its bundle, spilled or
    carried); after the device's last chunk, another run brings the checkpoint over
    them and accepts them. Result.pending is what the ledger holds when this run ends
    (0), not what this run's walks left held (4 chunks): summed from the walks (before
    this change), the spilled case said 148. (Carried, the entries reach
    `pending` only at the flush, whose walk sees the checkpoint: 0 either way.)"""
    monkeypatch.setattr(rec, "SPILL_CHUNKS", 2 if spill else 10 ** 6)
    monkeypatch.setattr(rec, "FLOAT_CHUNKS", 2 if spill else 10 ** 6)
    d = Device(751)
    d.readings(4 * CHUNK - 1)
    other = Device(752)                  # a second device: a chunk after d's last
    other.readings(5)
    mine = bundle([d, other], cps=[(other, other.checkpoint())])
    theirs = bundle([d], ranges={d.id_hex: (0, 0)}, cps=[(d, d.checkpoint())], name="c2")
    target, key = ledger_at("l"), tmp_path / "l.key"
    Ledger.create(target, "test/carry", key_file=key).close()
    # (in-memory bundles go by device id: d's 4 chunks first, or other's one first)
    after = 4 + (other.id_hex < d.id_hex)
    _between_chunks(monkeypatch, after, _other(target, key, theirs))
    with trust(Ledger.open_signing(target, key)) as led:
        r = rec.reconcile(led, mine, workers=1)
        dev = led.storage.device(d.id_hex)
        assert dev is not None and dev.tip_seq == 4 * CHUNK - 1
        assert list(led.storage.scan_pending()) == []
        assert r.pending == 0
