"""Other copies of accepted entries (a fork's, or made up: anyone can write an unsigned
entry) are rows of `pending` that no walk takes: reconcile looks at them when they
come and when its tip passes them, and follows a fork's branch through `pending` when
a later bundle brings the device signature that makes it evidence
(reconcile._without_low, _forks). On both backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hashtrail.chain.evidence import check_evidence
from hashtrail.collector.bundle import Bundle
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust
from test_reconcile_spill import _signed_at

At = Callable[[str], str]
K = 6                          # where the clone leaves the real chain


def _real_and_clone() -> tuple[Device, Device]:
    real = Device(1201, policy=0)
    real.readings(12)
    clone = real.fork(K)
    clone.readings(5)
    return real, clone


def _pieces(real: Device, clone: Device, order: str) -> list[Bundle]:
    """The real chain accepted, then the clone's branch K..K+3 in pieces: one of them
    signed by the device (the clone has its key), arriving last or in between."""
    signed = _signed_at(clone, K + 3)
    first = bundle([real], cps=[(real, real.checkpoint())], name="c0")
    if order == "the signed entry last":
        return [first, bundle([clone], ranges={clone.id_hex: (K, K + 3)}, name="c1"),
                bundle([signed], ranges={clone.id_hex: (K + 3, K + 4)}, name="c2")]
    if order == "the link between last":
        return [first, bundle([clone], ranges={clone.id_hex: (K, K + 2)}, name="c1"),
                bundle([signed], ranges={clone.id_hex: (K + 3, K + 4)}, name="c2"),
                bundle([clone], ranges={clone.id_hex: (K + 2, K + 3)}, name="c3")]
    assert order == "the divergence point last"
    return [first, bundle([signed], ranges={clone.id_hex: (K + 1, K + 4)}, name="c1"),
            bundle([clone], ranges={clone.id_hex: (K, K + 1)}, name="c2")]


@pytest.mark.parametrize("order", ["the signed entry last", "the link between last",
                                   "the divergence point last"])
def test_a_fork_signed_later_is_evidence(order: str, ledger_at: At) -> None:
    """A clone's unsigned entries held as other copies of accepted ones, then the piece
    that completes a branch from the divergence point to the device's signature: the
    fork's evidence is kept (the branch read back through `pending`), and it checks."""
    real, clone = _real_and_clone()
    bundles = _pieces(real, clone, order)
    with trust(Ledger.create(ledger_at("l"), "t/low")) as led:
        results = [reconcile(led, b, workers=1) for b in bundles]
        assert [r.forks for r in results] == [0] * (len(bundles) - 1) + [1]
        assert results[0].accepted == len(real.entries)
        evidence = list(led.storage.scan_evidence())
        assert len(evidence) == 1
        verdict = check_evidence(evidence[0][3])
        assert (verdict.device_id, verdict.seq) == (real.id_hex, K)
        dev = led.device(real.id_hex)
        assert dev is not None and dev.forked


def test_a_copy_of_an_accepted_entry_is_said_once_and_kept(ledger_at: At) -> None:
    """An unsigned conflicting copy is a finding when it comes, and stays a row of
    `pending` (with the signature a later copy of it carries), not a held entry: the
    device holds nothing above its tip."""
    real, clone = _real_and_clone()
    with trust(Ledger.create(ledger_at("l"), "t/low")) as led:
        reconcile(led, bundle([real], cps=[(real, real.checkpoint())]), workers=1)
        r = reconcile(led, bundle([clone], ranges={clone.id_hex: (K, K + 1)}, name="c1"),
                      workers=1)
        assert [(f.seq, f.reason) for f in r.findings] == [
            (K, "entry conflicts with the accepted one but no device signature covers "
                "it; held")]
        assert r.pending == 0
        rows = [(row[1], row[4] is not None) for row in led.storage.scan_pending()]
        assert rows == [(K, False)]
        signed = _signed_at(clone, K)
        r = reconcile(led, bundle([signed], ranges={clone.id_hex: (K, K + 1)}, name="c2"),
                      workers=1)
        assert r.forks == 1
        rows = [(row[1], row[4] is not None) for row in led.storage.scan_pending()]
        assert rows == [(K, True)]


@pytest.mark.parametrize("middle", [False, True])
def test_a_signed_entry_above_the_tip_on_a_held_branch_is_evidence(
        middle: bool, ledger_at: At) -> None:
    """The real chain accepted to seq K; the clone's entry K held (another copy of an
    accepted entry, a row only); then the clone's entry K + 1 with the device's own
    signature, above the tip (or K + 2 signed, and K + 1 last): the branch from K to
    the signature is the fork's evidence as soon as it is whole, though the tip never
    passes it."""
    real, clone = _real_and_clone()
    first = bundle([real], ranges={real.id_hex: (0, K + 1)},
                   cps=[(real, real.checkpoint(seq=K))], name="c0")
    held = bundle([clone], ranges={clone.id_hex: (K, K + 1)}, name="c1")
    if middle:
        later = [bundle([_signed_at(clone, K + 2)], ranges={clone.id_hex: (K + 2, K + 3)},
                        name="c2"),
                 bundle([clone], ranges={clone.id_hex: (K + 1, K + 2)}, name="c3")]
    else:
        later = [bundle([_signed_at(clone, K + 1)], ranges={clone.id_hex: (K + 1, K + 2)},
                        name="c2")]
    with trust(Ledger.create(ledger_at("l"), "t/low")) as led:
        results = [reconcile(led, b, workers=1) for b in [first, held, *later]]
        assert [r.forks for r in results] == [0] * (len(results) - 1) + [1]
        (row,) = list(led.storage.scan_evidence())
        assert check_evidence(row[3]).seq == K
