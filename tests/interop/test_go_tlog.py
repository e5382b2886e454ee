"""Interop: the ledger's tlog-tiles and checkpoints read by code hashtrail did not write.

tests/interop/tlogcheck is a small Go program over golang.org/x/mod/sumdb/note and
golang.org/x/mod/sumdb/tlog (Debian: golang-go, golang-golang-x-mod-dev; .ci/run
installs them). It opens the checkpoint with the ledger's verifier key string exactly
as `ledger init` prints it, authenticates hash tiles against the signed root, proves
inclusion of records from their entry bundles, checks every entry bundle, and proves
consistency with an older checkpoint: from a published folder and from `hashtrail
serve`. Edited tiles and a checkpoint signed by another key make it fail.

Without Go the test skips with one line, except under CI=true, where it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import note

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from tileskit import Server, TileLedger, make_ledger

HERE = Path(__file__).resolve().parent
GOPATH = Path("/usr/share/gocode")
NEEDS = "golang-go and golang-golang-x-mod-dev (apt-get install -y golang-go " \
        "golang-golang-x-mod-dev)"


GO = shutil.which("go")
if (GO is None or not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir()) and \
        os.environ.get("CI") != "true":
    pytest.skip(f"Go interop: needs {NEEDS}", allow_module_level=True)


def _go_env(cache: Path) -> dict[str, str]:
    """Go 1.19 in GOPATH mode over the Debian packages' sources; a build cache of its
    own, so a CI user without a home folder can build (about 2 s from cold)."""
    return {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": "",
            "GOCACHE": str(cache)}


@pytest.fixture(scope="module")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = GO
    if go is None or not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        pytest.fail(f"CI=true and the Go interop test needs {NEEDS}; .ci/run installs them")
    work = tmp_path_factory.mktemp("go")
    exe = work / "tlogcheck"
    r = subprocess.run([go, "build", "-o", str(exe), "."], cwd=HERE / "tlogcheck",
                       env=_go_env(work / "cache"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return exe


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> TileLedger:
    """70k leaves: tiles at levels 0, 1 and 2, full and partial."""
    return make_ledger(tmp_path_factory.mktemp("interop") / "led.db", 2000, 68000)


def _run(exe: Path, vkey: str, log: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), "-vkey", vkey, "-log", log, *args], capture_output=True,
                          text=True, timeout=120)


def _publish(tl: TileLedger, out: Path) -> None:
    assert main(["ledger", "publish", "--ledger", str(tl.path), "--out", str(out)]) == 0


RECORDS = "0,1,255,256,2000,65535,65536,70000"


def test_go_reads_a_published_folder(tlogcheck: Path, tl: TileLedger, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    _publish(tl, out)
    r = _run(tlogcheck, tl.verifier_key, str(out), "-records", RECORDS, "-all")
    assert r.returncode == 0, r.stderr
    assert "ok checkpoint example.com/tiles size 70001" in r.stdout
    assert r.stdout.count("included") == 8 and "ok all 70001 entries" in r.stdout


def test_go_refuses_edited_tiles_and_another_key(tlogcheck: Path, tl: TileLedger,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "pub"
    _publish(tl, out)
    for rel, off in (("tile/0/005", 7), ("tile/1/000", 8192 - 1),
                     ("tile/2/000.p/1", 0), ("tile/entries/005", 100)):
        p = out / rel
        orig = p.read_bytes()
        flip = bytearray(orig)
        flip[off] ^= 1
        p.write_bytes(bytes(flip))
        r = _run(tlogcheck, tl.verifier_key, str(out), "-records", "256,1300,69999", "-all")
        assert r.returncode == 1 and "tlogcheck:" in r.stderr, (rel, r.stdout)
        p.write_bytes(orig)
    assert _run(tlogcheck, tl.verifier_key, str(out), "-all").returncode == 0
    other = note.Signer.generate("example.com/tiles").verifier().to_string()
    r = _run(tlogcheck, other, str(out))
    assert r.returncode == 1 and "checkpoint" in r.stderr


def test_go_reads_hashtrail_serve_and_proves_consistency(tlogcheck: Path, tl: TileLedger,
                                                         tmp_path: Path) -> None:
    s = Server(tl.path)
    try:
        old = tmp_path / "old-checkpoint"
        old.write_bytes(s.get("/checkpoint")[2])
        r = _run(tlogcheck, tl.verifier_key, s.url, "-records", RECORDS)
        assert r.returncode == 0, r.stderr
        size = tl.grow(300, 700)
        r = _run(tlogcheck, tl.verifier_key, s.url, "-records", f"0,70001,{size - 1}",
                 "-old", str(old), "-all")
        assert r.returncode == 0, r.stderr
        assert f"ok consistent 70001 -> {size}" in r.stdout
    finally:
        s.stop()
