"""Reconcile holds each device to the signing policy of its entry 0, and to its own
log-altered reports (docs/FORMATS.md; HELPERS decisions 2 and 3). On both backends
(SQLite, PostgreSQL: the conftest `ledger_at` fixture).

The attacks: a keyless attacker with the flash of a device that signs every entry
strips signatures, or edits an entry and recomputes the later links (the signatures
from there on no longer verify, so they go too), and the device then signs a fresh
checkpoint over the rewritten head. Under policy 1 none of that is accepted; under
policy 0 entries wait for a checkpoint, as before. A log-altered entry's range is never
accepted, even with later checkpoints or valid per-entry signatures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cbor2
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import Finding, Result, reconcile
from ledgerkit import Device, bundle, trust

At = Callable[[str], str]       # the ledger_at fixture (conftest): a ledger's place


def _ledger(at: At, tmp: Path, name: str = "l") -> Ledger:
    """A new ledger `name` on the test's backend (conftest `ledger_at`)."""
    return trust(Ledger.create(at(name), "test.example/ledger", key_file=tmp / f"{name}.key"))


def _signed(n: int, secret: int = 4242) -> Device:
    d = Device(secret, per_entry_sig=True)                 # entry 0: {1: pub, 2: 1}
    d.readings(n)
    return d


def _unsigned(d: Device, seqs: set[int]) -> Device:
    """A copy of d whose entries in `seqs` lost their signatures (bytes unchanged)."""
    t = Device(d.secret, True, policy=d.policy)
    t.entries = [(s, b, None if s in seqs else g) for s, b, g in d.entries]
    return t


def _why(r: Result) -> list[tuple[int | None, str]]:
    return [(f.seq, f.reason.split(":")[0]) for f in r.findings]


def test_policy_1_stripped_signature_is_refused_despite_later_signatures(
        ledger_at: At, tmp_path: Path) -> None:
    d = _signed(20)
    assert cbor2.loads(d.entries[0][1])[8] == {1: d.pub, 2: 1}   # entry 0's policy
    evil = _unsigned(d, {7})
    with _ledger(ledger_at, tmp_path) as led:
        r = reconcile(led, bundle([evil], cps=[(evil, evil.checkpoint())]))
        assert r.accepted == 7 and led.size == 7            # 0..6; 8..20 are signed
        assert _why(r) == [(7, "entry unsigned")]
        assert "this device signs every entry" in r.findings[0].reason
        assert r.findings[0].device_id == d.id_hex
        again = reconcile(led, bundle([evil], cps=[(evil, evil.checkpoint())]))
        assert (again.accepted, led.size) == (0, 7)         # a rerun changes nothing
        # the signed copy of the same bytes, from another collector, lets it all in
        r = reconcile(led, bundle([d], {d.id_hex: (7, 8)}, name="c2"))
        assert (r.accepted, led.size, r.findings) == (14, 21, [])


def test_policy_1_edit_with_links_recomputed_is_refused(
        ledger_at: At, tmp_path: Path) -> None:
    d = _signed(20)
    evil = Device(d.secret, True)
    evil.entries = list(d.entries[:9])
    evil.head = hashlib.sha256(d.entries[8][1]).digest()
    evil.per_entry_sig = False                # no key: the attacker cannot sign
    evil.entry(0, [{0: "temp", 1: "Cel", 2: 99.5}])          # seq 9, edited
    for _, body, _ in d.entries[10:]:                        # later links recomputed
        m = cbor2.loads(body)
        evil.entry(m[7], m[8], t=m[2])
    cp = evil.checkpoint()                     # a device that signs whatever head it has
    with _ledger(ledger_at, tmp_path) as led:
        r = reconcile(led, bundle([evil], cps=[(evil, cp)]))
        assert (r.accepted, led.size) == (9, 9)
        assert _why(r) == [(9, "entry unsigned")]
        r = reconcile(led, bundle([d], name="c2"))           # the honest copy
        assert led.size == 21
        assert r.forks == 1                  # the key signed two heads for seq 20: kept


def test_policy_1_unsigned_tail_waits_for_its_signatures(
        ledger_at: At, tmp_path: Path) -> None:
    d = _signed(20)
    evil = _unsigned(d, {18, 19, 20})
    with _ledger(ledger_at, tmp_path) as led:
        r = reconcile(led, bundle([evil], cps=[(evil, evil.checkpoint())]))
        assert (r.accepted, r.pending) == (18, 3)
        assert _why(r) == [(18, "entry unsigned")]
        assert reconcile(led, bundle([d], name="c2")).accepted == 3


