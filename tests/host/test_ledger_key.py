"""The ledger key lives outside the ledger (decision 5, docs/LEDGER.md "The ledger key").

`ledger init` writes the Ed25519 signer to its own file (mode 0600, never overwritten);
the ledger file keeps only the verifier key, so a copy of it cannot sign. Signing
commands (`reconcile`, `ledger checkpoint`) need the key file and refuse a foreign one;
reading commands never open it. A ledger from before keeps its key in `meta.signer`:
the first signing command moves it out and says so; reading never writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from ledgerkit import COLLECTOR, Device, bundle, save

ORIGIN = "test.example/ledger"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _ledger(tmp: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[Path, Path]:
    """`ledger init` + trust the test collector + one reconciled bundle."""
    led = tmp / "l.db"
    code, out, err = _run(capsys, "ledger", "init", "--ledger", str(led), "--origin", ORIGIN,
                          "--json", *extra)
    assert code == 0, err
    key = Path(json.loads(out)["key_file"])
    assert main(["ledger", "trust", "--ledger", str(led),
                 COLLECTOR.verifier().to_string()]) == 0
    assert main(["reconcile", "--ledger", str(led), str(_bundle(tmp, 6)), *extra]) == 0
    return led, key


def _bundle(tmp: Path, n: int) -> Path:
    d = Device(4242)
    d.readings(n)
    return save(bundle([d], cps=[(d, d.checkpoint())]), tmp / f"b{n}.jsonl")


def _bytes(path: Path) -> bytes:
    """The ledger file as a reader sees it (main file + WAL, if any)."""
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _seed_text(key: Path) -> str:
    return key.read_text().strip().split("+", 4)[4]


def test_init_writes_a_private_key_file_and_keeps_only_the_verifier(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    led, key = _ledger(tmp_path, capsys)
    assert key == Path(f"{led}.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    signer = note.Signer.from_string(key.read_text())
    with Ledger.open(led) as lg:
        assert lg.verifier.to_string() == signer.verifier().to_string()
        assert {str(k) for k, _ in lg.storage.scan_meta()} == \
            {"schema", "origin", "size", "verifier"}
    assert _seed_text(key).encode() not in _bytes(led)
    # a second init never overwrites a key file, and makes no ledger either
    code, _, err = _run(capsys, "ledger", "init", "--ledger", str(tmp_path / "new.db"),
                        "--origin", ORIGIN, "--key-file", str(key))
    assert code == 2 and "refusing to overwrite the existing key file" in err
    assert not (tmp_path / "new.db").exists()
    assert note.Signer.from_string(key.read_text()).to_string() == signer.to_string()


def test_a_copied_ledger_file_cannot_sign(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    led, _key = _ledger(tmp_path, capsys)
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    copy = elsewhere / "l.db"
    shutil.copyfile(led, copy)
    before = _bytes(copy)
    for argv in (["ledger", "checkpoint", "--ledger", str(copy)],
                 ["reconcile", "--ledger", str(copy), str(_bundle(tmp_path, 9))]):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and out == "", (argv, out, err)
        assert err.count("\n") == 1 and f"no ledger key at {copy}.key" in err, err
        assert "a copy of the ledger file cannot sign" in err
        assert _bytes(copy) == before                    # nothing changed
    with Ledger.open(copy) as lg:
        assert lg.size == 7


def test_reading_commands_never_open_the_key(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    led, key = _ledger(tmp_path, capsys)
    key.write_text("not a key\n")           # any attempt to read it would now fail
    d = Device(4242)
    vkey = json.loads(_run(capsys, "verify", "--ledger", str(led), "--json")[1])
    assert vkey["ok"]
    for argv in (["devices", "list"], ["ledger", "trusted"],
                 ["ledger", "prove", "--device", d.id_hex, "--seq", "3"],
                 ["ledger", "consistency", "--old", "1"]):
        code, _, err = _run(capsys, *argv, "--ledger", str(led))
        assert code == 0, (argv, err)
    code, _, err = _run(capsys, "ledger", "checkpoint", "--ledger", str(led))
    assert code == 2 and f"{key} is not a ledger key file" in err


def test_key_file_option_and_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    led, key = _ledger(tmp_path, capsys, "--key-file", str(keys / "ledger.key"))
    assert key == keys / "ledger.key" and not Path(f"{led}.key").exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _run(capsys, "ledger", "checkpoint", "--ledger", str(led))[0] == 2
    monkeypatch.setenv("HASHTRAIL_LEDGER_KEY", str(key))
    code, out, err = _run(capsys, "ledger", "checkpoint", "--ledger", str(led), "--json")
    assert code == 0 and json.loads(out)["checkpoint"].startswith(ORIGIN + "\n"), err
    assert main(["reconcile", "--ledger", str(led), str(_bundle(tmp_path, 9))]) == 0
    # init under the environment writes where it points, and never over it
    code, _, err = _run(capsys, "ledger", "init", "--ledger", str(tmp_path / "b.db"),
                        "--origin", ORIGIN)
    assert code == 2 and "refusing to overwrite" in err
    monkeypatch.setenv("HASHTRAIL_LEDGER_KEY", str(keys / "b.key"))
    assert main(["ledger", "init", "--ledger", str(tmp_path / "b.db"), "--origin", ORIGIN]) == 0
    assert stat.S_IMODE((keys / "b.key").stat().st_mode) == 0o600
    # --key-file wins over the environment
    assert main(["ledger", "checkpoint", "--ledger", str(led), "--key-file", str(key)]) == 0


def test_a_key_that_is_not_the_ledgers_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    led, _key = _ledger(tmp_path, capsys)
    other = tmp_path / "other.key"
    other.write_text(note.Signer.generate(ORIGIN).to_string() + "\n")  # same name
    before = _bytes(led)
    for argv in (["ledger", "checkpoint", "--ledger", str(led), "--key-file", str(other)],
                 ["reconcile", "--ledger", str(led), str(_bundle(tmp_path, 9)),
                  "--key-file", str(other)]):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and "not its key" in err and err.count("\n") == 1, err
        assert _bytes(led) == before


def _old_style(tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """A ledger as `ledger init` made them before decision 5: the signer in meta."""
    led, key = _ledger(tmp, capsys)
    text = key.read_text().strip()
    with sqlite3.connect(led) as db:
        db.execute("DELETE FROM meta WHERE key='verifier'")
        db.execute("INSERT INTO meta VALUES ('signer', ?)", (text,))
    db.close()
    key.unlink()
    return led, text


def test_an_old_ledger_moves_its_key_out_on_the_first_signing_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    led, text = _old_style(tmp_path, capsys)
    key = Path(f"{led}.key")
    before = _bytes(led)
    d = Device(4242)
    # reading commands work as before and write nothing, key file included
    assert json.loads(_run(capsys, "verify", "--ledger", str(led), "--json")[1])["ok"]
    assert _run(capsys, "ledger", "prove", "--ledger", str(led), "--device", d.id_hex,
                "--seq", "2")[0] == 0
    assert _bytes(led) == before and not key.exists()
    code, _, err = _run(capsys, "ledger", "checkpoint", "--ledger", str(led))
    assert code == 0
    assert err == (f"hashtrail: moved the ledger key out of {led} into {key} (mode 0600): "
                   "keep it private; signing commands now need it\n")
    assert key.read_text().strip() == text and stat.S_IMODE(key.stat().st_mode) == 0o600
    with Ledger.open(led) as lg:
        assert {str(k) for k, _ in lg.storage.scan_meta()} == \
            {"schema", "origin", "size", "verifier"}
    assert text.split("+", 4)[4].encode() not in _bytes(led)   # no copy left on disk
    # from now on it is an ordinary ledger: the key file signs, a copy cannot
    code, _, err = _run(capsys, "reconcile", "--ledger", str(led), str(_bundle(tmp_path, 9)))
    assert code == 0 and "moved" not in err
    os.rename(key, tmp_path / "away.key")
    assert _run(capsys, "ledger", "checkpoint", "--ledger", str(led))[0] == 2


def test_migration_refuses_a_foreign_key_file(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    led, text = _old_style(tmp_path, capsys)
    key = Path(f"{led}.key")
    key.write_text(note.Signer.generate(ORIGIN).to_string() + "\n")
    before = _bytes(led)
    code, _, err = _run(capsys, "ledger", "checkpoint", "--ledger", str(led))
    assert code == 2 and "not its key" in err
    assert _bytes(led) == before
    with Ledger.open(led) as lg:
        assert lg.storage.meta("signer") == text


def test_prove_signs_nothing_and_waits_for_a_signed_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    led, _key = _ledger(tmp_path, capsys)
    with sqlite3.connect(led) as db:     # as after a reconcile killed before it signed
        db.execute("DELETE FROM checkpoints WHERE size=7")
    db.close()
    d = Device(4242)
    before = _bytes(led)
    code, _, err = _run(capsys, "ledger", "prove", "--ledger", str(led), "--device",
                        d.id_hex, "--seq", "3")
    assert code == 1 and "is leaf 3, not covered by the checkpoint of tree size 0" \
        in err
    assert _bytes(led) == before
    assert main(["ledger", "checkpoint", "--ledger", str(led)]) == 0
    code, out, _ = _run(capsys, "ledger", "prove", "--ledger", str(led), "--device",
                        d.id_hex, "--seq", "3", "--json")
    assert code == 0 and json.loads(out)["tree_size"] == 7
