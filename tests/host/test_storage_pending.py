"""Held entries in storage (`add_pending`, `pending`, `drop_pending`), on both backends:
the bulk paths (PostgreSQL: binary COPY through a temporary table, one DELETE over key
arrays, binary reads) must keep the contract the one-row statements kept: a row held
already stays as it is, rows come back typed and in (seq, hash) order, only the keys
named are dropped, and a rolled-back transaction leaves nothing, after which holding
works again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.storage import HeldEntry, LedgerStorage, PendingRow

DID, OTHER = "ab" * 16, "cd" * 16


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL drops held entries a batch of keys at a time: batches of 2 here, so
    the drops below cross batches."""
    try:
        from hashtrail.ledger import storage_pg
    except ImportError:
        return
    monkeypatch.setattr(storage_pg, "_KEYS", 2)


def _row(did: str, seq: int, tag: int, sig: bytes | None = None,
         t: int | None = 1_700_000_000, kind: int = 2) -> PendingRow:
    return (did, seq, bytes([tag]) * 32, b"body-%d" % tag, sig, bytes([tag + 1]) * 32, kind,
            t)


def test_held_rows_keep_their_contract(ledger_at: Callable[[str], str]) -> None:
    with Ledger.create(ledger_at("l"), "test.example/pending") as led:
        db = led.storage
        with db.transaction():
            db.add_pending([_row(DID, 5, 9), _row(DID, 3, 7, sig=b"s" * 64, t=None),
                            _row(DID, 5, 1), _row(OTHER, 3, 7)])
            # the same key again in the same transaction, with a signature: kept as is
            db.add_pending([_row(DID, 5, 9, sig=b"x" * 64)])
        with db.transaction():
            db.add_pending([_row(DID, 3, 7), _row(DID, 8, 4, kind=5)])
        got = db.pending(DID, 0)
        assert got == [
            HeldEntry(3, b"\x07" * 32, b"body-7", b"s" * 64, b"\x08" * 32, 2, None),
            HeldEntry(5, b"\x01" * 32, b"body-1", None, b"\x02" * 32, 2, 1_700_000_000),
            HeldEntry(5, b"\x09" * 32, b"body-9", None, b"\x0a" * 32, 2, 1_700_000_000),
            HeldEntry(8, b"\x04" * 32, b"body-4", None, b"\x05" * 32, 5, 1_700_000_000),
        ]
        for h in got:
            assert [type(v) for v in h] == [int, bytes, bytes, type(h.sig), bytes, int,
                                            type(h.t)]
        assert [h.seq for h in db.pending(DID, 5)] == [5, 5, 8]
        # (rows, signed rows): what reconcile compares before it walks what it carried
        assert (db.pending_count(DID), db.pending_count(OTHER)) == ((4, 1), (1, 0))
        assert db.pending_count("ef" * 16) == (0, 0)
        # above a seq: what reconcile reports held above a device's tip
        assert (db.pending_count(DID, 3), db.pending_count(DID, 5)) == ((3, 0), (1, 0))
        # without their bodies: how reconcile learns the shape of a long held span
        assert db.pending_links(DID, 4, 9) == [
            (5, b"\x01" * 32, False, b"\x02" * 32, 2), (5, b"\x09" * 32, False, b"\x0a" * 32, 2),
            (8, b"\x04" * 32, False, b"\x05" * 32, 5)]
        assert db.pending_links(DID, 3, 3) == [(3, b"\x07" * 32, True, b"\x08" * 32, 2)]
        # the next held seq: how reconcile steps over a wide hole in a device's rows
        assert [db.next_pending_seq(DID, lo) for lo in (0, 4, 6, 9)] == [3, 5, 8, None]
        assert db.next_pending_seq("ef" * 16, 0) is None
        # of one kind: how reconcile finds the first log-altered report among rows it
        # keeps no shape of (reconcile._Beyond)
        assert [db.next_pending_seq(DID, lo, 5) for lo in (0, 8, 9)] == [8, 8, None]
        assert [db.next_pending_seq(DID, lo, 2) for lo in (0, 4, 6)] == [3, 5, None]
        with db.transaction():
            # only these keys go: (DID, 5, hash 9) stays, OTHER's seq 3 stays, a key
            # that is not held is no error
            db.drop_pending([(DID, 6, b"\x06" * 32), (DID, 5, b"\x01" * 32),
                             (DID, 3, b"\x07" * 32)])
        assert [(h.seq, h.entry_hash[0]) for h in db.pending(DID, 0)] == [(5, 9), (8, 4)]
        assert [h.seq for h in db.pending(OTHER, 0)] == [3]
        assert db.pending_count(DID) == (2, 0)
        with pytest.raises(RuntimeError), db.transaction():
            db.add_pending([_row(DID, 20, 20)])
            db.drop_pending([(DID, 8, b"\x04" * 32)])
            raise RuntimeError("stop before commit")
        assert [(h.seq, h.entry_hash[0]) for h in db.pending(DID, 0)] == [(5, 9), (8, 4)]
        with db.transaction():         # and holding works again after the rollback
            db.add_pending([_row(DID, 21, 21)])
        assert [h.seq for h in db.pending(DID, 0)] == [5, 8, 21]
        # held, accepted and dropped, then others held, in one transaction (a chunk walked
        # batch by batch): what was dropped is not held again
        with db.transaction():
            db.add_pending([_row(DID, 30, 30)])
            db.drop_pending([(DID, 30, b"\x1e" * 32)])
            db.add_pending([_row(DID, 31, 31)])
        assert [h.seq for h in db.pending(DID, 0)] == [5, 8, 21, 31]


