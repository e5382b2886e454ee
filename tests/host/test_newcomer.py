"""A newcomer's path (issue 15): exit status and words that mean what happened, hints
that point the right way, discoverable witness commands, documented options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust


def _dev(n: int, secret: int = 1001, sig: bool = False) -> Device:
    d = Device(secret, per_entry_sig=sig)
    d.readings(n)
    return d


def _ledger(tmp: Path) -> Ledger:
    return trust(Ledger.create(tmp / "l.db", "test.example/ledger"))


def _forked_ledger(tmp: Path) -> Device:
    """A ledger at tmp/l.db holding a device whose clone signed another seq 6..: fork
    evidence kept. Returns the device."""
    d = _dev(10)
    clone = d.fork(6)
    clone.readings(4)
    with _ledger(tmp) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        reconcile(led, bundle([clone], cps=[(clone, clone.checkpoint())], name="c2"))
    return d


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


def test_device_time_going_back_is_an_expected_anomaly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _dev(3, sig=True)
    d.entry(0, [{0: "temp", 1: "Cel", 2: 20.0}], t=d.t - 100)     # a clock set back
    with _ledger(tmp_path) as led:
        assert reconcile(led, bundle([d])).accepted == 5
    assert main(["verify", "--ledger", str(tmp_path / "l.db")]) == 0
    out = capsys.readouterr().out
    assert "expected anomaly: seq 4: device time went backwards" in out
    assert "verify: OK (1 expected anomaly" in out


def test_a_fork_is_an_integrity_problem(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _forked_ledger(tmp_path)
    assert main(["verify", "--ledger", str(tmp_path / "l.db")]) == 1
    out = capsys.readouterr().out
    assert "verify: PROBLEMS FOUND" in out and "    ! fork at seq 6" in out


def test_a_broken_link_is_worded_as_a_broken_link_not_a_gap(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An accepted entry whose prev is not its predecessor's hash (another history's
    entry 5, validly signed by the same key) is a broken link."""
    import hashlib
    import sqlite3

    d = _dev(8, sig=True)
    clone = d.fork(4)
    clone.readings(3)
    with _ledger(tmp_path) as led:
        reconcile(led, bundle([d]))
    _, body, sig = clone.entries[5]
    with sqlite3.connect(tmp_path / "l.db") as db:
        db.execute("UPDATE entries SET body=?, entry_hash=?, sig=? WHERE device_id=? AND "
                   "seq=5", (body, hashlib.sha256(body).digest(), sig, d.id_hex))
    assert main(["verify", "--ledger", str(tmp_path / "l.db")]) == 1
    out = capsys.readouterr().out
    assert "seq 5: broken link: entry 5 does not link to entry 4" in out
    assert "gap" not in out


