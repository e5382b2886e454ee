"""Ledger-signed revocation statements (hashtrail.ledger.revocation): one strict
encoding, checked with the ledger key and the log's origin, never taken for a
checkpoint; `Ledger.revoke` with the key keeps one per device, on both backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import note
from hashtrail.ledger import revocation as rv
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust

ORIGIN = "test.example/revocations"
DEV = "0123456789abcdef0123456789abcdef"


def test_statement_round_trip_and_every_change_refused() -> None:
    s = note.Signer.generate(ORIGIN)
    r = rv.Revocation(ORIGIN, DEV, 1700000000, 'stolen, "key"\nleaked')
    data = rv.sign_revocation(r, s)
    assert rv.open_revocation(data, s.verifier(), ORIGIN) == r
    with pytest.raises(VerificationError):
        rv.open_revocation(data, note.Signer.generate(ORIGIN).verifier(), ORIGIN)
    with pytest.raises(VerificationError):
        rv.open_revocation(data, s.verifier(), "other.example/log")
    text = rv.format_revocation(r)
    for bad in [text.replace("1700000000", "01700000000"), text.replace(DEV, DEV.upper()),
                text + "x\n", text.replace(rv.HEADER, "hashtrail-revocation/2"),
                text.replace('"stolen', "stolen")]:
        with pytest.raises(FormatError):
            rv.parse_revocation(bad)
    with pytest.raises(HashtrailError):           # not a checkpoint under the same key
        note.open_checkpoint(data, [s.verifier()])
    lst = rv.format_list([data])
    assert rv.open_list(lst, s.verifier(), ORIGIN) == [r]
    with pytest.raises(FormatError):
        rv.open_list(rv.format_list([data, data]), s.verifier(), ORIGIN)


def test_revoke_with_the_key_keeps_a_signed_statement(ledger_at: Callable[[str], str]
                                                      ) -> None:
    d = Device(41)
    d.readings(3)
    with trust(Ledger.create(ledger_at("l"), ORIGIN)) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
    with Ledger.open(ledger_at("l")) as led:       # no key: revoked, nothing signed
        led.revoke(d.id_hex, "lost")
        assert led.revocations() == []
    with Ledger.open_signing(ledger_at("l")) as led:
        dev = led.revoke(d.id_hex, "ignored: already revoked")
        (st,) = led.revocations()
        assert rv.open_revocation(st, led.verifier, ORIGIN) == \
            rv.Revocation(ORIGIN, d.id_hex, dev.revoked_at or 0, "lost")
        led.revoke(d.id_hex, "again")
        assert led.revocations() == [st]
