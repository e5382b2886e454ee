"""A hostile device at the ledger (issue 19): one bad enrollment in a bundle never blocks
the others, and its text reaches the terminal escaped.

A collector that enrolled a device whose "public key" is not a P-256 point (an older
collector, or a hand-made bundle) exports it with the honest devices; the ledger refuses
that device with its reason and reconciles the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from hashtrail.collector.store import Enrollment, RawEntry, device_id_of
from hashtrail.formats.keys import P
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust

BAD = {"off-curve": b"\x04" + (1).to_bytes(32, "big") + (2).to_bytes(32, "big"),
       "x-not-below-p": b"\x04" + P.to_bytes(32, "big") + (2).to_bytes(32, "big"),
       "infinity-as-zeros": b"\x04" + bytes(64)}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_enrollment_is_refused_and_the_others_reconcile(tmp_path: Path,
                                                            case: str) -> None:
    good = Device(0x1234567)
    good.readings(5)
    good_cp = good.checkpoint()
    bad = BAD[case]
    bad_id = device_id_of(bad)
    b = bundle([good], cps=[(good, good_cp)], enroll=False)
    b.enrollments += [Enrollment(bad_id, bad, "evil", "unix", "0.1.0", 1),
                      Enrollment(good.id_hex, good.pub, "lbl", "unix", "0.1.0", 1)]
    b.entries.append((bad_id, RawEntry(0, good.entries[0][1], None)))
    with trust(Ledger.create(tmp_path / "l.db", "test.example/ledger")) as led:
        res = reconcile(led, b)
        assert res.enrolled == 1 and res.accepted == len(good.entries), res
        reasons = [f.reason for f in res.findings if f.device_id == bad_id]
        assert reasons and "enrollment refused" in reasons[0], res.findings
        assert "public key" in reasons[0]
        assert led.device(bad_id) is None


def test_a_bad_key_already_in_the_ledger_blocks_only_its_device(tmp_path: Path) -> None:
    """A device row written before keys were checked as points (or by hand): its entries
    are refused with the reason, the other devices reconcile."""
    good = Device(0x7654321)
    good.readings(3)
    bad = BAD["off-curve"]
    bad_id = device_id_of(bad)
    b = bundle([good], cps=[(good, good.checkpoint())])
    b.entries.append((bad_id, RawEntry(0, good.entries[0][1], None)))
    with trust(Ledger.create(tmp_path / "l.db", "test.example/ledger")) as led:
        with led.transaction():
            led.storage.add_device(bad_id, bad, "old", "unix", "0.1.0", 1, bytes(32))
        res = reconcile(led, b)
        assert res.accepted == len(good.entries), res
        reasons = [f.reason for f in res.findings if f.device_id == bad_id]
        assert reasons and "enrolled key refused" in reasons[0], res.findings


def test_reconcile_escapes_the_device_reason_it_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A device's log-altered entry carries its own reason text; `reconcile` prints the
    finding with control characters escaped, `--json` keeps the exact text."""
    import json
    import re

    from hashtrail.cli import main
    from hashtrail.collector.store import Store

    reason = "\x1b]0;owned\x07\x1b[2J\x1b[1;1Hroot# "
    d = Device(0x2468ACE, per_entry_sig=True)
    d.readings(4)
    d.log_altered(2, reason)
    store, led = tmp_path / "c.db", tmp_path / "l.db"
    with Store.open(store) as st:
        st.enroll(d.id_hex, d.pub, label="x")
        st.quarantine(d.id_hex, [RawEntry(s, b, g) for s, b, g in d.entries])
        key = st.signer.verifier().to_string()
    assert main(["export", "--store", str(store), "--out", str(tmp_path / "b.jsonl")]) == 0
    assert main(["ledger", "init", "--ledger", str(led), "--origin", "t/l"]) == 0
    assert main(["ledger", "trust", "--ledger", str(led), key, "--name", "a"]) == 0
    capsys.readouterr()
    assert main(["reconcile", "--ledger", str(led), str(tmp_path / "b.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "\\x1b[2J" in out and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out), out
    # (a second ledger: the first one has reconciled this bundle and would skip it)
    led2 = tmp_path / "l2.db"
    assert main(["ledger", "init", "--ledger", str(led2), "--origin", "t/l"]) == 0
    assert main(["ledger", "trust", "--ledger", str(led2), key, "--name", "a"]) == 0
    capsys.readouterr()
    assert main(["reconcile", "--ledger", str(led2), str(tmp_path / "b.jsonl"),
                 "--json"]) in (0, 1)
    found = json.loads(capsys.readouterr().out)["bundles"][0]["findings"]
    assert any(reason in f["reason"] for f in found), found