def test_verify_log_bad_flag_value_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "0000000000.seg").write_bytes(b"")
    assert main(["verify-log", "--pubkey", "zz", str(tmp_path)]) == 2
    assert main(["verify-log", "--pubkey", _dev(1).pub.hex(), "--anchor", "x",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("hashtrail: error:")


# -- item 4: a witness refuses a stale checkpoint; split view only when inconsistent ------

class Views:
    """One ledger key, three trees: `a` and `b` share the first 4 leaves and then differ
    (a split view); `a4` is `a` at size 4 (an older, consistent view of `a`)."""

    def __init__(self, tmp: Path) -> None:
        from hashtrail.formats import note

        self.tmp = tmp
        d, e = _dev(8), _dev(8, secret=2002)
        base = tmp / "base.db"
        with _ledger(tmp) as led:
            led.close()
        (tmp / "l.db").rename(base)
        (tmp / "l.db.key").rename(tmp / "ledger.key")
        key = str(tmp / "ledger.key")
        with Ledger.open_signing(base, key) as led:
            reconcile(led, bundle([d], {d.id_hex: (0, 4)}, cps=[(d, d.checkpoint(seq=3))]))
            self.vkey = led.verifier.to_string()
            (tmp / "a4.cp").write_bytes(led.sign_checkpoint())
        for name, more in (("a", bundle([d], cps=[(d, d.checkpoint())])),
                           ("b", bundle([e], cps=[(e, e.checkpoint())], name="c2"))):
            (tmp / f"{name}.db").write_bytes(base.read_bytes())
            with Ledger.open_signing(tmp / f"{name}.db", key) as led:
                reconcile(led, more)
                (tmp / f"{name}.cp").write_bytes(led.sign_checkpoint())
        self.size = {n: note.parse_checkpoint(note.parse_note((tmp / f"{n}.cp").read_bytes())
                                              .text).size for n in ("a4", "a", "b")}
        (tmp / "w.key").write_text(note.Signer.generate("witness.test/w").to_string())

    def cosign(self, ledger: str, cp: str, state: str = "w.state") -> int:
        t = self.tmp
        return main(["ledger", "cosign", "--key", str(t / "w.key"), "--state", str(t / state),
                     "--verifier-key", self.vkey, "--ledger", str(t / f"{ledger}.db"),
                     str(t / f"{cp}.cp")])


def test_witness_refuses_an_older_consistent_checkpoint_as_stale(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = Views(tmp_path)
    assert v.size["a4"] == 4 < v.size["a"]
    assert v.cosign("a", "a") == 0
    capsys.readouterr()
    assert v.cosign("a", "a4") == 2
    err = capsys.readouterr().err
    assert "stale checkpoint: size 4 is older than the checkpoint at size" in err
    assert "split view" not in err
    assert not (tmp_path / "w.inconsistent.json").exists()
    assert v.cosign("a", "a") == 0          # the latest one may be cosigned again


@pytest.mark.parametrize("seen, offered", [("a", "b"), ("b", "a")])
def test_witness_keeps_split_view_evidence_check_evidence_verifies_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], seen: str, offered: str) -> None:
    """Inconsistent, whichever is larger: evidence kept, and `check-evidence` proves it
    under the ledger key alone (no ledger file)."""
    from hashtrail.formats import note

    v = Views(tmp_path)
    big = max((seen, offered), key=lambda n: v.size[n])
    assert v.cosign(seen, seen) == 0
    capsys.readouterr()
    assert v.cosign(big, offered) == 1
    assert "split view" in capsys.readouterr().err
    ev = tmp_path / "w.inconsistent.json"
    check = ["ledger", "check-evidence", str(ev)]
    assert main([*check, "--verifier-key", v.vkey]) == 0
    assert "split view proven" in capsys.readouterr().out
    assert main([*check, "--verifier-key", v.vkey, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split_view"] is True
    # fails closed without the ledger key, and under another key
    assert main(check) == 2
    other = note.Signer.generate("test.example/ledger").verifier().to_string()
    assert main([*check, "--verifier-key", other]) == 1
    # a consistent pair (the older view of `a` instead of `b`) proves nothing
    doc = json.loads(ev.read_text())
    doc["seen"], doc["offered"], doc["path"] = ((tmp_path / "a4.cp").read_text(),
                                                (tmp_path / "a.cp").read_text(), [])
    ev.write_text(json.dumps(doc))
    assert main([*check, "--verifier-key", v.vkey]) != 0
    err = capsys.readouterr().err
    assert "split view proven" not in err and "error" in err


def test_witness_given_a_ledger_without_the_larger_tree_decides_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The consistency path comes from the --ledger file: one that is not the larger
    checkpoint's tree proves nothing, so no evidence is written and nothing cosigned."""
    v = Views(tmp_path)
    small, big = sorted(("a", "b"), key=lambda n: v.size[n])
    assert v.cosign(small, small) == 0
    state = (tmp_path / "w.state").read_bytes()
    capsys.readouterr()
    assert v.cosign(small, big) == 2          # the small view's file, the big checkpoint
    assert "cannot check consistency" in capsys.readouterr().err
    assert not (tmp_path / "w.inconsistent.json").exists()
    assert (tmp_path / "w.state").read_bytes() == state


def test_check_evidence_still_reads_fork_evidence(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    d = _forked_ledger(tmp_path)
    db, ev = str(tmp_path / "l.db"), str(tmp_path / "fork.json")
    assert main(["ledger", "evidence", "--ledger", db, "--device", d.id_hex, "--out", ev]) == 0
    assert main(["ledger", "check-evidence", ev]) == 0
    assert "fork proven" in capsys.readouterr().out


# -- item 5: hints that point the right way --------------------------------------------

def test_prove_an_unknown_seq_names_the_seqs_the_ledger_holds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _dev(5, sig=True)
    with _ledger(tmp_path) as led:
        reconcile(led, bundle([d]))
    args = ["ledger", "prove", "--ledger", str(tmp_path / "l.db"), "--device", d.id_hex]
    assert main([*args, "--seq", "99"]) == 2
    err = capsys.readouterr().err
    assert f"device {d.id_hex} seq 99 is not in the ledger: it holds accepted seqs 0..5" in err
    assert "hint: give --seq between 0 and 5" in err and "ledger init" not in err
    assert main([*args, "--seq", "5"]) == 0
    capsys.readouterr()
    # a device the ledger does not hold, fork evidence of a device that never forked
    other = _dev(1, secret=4242).id_hex
    db = str(tmp_path / "l.db")
    assert main(["ledger", "prove", "--ledger", db, "--device", other, "--seq", "0"]) == 2
    assert main(["ledger", "evidence", "--ledger", db, "--device", d.id_hex, "--out",
                 str(tmp_path / "ev.json")]) == 2
    err = capsys.readouterr().err
    assert f"device {other} is not enrolled in this ledger" in err
    assert "hint: `hashtrail devices list --ledger FILE` lists the devices" in err
    assert "has not seen its key sign two histories" in err and "ledger init" not in err
    assert not (tmp_path / "ev.json").exists()


@pytest.mark.parametrize("bounds", [["--old", "0"], ["--old", "9"], ["--old", "3", "--new", "2"],
                                    ["--old", "2", "--new", "99"], ["--old", "-1"]])
def test_consistency_with_bad_bounds_names_the_valid_range(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], bounds: list[str]) -> None:
    d = _dev(5, sig=True)
    with _ledger(tmp_path) as led:
        reconcile(led, bundle([d]))
    args = ["ledger", "consistency", "--ledger", str(tmp_path / "l.db")]
    try:
        code = main([*args, *bounds])
    except SystemExit as e:     # argparse refuses a size below 1 itself: one line, exit 2
        code = int(e.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert "this ledger holds 6 leaves, so 1 <= --old <= --new <= 6" in err \
        or "--old: expected a whole number of at least 1" in err, err
    assert "ledger init" not in err
    assert main([*args, "--old", "2", "--new", "6"]) == 0


@pytest.mark.parametrize("origin", ["bad origin", "https://example.com/log", "a+b", "", "x\ty"])
def test_a_malformed_origin_says_what_an_origin_looks_like(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], origin: str) -> None:
    db = tmp_path / "new.db"
    assert main(["ledger", "init", "--ledger", str(db), "--origin", origin]) == 2
    err = capsys.readouterr().err
    assert f"--origin {origin!r} is not a checkpoint origin" in err
    assert "schema-less URL" in err and "e.g. example.com/ledger" in err
    assert "malformed or truncated" not in err
    assert not db.exists() and not (tmp_path / "new.db.key").exists()


# -- item 7: a witness key command; cosign says what it did ------------------------------

def test_witness_key_then_cosign_then_a_proof_checked_with_the_witness(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import stat

    from hashtrail.formats import note

    d = _dev(3, sig=True)
    with _ledger(tmp_path) as led:
        reconcile(led, bundle([d]))
        vkey = led.verifier.to_string()
    db, wkey = str(tmp_path / "l.db"), tmp_path / "w.key"
    assert main(["ledger", "witness-key", "--name", "witness.example.com/w1",
                 "--out", str(wkey)]) == 0
    out = capsys.readouterr().out
    ckey = out.rsplit(": ", 1)[1].strip()
    assert ckey.startswith("witness.example.com/w1+")
    assert note.Verifier.from_string(ckey).cosigner_string() == ckey
    assert stat.S_IMODE(wkey.stat().st_mode) == 0o600
    before = wkey.read_bytes()
    assert main(["ledger", "witness-key", "--name", "w2", "--out", str(wkey)]) == 2
    assert wkey.read_bytes() == before and "--out" in capsys.readouterr().err
    assert main(["ledger", "witness-key", "--name", "bad name", "--out",
                 str(tmp_path / "x.key")]) == 2
    assert not (tmp_path / "x.key").exists()
    capsys.readouterr()
    # cosign, without --json: the cosigned checkpoint on stdout, one summary line
    assert main(["ledger", "checkpoint", "--ledger", db]) == 0
    (tmp_path / "cp").write_text(capsys.readouterr().out)
    assert main(["ledger", "cosign", "--ledger", db, "--key", str(wkey), "--state",
                 str(tmp_path / "w.state"), "--verifier-key", vkey, str(tmp_path / "cp")]) == 0
    cap = capsys.readouterr()
    assert note.open_cosignatures(cap.out.encode(), [note.Verifier.from_string(ckey)])
    assert cap.err.count("\n") == 1 and cap.err.startswith(
        "cosigned: test.example/ledger at size 4 by witness witness.example.com/w1")
    (tmp_path / "cosigned").write_text(cap.out)
    assert main(["ledger", "prove", "--ledger", db, "--device", d.id_hex, "--seq", "2",
                 "--checkpoint", str(tmp_path / "cosigned")]) == 0
    (tmp_path / "proof.json").write_text(capsys.readouterr().out)
    assert main(["ledger", "verify-proof", "--verifier-key", vkey, "--witness-key", ckey,
                 str(tmp_path / "proof.json")]) == 0


# -- item 8 (part): every --help option says what it is ------------------------------------

def _undocumented() -> list[str]:
    import argparse

    from hashtrail.cli import build_parser

    missing: list[str] = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in a._choices_actions}
                for name, sub in a.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name} (the command itself)")
                    walk(sub, f"{path} {name}")
            elif not a.help or a.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")

    walk(build_parser(), "hashtrail")
    return missing


def test_every_option_and_command_has_help_text() -> None:
    assert _undocumented() == []
