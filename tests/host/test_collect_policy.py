"""Collect holds a device to the signing policy of its entry 0, also incrementally.

The records are the firmware's own (tools/gen_mutations.py runs the device modules
under the MicroPython unix port); the fresh checkpoint is the device's checkpoint for
seq 39 made for the nonce "host-nonce-39", as a live collection would receive it. The
attack: entries without their signature (stripped, or edited and relinked, which no
keyless attacker can re-sign) under a head the device then signs afresh. Policy 1
refuses them; policy 0 cannot tell (that is what "unprotected until checkpoint" means).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hashtrail.collector import collect_verify
from hashtrail.collector.store import Anchor, RawEntry, Store, device_id_of
from hashtrail.formats.records import MAGIC_ENTRY, Record, format_record, parse_records
from ledgerkit import Device
from mutation_vectors import by_name

NONCE = b"host-nonce-39"


def _records(name: str) -> tuple[bytes, list[Record]]:
    v = by_name(name)
    out: list[Record] = []
    for s in v["segments"]:
        out += parse_records(bytes.fromhex(s["data"]), s["name"])[0]
    return bytes.fromhex(v["pub"]), out


def _fresh(recs: list[Record]) -> bytes:
    return next(r.body for r in recs if not r.is_entry and r.seq == 39)


def _raw(recs: list[Record], lo: int) -> list[bytes]:
    return [format_record(r.magic, r.seq, r.body, r.sig) for r in recs
            if r.is_entry and r.seq >= lo]


def _anchor(recs: list[Record], seq: int) -> Anchor:
    body = next(r.body for r in recs if r.is_entry and r.seq == seq)
    return Anchor(seq, hashlib.sha256(body).digest())


@pytest.mark.parametrize("name, seq", [("unsigned-entry", 12), ("unsigned-tail", 37)])
def test_policy_1_refuses_unsigned_entries_under_a_fresh_checkpoint(name: str,
                                                                    seq: int) -> None:
    for honest in ("happy-path", "happy-path-signed"):              # policy 0 and 1
        pub, recs = _records(honest)
        rep = collect_verify.verify(pub, None, _raw(recs, 0), _fresh(recs), NONCE)
        assert rep.ok and rep.last_seq == 39, rep.findings
    pub, recs = _records(name)
    # first collection: entry 0 is in the pull and says "every entry signed"
    rep = collect_verify.verify(pub, None, _raw(recs, 0), _fresh(recs), NONCE)
    assert not rep.ok and rep.last_seq is None
    assert any(f.startswith(f"seq {seq}: entry_unsigned:") for f in rep.findings), \
        rep.findings
    # incremental collection from an anchor before it: the stored policy holds
    rep = collect_verify.verify(pub, _anchor(recs, 10), _raw(recs, 11), _fresh(recs),
                                NONCE, policy=1)
    assert not rep.ok and f"seq {seq}: entry_unsigned" in rep.findings[0], rep.findings


def test_edit_with_links_recomputed_is_refused_under_policy_1() -> None:
    """sig-stripped-after-edit, and the fresh checkpoint a device that does not check
    its log would sign over the rewritten head for our nonce (made here with the
    vectors' test key, gen_mutations.TEST_D)."""
    import gen_mutations

    pub, recs = _records("sig-stripped-after-edit")
    dev = Device(gen_mutations.TEST_D)
    assert dev.pub == pub
    dev.entries = [(r.seq, r.body, r.sig) for r in recs if r.is_entry]
    fresh = dev.checkpoint(NONCE)
    for anchor, policy in ((None, None), (_anchor(recs, 10), 1)):
        lo = 0 if anchor is None else 11
        rep = collect_verify.verify(pub, anchor, _raw(recs, lo), fresh, NONCE,
                                    policy=policy)
        assert not rep.ok and rep.last_seq is None
        assert rep.findings[0].startswith("seq 12: entry_unsigned:"), rep.findings
    # the same rewrite under policy 0 passes the chain check: only a checkpoint made
    # before the edit could show it (hence "unprotected until checkpoint N")
    rep = collect_verify.verify(pub, _anchor(recs, 10), _raw(recs, 11), fresh, NONCE,
                                policy=0)
    assert rep.ok and rep.last_seq == 39


def test_log_altered_is_refused_whatever_the_policy() -> None:
    for name in ("log-altered", "log-altered-signed"):
        pub, recs = _records(name)
        rep = collect_verify.verify(pub, None, _raw(recs, 0), _fresh(recs), NONCE)
        assert not rep.ok and rep.last_seq is None
        assert any(f.startswith("seq 24: log_altered: the device reports entries 24..26")
                   for f in rep.findings), rep.findings


def test_store_passes_the_policy_to_later_collections(tmp_path: Path) -> None:
    """What collect() does: accept the first pull, then judge the next pull with the
    policy the store kept from entry 0."""
    pub, good = _records("happy-path-signed")
    _, bad = _records("unsigned-tail")
    did = device_id_of(pub)
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(did, pub)
        st.quarantine(did, [RawEntry(r.seq, r.body, r.sig) for r in good
                            if r.is_entry and r.seq <= 19])
        cp19 = next(r.body for r in good if not r.is_entry and r.seq == 19)
        rep = collect_verify.verify(pub, None, _raw(good, 0)[:20], cp19, b"host-nonce-19")
        assert rep.ok and rep.last_seq == 19 and rep.head is not None
        st.accept(did, rep.last_seq, rep.head)
        anchor = st.anchor(did)
        rep = collect_verify.verify(pub, anchor, _raw(bad, 20), _fresh(bad), NONCE,
                                    policy=st.policy(did))
        assert not rep.ok and rep.findings[0].startswith("seq 37: entry_unsigned"), \
            rep.findings


def test_a_downgrade_across_collections_is_refused(tmp_path: Path) -> None:
    """The second collection starts at the anchor; the counter the first one accepted
    comes from the store (Store.firmware), so a lower one after it is a downgrade. The
    same walk without the store's history saw nothing wrong (as collect did before)."""
    m1, m2 = hashlib.sha256(b"m1").digest(), hashlib.sha256(b"m2").digest()
    d = Device(0xD0D0, per_entry_sig=True)
    d.readings(3)
    d.update("0.1.0", "0.2.0", 5, m1)
    d.readings(2)

    def raw(lo: int) -> list[bytes]:
        return [format_record(MAGIC_ENTRY, s, b, g) for s, b, g in d.entries[lo:]]

    rep = collect_verify.verify(d.pub, None, raw(0), d.checkpoint(NONCE), NONCE)
    assert rep.ok and rep.last_seq is not None and rep.head is not None, rep.findings
    n = len(d.entries)
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(d.id_hex, d.pub, label="d")
        st.quarantine(d.id_hex, [RawEntry(s, b, g) for s, b, g in d.entries])
        st.accept(d.id_hex, rep.last_seq, rep.head)
        d.update("0.2.0", "0.1.5", 4, m2)             # a rollback, signed by the device
        d.readings(1)
        anchor, policy = st.anchor(d.id_hex), st.policy(d.id_hex)
        fw, last = st.firmware(d.id_hex)
        assert fw.installed == (5, m1) and last is not None and last.seq == n - 1
        blind = collect_verify.verify(d.pub, anchor, raw(n), d.checkpoint(NONCE), NONCE,
                                      policy=policy)
        assert blind.ok
        rep = collect_verify.verify(d.pub, anchor, raw(n), d.checkpoint(NONCE), NONCE,
                                    policy=policy, fw=fw, fw_last=last)
        assert not rep.ok and any(f.startswith(f"seq {n + 1}: fw_downgrade:")
                                  for f in rep.findings), rep.findings
        # a version change inside the boot the anchor's entry belongs to, likewise
        d2 = Device(0xD0D1, per_entry_sig=True)
        d2.readings(3)
        st.enroll(d2.id_hex, d2.pub, label="d2")
        st.quarantine(d2.id_hex, [RawEntry(s, b, g) for s, b, g in d2.entries])
        r2 = collect_verify.verify(d2.pub, None, [format_record(MAGIC_ENTRY, s, b, g)
                                                  for s, b, g in d2.entries],
                                   d2.checkpoint(NONCE), NONCE)
        assert r2.ok and r2.last_seq is not None and r2.head is not None
        st.accept(d2.id_hex, r2.last_seq, r2.head)
        k = len(d2.entries)
        d2.fw = "6.6.6"
        d2.readings(1)
        fw2, last2 = st.firmware(d2.id_hex)
        rep = collect_verify.verify(d2.pub, st.anchor(d2.id_hex),
                                    [format_record(MAGIC_ENTRY, s, b, g)
                                     for s, b, g in d2.entries[k:]],
                                    d2.checkpoint(NONCE), NONCE, policy=1, fw=fw2,
                                    fw_last=last2)
        assert not rep.ok and any(f.startswith(f"seq {k}: fw_changed:")
                                  for f in rep.findings), rep.findings
