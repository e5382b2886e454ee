"""A newcomer's path (issue 15): exit status and words that mean what happened, hints
that point the right way, discoverable witness commands, documented options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.ledger_db import Ledger
from hashtrail.reconcile import reconcile
from ledgerkit import Device, bundle, trust


def _dev(n: int, secret: int = 1001, sig: bool = False) -> Device:
    d = Device(secret, per_entry_sig=sig)
    d.readings(n)
    return d


def _ledger(tmp: Path) -> Ledger:
    return trust(Ledger.create(tmp / "l.db", "test.example/ledger"))


# -- item 1: 0 clean, 1 integrity problems, 2 usage; expected anomalies are not problems --

def test_held_entries_are_an_expected_anomaly_not_a_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Entries held back (they do not connect yet, as after a caught tampering) are
    described as an expected anomaly: exit 0, no "PROBLEMS FOUND", no "gap" wording."""
    d = _dev(30, sig=True)
    with _ledger(tmp_path) as led:
        r = reconcile(led, bundle([d], {d.id_hex: (0, 10)}))
        assert r.accepted == 10
        r = reconcile(led, bundle([d], {d.id_hex: (20, 31)}, name="c2"))
        assert r.pending == 11
    db = str(tmp_path / "l.db")
    assert main(["verify", "--ledger", db]) == 0
    out = capsys.readouterr().out
    assert "PROBLEMS" not in out and "!" not in out and "gap" not in out
    assert "expected anomaly: 11 later entries held back" in out
    assert out.rstrip().endswith("verify: OK (1 expected anomaly noted above: no integrity "
                                 "problem)")
    assert main(["verify", "--ledger", db, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    dev = rep["devices"][0]
    assert rep["ok"] and dev["ok"] and not dev["alarm"] and dev["pending"] == 11


def test_a_checkpoints_only_device_verifies_clean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Entries unprotected until checkpoint N are described, and are no problem."""
    d = _dev(10)
    with _ledger(tmp_path) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint(seq=4)), (d, d.checkpoint())]))
    assert main(["verify", "--ledger", str(tmp_path / "l.db")]) == 0
    out = capsys.readouterr().out
    assert "unprotected until checkpoints 4, 10" in out
    assert out.rstrip().endswith("verify: OK") and "!" not in out


def test_a_fork_is_an_integrity_problem(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = _dev(10)
    clone = d.fork(6)
    clone.readings(4)
    with _ledger(tmp_path) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        reconcile(led, bundle([clone], cps=[(clone, clone.checkpoint())], name="c2"))
    assert main(["verify", "--ledger", str(tmp_path / "l.db")]) == 1
    out = capsys.readouterr().out
    assert "verify: PROBLEMS FOUND" in out and "    ! fork at seq 6" in out


def test_verify_log_bad_flag_value_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "0000000000.seg").write_bytes(b"")
    assert main(["verify-log", "--pubkey", "zz", str(tmp_path)]) == 2
    assert main(["verify-log", "--pubkey", _dev(1).pub.hex(), "--anchor", "x",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("hashtrail: error:")