def _two_devices(db: LedgerStorage) -> None:
    """Enroll DID and OTHER (a bare key: these tests look at their rows only)."""
    with db.transaction():
        for d in (DID, OTHER):
            db.add_device(d, b"\x04" + bytes(64), "l", "unix", "0.1.0", 1, b"g" * 32)


def test_every_write_to_a_devices_held_rows_raises_its_revision(
        ledger_at: Callable[[str], str]) -> None:
    """storage.pending_rev: reconcile compares it (one row) to see that nobody changed a
    device's held rows since it walked them (reconcile._Carry.holds). Holding, signing
    and dropping raise it, for that device only, also as another connection sees it;
    a rolled-back write leaves it as it was."""
    at = ledger_at("l")
    with Ledger.create(at, "test.example/pending") as led:
        db = led.storage
        _two_devices(db)
        revs = [(db.pending_rev(DID), db.pending_rev(OTHER))]
        with db.transaction():
            db.add_pending([_row(DID, 3, 3), _row(DID, 4, 4)])
        revs.append((db.pending_rev(DID), db.pending_rev(OTHER)))
        with db.transaction():
            db.sign_pending(DID, 3, b"\x03" * 32, b"s" * 64)
        revs.append((db.pending_rev(DID), db.pending_rev(OTHER)))
        with Ledger.open(at) as other:
            assert other.storage.pending_rev(DID) == revs[-1][0]
        with db.transaction():
            db.drop_pending([(DID, 4, b"\x04" * 32)])
        revs.append((db.pending_rev(DID), db.pending_rev(OTHER)))
        with pytest.raises(RuntimeError), db.transaction():
            db.add_pending([_row(DID, 9, 9)])
            raise RuntimeError("stop before commit")
        revs.append((db.pending_rev(DID), db.pending_rev(OTHER)))
        assert [r[1] for r in revs] == [0] * 5
        assert [r[0] for r in revs[:4]] == sorted(set(r[0] for r in revs[:4]))  # rising
        assert revs[4] == revs[3]
        assert db.pending_rev("ef" * 16) == 0


def test_a_devices_held_shape_is_kept_without_raising_its_revision(
        ledger_at: Callable[[str], str]) -> None:
    """storage.held_shape: what reconcile learnt of the shape of a device's held rows
    (reconcile._held_carry), kept per device, seen by another connection once
    committed, gone with a rolled-back write, and not a write to the rows: the
    revision it names stays the rows' (pending_rev unchanged)."""
    at = ledger_at("l")
    with Ledger.create(at, "test.example/pending") as led:
        db = led.storage
        _two_devices(db)
        with db.transaction():
            db.add_pending([_row(DID, 3, 3)])
        rev = db.pending_rev(DID)
        assert (db.held_shape(DID), db.held_shape("ef" * 16)) == (None, None)
        with db.transaction():
            db.set_held_shape(DID, '{"rev": 1}')
        assert (db.held_shape(DID), db.held_shape(OTHER)) == ('{"rev": 1}', None)
        assert db.pending_rev(DID) == rev
        with Ledger.open(at) as other:
            assert other.storage.held_shape(DID) == '{"rev": 1}'
        with pytest.raises(RuntimeError), db.transaction():
            db.set_held_shape(DID, '{"rev": 2}')
            raise RuntimeError("stop before commit")
        assert db.held_shape(DID) == '{"rev": 1}'
