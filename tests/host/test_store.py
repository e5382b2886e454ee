"""The collector store: quarantine first, accept only a verified, complete range, idempotent."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hashtrail.collector import store as store_mod
from hashtrail.collector.store import RawEntry, Store, device_id_of
from hashtrail.errors import FormatError, HashtrailError, VerificationError

# A P-256 point (the curve's generator): enroll refuses keys that are not points.
PUB = bytes.fromhex("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
                    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
DEV = device_id_of(PUB)
OFF_CURVE = b"\x04" + bytes(range(64))


def _chain(n: int) -> list[RawEntry]:
    # Store-level tests only need distinct bodies; chain links are chainverify's job.
    return [RawEntry(i, b"entry-%d" % i) for i in range(n)]


def test_quarantine_then_accept(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(DEV, PUB, label="fridge", board="esp32", fw="0.1.0")
        recs = _chain(5)
        assert st.quarantine(DEV, recs) == 5
        assert st.quarantine(DEV, recs) == 0          # idempotent
        assert st.anchor(DEV) is None
        assert st.accepted_records(DEV) == []
        assert st.accept(DEV, 2, recs[2].entry_hash) == 3
        assert st.anchor(DEV) == (2, recs[2].entry_hash)
        assert [r.seq for r in st.accepted_records(DEV)] == [0, 1, 2]
        assert [r.seq for r in st.quarantined(DEV)] == [3, 4]
        assert st.accept(DEV, 2, recs[2].entry_hash) == 0   # rerun after a crash: no-op
    with Store.open(tmp_path / "c.db", create=False) as st:   # survives reopening
        assert st.anchor(DEV) == (2, recs[2].entry_hash)


def test_accept_refuses_unverifiable_ranges(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(DEV, PUB)
        recs = _chain(4)
        st.quarantine(DEV, [recs[0], recs[1], recs[3]])
        with pytest.raises(VerificationError):            # hole at seq 2
            st.accept(DEV, 3, recs[3].entry_hash)
        with pytest.raises(VerificationError):            # head does not match
            st.accept(DEV, 1, recs[0].entry_hash)
        st.quarantine(DEV, [RawEntry(1, b"other")])       # two entries for seq 1
        with pytest.raises(VerificationError):
            st.accept(DEV, 1, recs[1].entry_hash)
        assert st.accepted_records(DEV) == []


def test_accept_reads_the_range_a_batch_at_a_time_in_one_transaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """accept marks ACCEPT_BATCH seqs at a time (its memory does not grow with the range),
    still all or nothing: a hole in a later batch leaves the earlier ones unaccepted."""
    monkeypatch.setattr(store_mod, "ACCEPT_BATCH", 3)
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(DEV, PUB)
        recs = _chain(11)
        st.quarantine(DEV, [r for r in recs if r.seq != 7])
        with pytest.raises(VerificationError):            # hole at seq 7, third batch
            st.accept(DEV, 10, recs[10].entry_hash)
        assert st.accepted_records(DEV) == [] and st.anchor(DEV) is None
        with pytest.raises(VerificationError):            # a walk that did not take seq 4
            st.accept(DEV, 5, recs[5].entry_hash,
                      walked=lambda s, h: s != 4)
        assert st.accepted_records(DEV) == []
        st.quarantine(DEV, [recs[7], RawEntry(8, b"forged")])
        ok = {(r.seq, r.entry_hash) for r in recs}
        assert st.accept(DEV, 10, recs[10].entry_hash,
                         walked=lambda s, h: (s, h) in ok) == 11
        assert [r.body for r in st.accepted_records(DEV)] == [r.body for r in recs]


def test_enrollment_rules(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as st:
        with pytest.raises(HashtrailError):
            st.quarantine(DEV, _chain(1))                 # not enrolled
        with pytest.raises(VerificationError):
            st.enroll("00" * 16, PUB)                     # id not derived from the key
        with pytest.raises(FormatError, match="not on the P-256 curve"):
            st.enroll(device_id_of(OFF_CURVE), OFF_CURVE)  # 04 || x || y, not a point
        st.enroll(DEV, PUB)
        assert st.enroll(DEV, PUB).pub == PUB             # idempotent
        head = hashlib.sha256(b"x").digest()
        assert st.add_checkpoint(DEV, b"cose", b"n", seq=0, head=head)
        assert not st.add_checkpoint(DEV, b"cose", b"n", seq=0, head=head)
        assert st.last_checkpoint(DEV) is None
        st.accept_checkpoint(DEV, b"cose")
        last = st.last_checkpoint(DEV)
        assert last is not None and last.seq == 0 and last.nonce == b"n"


def _device_entries(name: str) -> tuple[bytes, list[RawEntry]]:
    """(pub, entries) of a firmware-made mutation vector chain."""
    from hashtrail.formats.records import parse_records
    from mutation_vectors import by_name

    v = by_name(name)
    out: list[RawEntry] = []
    for s in v["segments"]:
        recs, _ = parse_records(bytes.fromhex(s["data"]), s["name"])
        out += [RawEntry(r.seq, r.body, r.sig) for r in recs if r.is_entry]
    return bytes.fromhex(v["pub"]), out


@pytest.mark.parametrize("name, policy", [("happy-path", 0), ("happy-path-signed", 1)])
def test_policy_kept_from_accepted_entry_0(tmp_path: Path, name: str, policy: int) -> None:
    pub, recs = _device_entries(name)
    dev = device_id_of(pub)
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(dev, pub)
        st.quarantine(dev, recs)
        assert st.policy(dev) is None                     # quarantined is not accepted
        st.accept(dev, 9, recs[9].entry_hash)
        assert st.policy(dev) == policy
        st.accept(dev, 20, recs[20].entry_hash)           # incremental: unchanged
        assert st.policy(dev) == policy


def test_old_store_derives_policy_from_its_entry_0(tmp_path: Path) -> None:
    """A store made before the policies table existed learns them when opened."""
    import sqlite3

    pub, recs = _device_entries("happy-path-signed")
    dev = device_id_of(pub)
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(dev, pub)
        st.enroll(DEV, PUB)
        st.quarantine(dev, recs)
        st.accept(dev, 5, recs[5].entry_hash)
        st.quarantine(DEV, _chain(1))                     # enrolled, nothing accepted
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("DROP TABLE policies")                     # as an older hashtrail left it:
    db.execute("UPDATE meta SET value='1' WHERE key='schema'")   # schema 1, no id
    db.execute("PRAGMA application_id=0")
    db.commit()
    db.close()
    with Store.open(tmp_path / "c.db", create=False) as st:
        assert st.policy(dev) == 1
        assert st.policy(DEV) is None
