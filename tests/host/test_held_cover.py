"""Entries accepted under a device checkpoint that lies past a range the device itself
disowned (its log-altered report): the links from them to the checkpoint pass through
held entries only, and a proof, `verify` and a fork's evidence still reach it.

The case: a collector brings entries 0..11 with no checkpoint; another brings the
device's report that 8..11 are altered on its flash, more entries and a checkpoint over
the last. reconcile accepts 0..7 under that checkpoint (the links commit to them), and
never 8..11, so nothing after them either. Before hashtrail.ledger.held_cover, `verify`
said "accepted entries 0..7 are not signed by the device", no proof of them could be
built, and a fork of the device below 8 made reconcile fail with "no signed statement
covers accepted seq" (found by a random-shape run of the spill tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from hashtrail.ledger.proof import build_inclusion_proof, check_inclusion_proof
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust

At = Callable[[str], str]       # the ledger_at fixture (conftest): a ledger's place


def _altered() -> Device:
    """Entries 0..11, entry 12 disowning 8..11, then 13..20 (checkpoint: over 20)."""
    d = Device(6262, policy=0)
    d.readings(11)
    d.log_altered(8, "entry 8 does not match its signature")
    d.readings(8)
    return d


def _entry_signed(d: Device, seq: int) -> Device:
    """d with entry `seq` carrying its own signature (a device that signs some)."""
    t = Device(d.secret, policy=d.policy)
    t.entries = [(q, b, d.sign(hashlib.sha256(b).digest()) if q == seq else s)
                 for q, b, s in d.entries]
    return t


def _held_past_report(at: At, tmp: Path, d: Device, by: str = "checkpoint") -> Ledger:
    """`d`'s entries 0..11 from one collector, then 12..20 and the device's signature
    over 20 (`by`: a checkpoint, or entry 20's own signature) from another."""
    led = trust(Ledger.create(at("l"), "test.example/ledger", key_file=tmp / "l.key"))
    assert reconcile(led, bundle([d], {d.id_hex: (0, 12)})).accepted == 0
    if by == "checkpoint":
        later = bundle([d], {d.id_hex: (12, 21)}, [(d, d.checkpoint())], name="c2")
    else:
        s = _entry_signed(d, 20)
        later = bundle([s], {s.id_hex: (12, 21)}, name="c2")
    r = reconcile(led, later)
    assert (r.accepted, led.size) == (8, 8)
    return led


@pytest.mark.parametrize("by", ["checkpoint", "signed entry"])
def test_entries_accepted_past_a_disowned_range_verify(by: str, ledger_at: At,
                                                       tmp_path: Path) -> None:
    with _held_past_report(ledger_at, tmp_path, _altered(), by) as led:
        rep = verify_ledger(led)
        assert rep.ok, rep.problems
        (dr,) = rep.devices
        assert dr.problems == [] and dr.status == f"unprotected until {by} 20"


def test_entries_accepted_past_a_disowned_range_have_proofs(ledger_at: At,
                                                           tmp_path: Path) -> None:
    """The proof's device signature is the checkpoint over entry 20, with the links
    from the entry up to it: accepted entries, the disowned ones and the report. (A
    proof's device signature is its own entry's, or a checkpoint: entries a later
    signed entry covers have none, past a disowned range or not.)"""
    d = _altered()
    with _held_past_report(ledger_at, tmp_path, d) as led:
        for seq in (0, 5, 7):
            doc = build_inclusion_proof(led, d.id_hex, seq)
            assert len(doc["device_signature"]["chain"]) == 20 - seq
            pc = check_inclusion_proof(doc, led.verifier, device_id=d.id_hex)
            assert (pc.seq, pc.device_checkpoint_seq) == (seq, 20)


@pytest.mark.parametrize("by", ["checkpoint", "signed entry"])
def test_a_fork_below_a_disowned_range_is_evidence(by: str, ledger_at: At,
                                                   tmp_path: Path) -> None:
    """The device also signed another entry for seq 3 (its checkpoint over a second
    branch): fork evidence, whose accepted branch reaches the device's signature over
    20 through the held entries; the ledger verifies."""
    d = _altered()
    clone = d.fork(3)
    clone.readings(2)
    with _held_past_report(ledger_at, tmp_path, d, by) as led:
        r = reconcile(led, bundle([clone], {clone.id_hex: (3, 5)},
                                  [(clone, clone.checkpoint())], name="c3"))
        assert r.forks == 1
        assert verify_ledger(led).problems == []       # (an alarm: the fork)