def test_policy_0_accepts_up_to_a_checkpoint_policy_1_only_signed(
        ledger_at: At, tmp_path: Path) -> None:
    """Policy 0, declared in entry 0 ({2: 0}) or by an old entry 0 without key 2: what a
    checkpoint covers. The same unsigned entries from a policy-1 device: refused."""
    for policy in (0, None):
        d = Device(5151, policy=policy)
        d.readings(20)
        with _ledger(ledger_at, tmp_path, f"p{policy}") as led:
            assert reconcile(led, bundle([d])).accepted == 0
            r = reconcile(led, bundle([d], cps=[(d, d.checkpoint(seq=12))]))
            assert (r.accepted, r.pending, r.findings) == (13, 8, [])
            assert reconcile(led, bundle([d], cps=[(d, d.checkpoint())])).accepted == 8
    # policy 0 with some entries signed: each signature covers the chain up to it
    d = Device(5152, per_entry_sig=False, policy=0)
    d.readings(5)
    d.per_entry_sig = True
    d.readings(1)
    d.per_entry_sig = False
    d.readings(3)
    with _ledger(ledger_at, tmp_path, "mixed") as led:
        assert reconcile(led, bundle([d])).accepted == 7
    evil = _unsigned(_signed(20, secret=5153), set(range(13, 21)))
    with _ledger(ledger_at, tmp_path, "p1") as led:
        r = reconcile(led, bundle([evil], cps=[(evil, evil.checkpoint())]))
        assert (r.accepted, _why(r)) == (13, [(13, "entry unsigned")])


def _altered(policy: int) -> Device:
    """Entries 0..11, then entry 12: the device disowns 8..11; then 13..20 and a
    checkpoint over 20 (and, policy 1, every entry's own signature)."""
    d = Device(6161, per_entry_sig=policy == 1, policy=policy)
    d.readings(11)
    d.log_altered(8, "entry 8 does not match its signature")
    d.readings(8)
    assert len(d.entries) == 21
    return d


def test_log_altered_range_is_never_accepted(
        ledger_at: At, tmp_path: Path) -> None:
    for policy in (0, 1):
        d = _altered(policy)
        with _ledger(ledger_at, tmp_path, f"p{policy}") as led:
            r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
            # below 8 the later checkpoint (or each entry's signature) still covers
            assert (r.accepted, led.size) == (8, 8), policy
            (f,) = r.findings
            assert f == Finding(d.id_hex, 8, "log altered: the device reports entries "
                                "8..11 altered on its flash (log-altered entry 12): entry 8"
                                " does not match its signature; never accepted")
            for _ in range(2):                              # reruns, more checkpoints
                d.readings(2)
                r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
                assert (r.accepted, led.size) == (0, 8)
                assert [x.seq for x in r.findings] == [8]


def test_log_altered_after_acceptance_keeps_what_was_accepted(
        ledger_at: At, tmp_path: Path) -> None:
    """Entries 0..11 accepted under a checkpoint; the device's later report about 8..11
    loses nothing, is named, and the chain goes on after it."""
    d = Device(7171, policy=0)
    d.readings(11)
    with _ledger(ledger_at, tmp_path) as led:
        assert reconcile(led, bundle([d], cps=[(d, d.checkpoint())])).accepted == 12
        d.log_altered(8)
        d.readings(3)
        r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        assert (r.accepted, led.size) == (4, 16)
        assert [(f.seq, f.reason.endswith("accepted before this report, under the "
                                          "device's signatures")) for f in r.findings] \
            == [(8, True)]
        assert reconcile(led, bundle([d], cps=[(d, d.checkpoint())])).findings == []


def test_log_altered_holds_a_range_arriving_before_its_checkpoint(
        ledger_at: At, tmp_path: Path) -> None:
    """Collector A brings 0..11 with no checkpoint; collector B brings the report and a
    later checkpoint: still nothing from 8 on."""
    d = _altered(0)
    with _ledger(ledger_at, tmp_path) as led:
        assert reconcile(led, bundle([d], {d.id_hex: (0, 12)})).accepted == 0
        r = reconcile(led, bundle([d], {d.id_hex: (12, 21)}, [(d, d.checkpoint())],
                                  name="c2"))
        assert (r.accepted, led.size) == (8, 8)


def test_a_made_up_log_altered_report_holds_nothing(
        ledger_at: At, tmp_path: Path) -> None:
    """Anyone's bundle fills gaps, so a log-altered entry no device signature covers
    (here: made up for seq 12 of a policy-0 device) must not hold the device's real
    entries out of the ledger: it waits, and the real chain is accepted past it."""
    d = Device(8181, policy=0)
    d.readings(20)
    fake = Device(d.secret, policy=0)
    fake.entries = list(d.entries[:12])
    fake.head = hashlib.sha256(d.entries[11][1]).digest()
    fake.log_altered(3, "made up")
    with _ledger(ledger_at, tmp_path) as led:
        r = reconcile(led, bundle([fake], {fake.id_hex: (12, 13)}))
        assert (r.accepted, r.pending) == (0, 1)
        r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())], name="c2"))
        assert (r.accepted, led.size) == (21, 21)
        assert [f.seq for f in r.findings] == [12]      # the held copy, named
    # the same entry signed by the device (policy 1) is the device's word: it counts
    s = Device(8282, per_entry_sig=True)
    s.readings(11)
    s.log_altered(3, "checked at boot")
    with _ledger(ledger_at, tmp_path, "signed") as led:
        r = reconcile(led, bundle([s]))
        assert (r.accepted, [f.seq for f in r.findings]) == (3, [3])
