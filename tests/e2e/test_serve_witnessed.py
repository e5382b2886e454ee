"""`hashtrail serve --ledger ... --witness URL ... --min-cosignatures k`: the server
asks real `hashtrail witness serve` processes (loopback) to cosign each new checkpoint
as reconciles grow the ledger, and serves a checkpoint (and tiles up to its size) only
once k of them cosigned it; a witness that is down holds the served checkpoint at the
last one k cosigned, and when it is back it catches up; a server that starts again
learns each witness's size from its 409 and sends the proof from there."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from tileskit import ROOT, Server, TileLedger, interrupt, make_ledger

pytest.importorskip("aiohttp")

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "host")}
INTERVAL = "0.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Witness:
    """A `hashtrail witness serve` process on a fixed loopback port (so it can be
    stopped and started again where the log expects it)."""

    def __init__(self, d: Path, name: str, vkey: str) -> None:
        self.key, self.state = d / f"{name}.key", d / f"{name}.state"
        assert main(["ledger", "witness-key", "--name", f"witness.example/{name}", "--out",
                     str(self.key)]) == 0
        self.vkey, self.port = vkey, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[str] | None = None
        self.cosigner: note.Verifier | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashtrail", "witness", "serve", "--key", str(self.key),
             "--state", str(self.state), "--verifier-key", self.vkey, "--listen",
             f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "add-checkpoint" in line, line + self.proc.stderr.read()  # type: ignore[union-attr]
        self.cosigner = note.Verifier.from_string(line.split("cosigner key ")[1].split(";")[0])

    def stop(self) -> None:
        assert self.proc is not None
        interrupt(self.proc)

    def size(self) -> int:
        return note.parse_checkpoint(note.parse_note(self.state.read_bytes()).text).size


def _served(srv: Server, keys: list[note.Verifier], vkey: str) -> tuple[int, list[str]]:
    """(tree size, cosigner names) of the checkpoint served now; (-1, []) for none."""
    status, _, body = srv.get("/checkpoint")
    if status != 200:
        return -1, []
    cp, _ = note.open_checkpoint(body, [note.Verifier.from_string(vkey)])
    return cp.size, sorted(note.open_cosignatures(body, keys))


def _wait(srv: Server, keys: list[note.Verifier], vkey: str, size: int,
          timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    got = (-1, [])
    while time.monotonic() < deadline:
        got = _served(srv, keys, vkey)
        if got[0] == size:
            return got[1]
        time.sleep(0.05)
    raise AssertionError(f"served {got}, waited for size {size}")


def _size(tl: TileLedger) -> int:
    with Ledger.open(tl.path) as led:
        return led.size


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TileLedger, list[Witness]]]:
    tl = make_ledger(tmp_path / "ledger.db", 60, 100)
    ws = [Witness(tmp_path, f"w{i}", tl.verifier_key) for i in (1, 2)]
    try:
        yield tl, ws
    finally:
        for w in ws:
            if w.proc is not None and w.proc.poll() is None:
                w.stop()


def _server(tl: TileLedger, ws: list[Witness], k: int) -> Server:
    args = [a for w in ws for a in ("--witness", w.url, "--witness-key",
                                     str(w.cosigner.to_string()) if w.cosigner else "")]
    return Server(tl.path, [*args, "--min-cosignatures", str(k),
                            "--witness-interval", INTERVAL])


def test_served_checkpoint_follows_k_cosignatures(
        setup: tuple[TileLedger, list[Witness]]) -> None:
    tl, ws = setup
    keys = [w.cosigner for w in ws if w.cosigner is not None]
    names = sorted(k.name for k in keys)
    srv = _server(tl, ws, 2)
    try:
        s0 = _size(tl)
        assert _wait(srv, keys, tl.verifier_key, s0) == names
        # the ledger grows while served: the next checkpoint is cosigned, then served
        s1 = tl.grow(30, 0)
        assert s1 > s0
        assert _wait(srv, keys, tl.verifier_key, s1) == names
        assert [w.size() for w in ws] == [s1, s1]
        # the fleet view's ledger page lists the served checkpoint's cosigners
        status, _, body = srv.get("/api/ledger")
        assert status == 200
        listed = json.loads(body)["witnesses"]
        assert sorted(w["name"] for w in listed) == names
        assert all(w["served"] and w["size"] >= s1 for w in listed), listed
        # one witness down, k = 2: the served checkpoint stays at the last cosigned one
        ws[1].stop()
        s2 = tl.grow(30, 0)
        deadline = time.monotonic() + 15
        while ws[0].size() != s2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)                      # a few more rounds, still one cosignature
        assert _served(srv, keys, tl.verifier_key) == (s1, names)
        last_full = (s1 // 256) * 256
        status, _, _ = srv.get(f"/tile/0/000.p/{s2 - last_full}")
        assert status == 404                 # no tile past the served tree
        assert ws[0].size() == s2            # the witness that is up cosigned s2 already
        # back on its port with its state: it catches up, the server moves on
        ws[1].start()
        assert _wait(srv, keys, tl.verifier_key, s2) == names
        assert ws[1].size() == s2
    finally:
        srv.stop()
    # a new server process knows no witness size: each answers 409 with its size, the
    # proof from there is sent, and the grown ledger is served cosigned by both
    s3 = tl.grow(20, 0)
    srv = _server(tl, ws, 2)
    try:
        assert _wait(srv, keys, tl.verifier_key, s3) == names
    finally:
        srv.stop()


def test_k_of_n_serves_with_one_witness_down(
        setup: tuple[TileLedger, list[Witness]]) -> None:
    tl, ws = setup
    keys = [w.cosigner for w in ws if w.cosigner is not None]
    ws[1].stop()
    srv = _server(tl, ws, 1)
    try:
        assert _wait(srv, keys, tl.verifier_key, _size(tl)) == [keys[0].name]
        s1 = tl.grow(10, 0)
        assert _wait(srv, keys, tl.verifier_key, s1) == [keys[0].name]
    finally:
        srv.stop()
