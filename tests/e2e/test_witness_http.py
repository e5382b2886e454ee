"""`hashtrail witness serve`: C2SP tlog-witness add-checkpoint over HTTP, as a real
process on a loopback port, asked by this test as a log would ask it: checkpoints of a
real ledger (tests/e2e/tileskit.py) with RFC 6962 consistency proofs from its tree."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import merkle, note
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.witness_http import WitnessConflict, WitnessRefused, request_cosignature
from tileskit import ROOT, TileLedger, make_ledger

pytest.importorskip("aiohttp")


@dataclass
class Log:
    vkey: str
    cps: list[bytes]           # checkpoints of the ledger, growing
    other: bytes               # a checkpoint of a fork of cps[0] under the same key
    other_db: Path
    db: Path


def _cp(db: Path) -> bytes:
    with Ledger.open(db) as led:
        return led.latest_checkpoint()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    d = tmp_path_factory.mktemp("witness")
    tl = make_ledger(d / "ledger.db", 300, 0)          # 301 leaves: not a power of two
    shutil.copyfile(tl.path, d / "other.db")
    shutil.copyfile(f"{tl.path}.key", d / "other.db.key")
    cps = [_cp(tl.path)]
    for _ in range(2):
        tl.grow(50, 0)
        cps.append(_cp(tl.path))
    fork = ledgerkit_device_fork(tl, d / "other.db")
    return Log(tl.verifier_key, cps, fork, d / "other.db", tl.path)


def ledgerkit_device_fork(tl: TileLedger, other: Path) -> bytes:
    """Grow `other` (a copy of the first tree) with the other device's entries."""
    TileLedger(other, tl.verifier_key, tl.signed, tl.unsigned).grow(0, 300)
    return _cp(other)


def _size(cp: bytes) -> int:
    return note.parse_checkpoint(note.parse_note(cp).text).size


def _root(cp: bytes) -> bytes:
    return note.parse_checkpoint(note.parse_note(cp).text).root


def _proof(db: Path, old: int, new: int) -> list[bytes]:
    with Ledger.open(db) as led:
        return merkle.prove_consistency(led.node, old, new) if 0 < old < new else []


def _body(old: int, proof: list[bytes], cp: bytes) -> bytes:
    return (f"old {old}\n".encode() + b"".join(base64.b64encode(h) + b"\n" for h in proof)
            + b"\n" + cp)


