"""`hashtrail verify --verifier-key`: a replica is checked against the key you trust.

Why: without a key, verify checks checkpoints against the key the ledger file carries,
so a replica someone rebuilt and re-signed with a key of their own verifies too. With
the operator's published key, every signed checkpoint must verify under it and match
the log, and a file with none fails closed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust

ORIGIN = "test.example/ledger"
OPERATOR = note.Signer(ORIGIN, bytes(range(1, 33)))       # the key the operator publishes
FORGER = note.Signer(ORIGIN, bytes(range(101, 133)))      # same name, another key


def _ledger(path: Path, signer: note.Signer, entries: int = 12) -> Path:
    d = Device(2024)
    d.readings(entries)
    with trust(Ledger.create(path, ORIGIN, signer=signer)) as led:
        r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        assert r.accepted == len(d.entries) and led.checkpoints()
    return path


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_operator_ledger_verifies_under_its_published_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    led = _ledger(tmp_path / "l.db", OPERATOR)
    key = OPERATOR.verifier().to_string()
    code, out, _ = _verify(capsys, "--ledger", str(led), "--verifier-key", key, "--json")
    rep = json.loads(out)
    assert code == 0 and rep["ok"]
    assert rep["trusted"]["key"] == key and rep["trusted"]["checkpoints"] >= 1
    assert rep["trusted"]["size"] == rep["size"] > 0
    (tmp_path / "key.txt").write_text(key + "\n")
    code, out, _ = _verify(capsys, "--ledger", str(led),
                           "--verifier-key-file", str(tmp_path / "key.txt"))
    assert code == 0 and "trusted key test.example/ledger" in out and "verify: OK" in out


def test_replica_signed_with_another_key_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replica = _ledger(tmp_path / "replica.db", FORGER)
    # On its own terms the replica is consistent: plain verify cannot tell.
    assert _verify(capsys, "--ledger", str(replica))[0] == 0
    code, out, err = _verify(capsys, "--ledger", str(replica), "--verifier-key",
                             OPERATOR.verifier().to_string())
    assert code == 1 and "Traceback" not in err
    assert "not signed by the trusted key" in out and "verify: PROBLEMS FOUND" in out
    code, out, _ = _verify(capsys, "--ledger", str(replica), "--json", "--verifier-key",
                           OPERATOR.verifier().to_string())
    rep = json.loads(out)
    assert code == 1 and not rep["ok"] and rep["trusted"]["checkpoints"] == 0


def test_checkpoint_by_the_trusted_key_over_another_root_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    led = _ledger(tmp_path / "l.db", OPERATOR)
    with Ledger.open(led) as lg:
        size = lg.size
    forged = note.sign_checkpoint(note.Checkpoint(ORIGIN, size, bytes(32)), [OPERATOR])
    with sqlite3.connect(led) as db:
        db.execute("UPDATE checkpoints SET note=? WHERE size=?", (forged, size))
    code, out, _ = _verify(capsys, "--ledger", str(led), "--verifier-key",
                           OPERATOR.verifier().to_string())
    assert code == 1 and f"checkpoint at size {size} signed by the trusted key does not " \
        "match the log" in out


def test_ledger_without_checkpoints_fails_closed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    led = _ledger(tmp_path / "l.db", OPERATOR)
    with sqlite3.connect(led) as db:  # a replica handed over without its checkpoints
        db.execute("DELETE FROM checkpoints")
    assert _verify(capsys, "--ledger", str(led))[0] == 0
    code, out, _ = _verify(capsys, "--ledger", str(led), "--verifier-key",
                           OPERATOR.verifier().to_string())
    assert code == 1 and "holds no signed checkpoint" in out


def test_leaves_after_the_last_trusted_checkpoint_are_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    led = _ledger(tmp_path / "l.db", OPERATOR, entries=5)
    first = tmp_path / "first.db"
    shutil.copyfile(led, first)
    d = Device(2024)
    d.readings(9)
    # the same device's chain grows; a newer checkpoint (signed with l.db's key file)
    with Ledger.open_signing(first, tmp_path / "l.db.key") as lg:
        reconcile(lg, bundle([d], cps=[(d, d.checkpoint())]))
        sizes = sorted(int(r[0]) for r in lg.storage.scan_checkpoints())
        total = lg.size
    assert len(sizes) >= 2 and sizes[-1] == total
    with sqlite3.connect(first) as db:  # the operator has not signed the newest size yet
        db.execute("DELETE FROM checkpoints WHERE size=?", (total,))
    code, out, _ = _verify(capsys, "--ledger", str(first), "--verifier-key",
                           OPERATOR.verifier().to_string())
    assert code == 0
    assert f"up to size {sizes[-2]}" in out
    assert f"leaves {sizes[-2]}..{total - 1} are not yet under a checkpoint" in out


@pytest.mark.parametrize("args", [["--verifier-key", "not-a-key"],
                                  ["--verifier-key-file", "/nonexistent/key.txt"]])
def test_bad_trusted_key_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str]) -> None:
    led = _ledger(tmp_path / "l.db", OPERATOR)
    code, _, err = _verify(capsys, "--ledger", str(led), *args)
    assert code != 0 and "verifier key" in err and "Traceback" not in err