class WitnessProc:
    def __init__(self, d: Path, vkey: str) -> None:
        self.key, self.state = d / "witness.key", d / "witness.state"
        if not self.key.exists():
            assert main(["ledger", "witness-key", "--name", "witness.example/w1", "--out",
                         str(self.key)]) == 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashtrail", "witness", "serve", "--key", str(self.key),
             "--state", str(self.state), "--verifier-key", vkey, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "add-checkpoint" in line, line + self.proc.stderr.read()  # type: ignore[union-attr]
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        self.cosigner = note.Verifier.from_string(line.split("cosigner key ")[1].split(";")[0])

    def post(self, body: bytes, path: str = "/add-checkpoint", method: str = "POST"
             ) -> tuple[int, str, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type") or "", r.read()
        finally:
            c.close()

    def stop(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def witness(tmp_path: Path, log: Log) -> Iterator[WitnessProc]:
    w = WitnessProc(tmp_path, log.vkey)
    yield w
    w.stop()


def test_add_checkpoint_cosigns_what_extends_and_answers_conflicts(
        log: Log, witness: WitnessProc) -> None:
    cp0, cp1, cp2 = log.cps
    s0, s1, s2 = map(_size, log.cps)
    status, _, body = witness.post(_body(0, [], cp0))
    assert status == 200 and body.startswith("\u2014 witness.example/w1 ".encode())
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    assert note.open_cosignatures(cp0 + body, [witness.cosigner]) != {}
    assert witness.state.read_bytes() == cp0
    # the client does not know the witness's size: 409 says it
    status, ctype, body = witness.post(_body(0, [], cp1))
    assert (status, ctype, body) == (409, "text/x.tlog.size", f"{s0}\n".encode())
    status, _, body = witness.post(_body(s0, _proof(log.db, s0, s1), cp1))
    assert status == 200 and witness.state.read_bytes() == cp1
    # the same checkpoint again: cosigned again, nothing changes
    assert witness.post(_body(s1, [], cp1))[0] == 200
    # older than the witness's: old size above the checkpoint's
    assert witness.post(_body(s1, [], cp0))[0] == 400
    # a proof that does not verify: 422, state kept
    bad = _proof(log.db, s1, s2)
    bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
    assert witness.post(_body(s1, bad, cp2))[0] == 422
    assert witness.state.read_bytes() == cp1
    assert witness.post(_body(s1, _proof(log.db, s1, s2), cp2))[0] == 200
    # restarted, the witness still knows its size
    witness.stop()
    w2 = WitnessProc(witness.state.parent, log.vkey)
    try:
        assert w2.post(_body(0, [], cp2))[2] == f"{s2}\n".encode()
    finally:
        w2.stop()


def test_refusals_change_nothing(log: Log, witness: WitnessProc) -> None:
    cp0 = log.cps[0]
    assert witness.post(_body(0, [], cp0))[0] == 200
    before = witness.state.read_bytes()
    forger = note.Signer.generate(note.Verifier.from_string(log.vkey).name)
    text = note.parse_note(cp0).text
    stranger = note.Signer.generate("example.com/another-log")
    other_text = text.replace(text.split("\n")[0], "example.com/another-log", 1)
    cases = [
        (_body(0, [], note.sign_note(text, [forger])), 403),       # not the log's key
        (_body(0, [], note.sign_note(other_text, [stranger])), 404),  # another log
        (b"old 01\n\n" + cp0, 400), (b"old -1\n\n" + cp0, 400), (b"junk", 400),
        (b"old 0\n" + b"notbase64!\n" + b"\n" + cp0, 400),
        (b"old 0\n" + (base64.b64encode(bytes(32)) + b"\n") * 64 + b"\n" + cp0, 400),
        (b"old 0\n\nnot a note", 400), (b"old 0\n" + cp0, 400),
        (b"old 0\n\n" + b"x" * 70000, 413),
    ]
    for body, status in cases:
        assert witness.post(body)[0] == status, body[:40]
    assert witness.post(b"", method="GET")[0] == 405
    assert witness.post(_body(0, [], cp0), path="/../add-checkpoint")[0] == 404
    assert witness.state.read_bytes() == before


def test_split_view_is_refused_with_evidence(log: Log, witness: WitnessProc,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cp0, cp1 = log.cps[:2]
    s0, s1 = _size(cp0), _size(cp1)
    assert witness.post(_body(0, [], cp0))[0] == 200
    assert witness.post(_body(s0, _proof(log.db, s0, s1), cp1))[0] == 200
    # the fork, with a proof from its own tree: leads to its root from another old root
    so = _size(log.other)
    assert so > s1 and _root(log.other) != _root(log.cps[-1])
    status, _, _ = witness.post(_body(s1, _proof(log.other_db, s1, so), log.other))
    assert status == 422 and witness.state.read_bytes() == cp1
    ev = witness.state.with_suffix(".inconsistent.json")
    assert main(["ledger", "check-evidence", "--verifier-key", log.vkey, str(ev)]) == 0
    assert "split view proven" in capsys.readouterr().out


def test_killed_mid_update_keeps_one_checkpoint_or_the_other(log: Log, tmp_path: Path) -> None:
    """SIGKILL while an add-checkpoint is in flight, at a few points: the state file is
    always exactly the old or the new checkpoint, and a restarted witness serves on."""
    cp0, cp1 = log.cps[:2]
    s0, s1 = _size(cp0), _size(cp1)
    for delay in (0.0, 0.005, 0.02, 0.05):
        d = tmp_path / f"k{delay}"
        d.mkdir()
        w = WitnessProc(d, log.vkey)
        assert w.post(_body(0, [], cp0))[0] == 200
        c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
        c.request("POST", "/add-checkpoint", body=_body(s0, _proof(log.db, s0, s1), cp1))
        if delay:
            time.sleep(delay)
        w.stop(signal.SIGKILL)
        c.close()
        state = w.state.read_bytes()
        assert state in (cp0, cp1)
        w2 = WitnessProc(d, log.vkey)
        try:
            size = s0 if state == cp0 else s1
            assert w2.post(_body(0, [], cp0))[:3:2] == (409, f"{size}\n".encode())
        finally:
            w2.stop()


def test_the_logs_side_asks_and_learns_the_witness_size(log: Log, tmp_path: Path) -> None:
    """witness_http.request_cosignature, as a log pushing checkpoints would use it: a
    409 tells it the witness's size, from which it sends the right proof."""
    w = WitnessProc(tmp_path, log.vkey)
    try:
        url = f"http://127.0.0.1:{w.port}/"
        cp0, cp1 = log.cps[:2]
        line = request_cosignature(url, cp0, 0, [])
        assert note.open_cosignatures(cp0 + line, [w.cosigner])
        with pytest.raises(WitnessConflict) as ex:
            request_cosignature(url, cp1, 0, [])
        old = ex.value.size
        assert old == _size(cp0)
        line = request_cosignature(url, cp1, old, _proof(log.db, old, _size(cp1)))
        assert note.open_cosignatures(cp1 + line, [w.cosigner])
        with pytest.raises(WitnessRefused, match="HTTP 422"):
            request_cosignature(url, log.cps[2], _size(cp1), [])
    finally:
        w.stop()
    with pytest.raises(WitnessRefused):
        request_cosignature(f"http://127.0.0.1:{w.port}/", log.cps[0], 0, [], timeout=2)


def test_publish_only_with_k_cosignatures(log: Log, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`ledger publish --witness URL --witness-key K --min-cosignatures k`: the folder's
    checkpoint carries the witnesses' cosignatures, and verify-proof --url requiring
    them passes; with fewer than k, nothing is written."""
    from tileskit import static
    w = WitnessProc(tmp_path, log.vkey)
    try:
        url = f"http://127.0.0.1:{w.port}/"
        # the witness already cosigned an older tree: the log learns its size from a
        # 409 and sends the consistency proof from there
        assert w.post(_body(0, [], log.cps[0]))[0] == 200
        dead = "http://127.0.0.1:9/"                   # nothing listens: refused
        wkey = w.cosigner.cosigner_string()
        base = ["ledger", "publish", "--ledger", str(log.db), "--words",
                "--witness-key", wkey]
        out2 = tmp_path / "two"
        assert main([*base, "--out", str(out2), "--witness", url, "--witness", dead,
                     "--min-cosignatures", "2"]) == 1
        assert "1 of the 2 witness cosignatures required" in capsys.readouterr().err
        assert not out2.exists()
        out1 = tmp_path / "one"
        assert main([*base, "--out", str(out1), "--witness", dead, "--witness", url,
                     "--min-cosignatures", "1"]) == 0
        cap = capsys.readouterr()
        assert "cosigned by witness.example/w1" in cap.out and "127.0.0.1:9" in cap.err
        cp = (out1 / "checkpoint").read_bytes()
        assert note.open_cosignatures(cp, [w.cosigner]) and \
            note.parse_note(cp).text == note.parse_note(log.cps[-1]).text
        assert w.state.read_bytes() == log.cps[-1]
    finally:
        w.stop()
    with static(out1) as surl:
        assert main(["ledger", "verify-proof", "--url", surl, "--device",
                     _device(log), "--seq", "5", "--verifier-key", log.vkey,
                     "--witness-key", wkey]) == 0
    assert "witness.example/w1" in capsys.readouterr().out


def _device(log: Log) -> str:
    with Ledger.open(log.db) as led:
        return led.devices()[0].device_id
