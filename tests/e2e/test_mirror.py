"""`hashtrail mirror`: a replica of a log served as tlog-tiles, kept only once proven.

Real reconciles into real SQLite files (tests/e2e/tileskit.py), served by `hashtrail
serve`'s application on a loopback port (hashtrail.ledger.serve.serving) or by a plain
static server over a published folder that the tests then make lie. The replica is
compared byte for byte with `ledger publish` of the same ledger, and proofs are fetched
from it by `verify-proof --url` behind a static server."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.formats.notefile import read_signer
from hashtrail.ledger import tiles
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.serve import serving
from tileskit import ROOT, TileLedger, interrupt, make_ledger, static

pytest.importorskip("aiohttp")


def _files(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): ("dir" if p.is_dir() else
                                    hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(d.rglob("*"))}


def _mirror(url: str, out: Path, vkey: str, *extra: str) -> int:
    return main(["mirror", url, "--out", str(out), "--verifier-key", vkey, *extra])


@dataclass
class World:
    """One log at two sizes and a second view of it, signed with the same key:
    `first` (the log at size s1), `grown` (s1 and one device's 300 more entries) and
    `other` (s1 and the other device's 100 more entries: a fork of `first`). Module
    scope: device chains are slow to make; no test changes a ledger."""

    vkey: str
    signed: str
    unsigned: str
    first: Path
    grown: Path
    other: Path
    pub: dict[str, Path]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    d = tmp_path_factory.mktemp("mirror")
    tl = make_ledger(d / "grown.db", 300, 250)
    for name in ("first", "other"):
        shutil.copyfile(tl.path, d / f"{name}.db")
        shutil.copyfile(f"{tl.path}.key", d / f"{name}.db.key")
    tl.grow(300, 0)
    TileLedger(d / "other.db", tl.verifier_key, tl.signed, tl.unsigned).grow(0, 100)
    pub = {}
    for name in ("first", "grown", "other"):
        with Ledger.open(d / f"{name}.db") as led:
            tiles.publish(led, d / "pub" / name, words=True)
        pub[name] = d / "pub" / name
    return World(tl.verifier_key, tl.signed.id_hex, tl.unsigned.id_hex, d / "first.db",
                 d / "grown.db", d / "other.db", pub)


def _size(folder: Path) -> int:
    return note.parse_checkpoint(note.parse_note((folder / "checkpoint").read_bytes()).text).size


def test_replica_is_the_published_log_and_serves_proofs(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = tmp_path / "replica"
    with serving(world.first) as url:
        assert _mirror(url, rep, world.vkey, "--words") == 0
    first = capsys.readouterr().out
    assert "tree size 0 -> " in first and "device words checked" in first
    assert _files(rep) == _files(world.pub["first"])
    with serving(world.grown) as url:
        assert _mirror(url, rep, world.vkey, "--words", "--json") == 0
        second = json.loads(capsys.readouterr().out)
        assert second["status"] == "updated" and second["size"] == _size(world.pub["grown"])
        # full tiles of the first tree were kept, not fetched again
        assert second["kept"] == 2 and second["words"] == second["size"] - second["old_size"]
        got, want = _files(rep), _files(world.pub["grown"])
        stale = {k for k in got if k not in want}      # partial tiles of the first tree
        assert stale and all(".p/" in k for k in stale)
        assert {k: v for k, v in got.items() if k not in stale} == want
        assert _mirror(url, rep, world.vkey) == 0
        assert "nothing new" in capsys.readouterr().out
    # the replica behind any static server answers verify-proof --url
    with static(rep) as url2:
        for dev, seq in ((world.signed, 550), (world.unsigned, 120)):
            assert main(["ledger", "verify-proof", "--url", url2, "--device", dev,
                         "--seq", str(seq), "--verifier-key", world.vkey]) == 0
            assert f"inclusion OK: device {dev} seq {seq} " in capsys.readouterr().out


def _refused(url: str, rep: Path, vkey: str, capsys: pytest.CaptureFixture[str],
             says: str) -> None:
    before = _snapshot(rep)
    capsys.readouterr()
    assert _mirror(url, rep, vkey) == 1
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("hashtrail: error:")]
    assert len(lines) == 1 and says in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(rep) == before


def _replica_of(world: World, name: str, rep: Path) -> Path:
    with static(world.pub[name]) as url:
        assert _mirror(url, rep, world.vkey) == 0
    return rep


# What a lying server changes in the grown log: (level, tile index) of a tile the
# mirror must fetch (the first tree holds tile 0 in full, tile 1 partially).
VICTIMS = [((None, 1), "does not hash to its level-0 tile hash"),
           ((None, 3), "does not hash to its level-0 tile hash"),     # partial bundle
           ((0, 2), "does not hash to its level-0 tile hash"),
           ((0, 3), "does not hash to its level-0 tile hash"),        # partial tile
           ((1, 0), "is not the root of tile/0/"),
           ((0, 1), "does not hash to its level-0 tile hash")]


@pytest.mark.parametrize("victim,says", VICTIMS)
def test_changed_tile_is_refused_and_the_replica_is_untouched(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        victim: tuple[int | None, int], says: str) -> None:
    rep = _replica_of(world, "first", tmp_path / "replica")
    pub = tmp_path / "lying"
    shutil.copytree(world.pub["grown"], pub)
    ref = tiles.tile_for(victim[0], victim[1], _size(pub))
    data = bytearray((pub / ref.path()).read_bytes())
    data[len(data) // 2] ^= 1
    (pub / ref.path()).write_bytes(bytes(data))
    with static(pub) as url:
        _refused(url, rep, world.vkey, capsys, says)
        # a new replica is not made from a lying server either
        assert _mirror(url, tmp_path / "new", world.vkey) == 1
    assert not (tmp_path / "new").exists()


def test_checkpoint_that_does_not_extend_the_replica_is_refused(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = _replica_of(world, "grown", tmp_path / "replica")
    # the same key signed another history (`other` forks `first`): refused
    assert _size(world.pub["other"]) != _size(world.pub["grown"])
    with static(world.pub["other"]) as url:
        _refused(url, rep, world.vkey, capsys, "is not a prefix of the replica's")
    # a replica of `other` shown `grown`
    rep2 = _replica_of(world, "other", tmp_path / "replica2")
    with static(world.pub["grown"]) as url:
        _refused(url, rep2, world.vkey, capsys, "does not extend the replica's")
    # a server showing an older, consistent checkpoint: nothing changes, exit 0
    with static(world.pub["first"]) as url:
        before = _snapshot(rep)
        assert _mirror(url, rep, world.vkey) == 0
        assert "older (consistent)" in capsys.readouterr().out
        assert _snapshot(rep) == before


def test_checkpoint_under_another_key_is_refused(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = _replica_of(world, "first", tmp_path / "replica")
    pub = tmp_path / "lying"
    shutil.copytree(world.pub["grown"], pub)
    forger = note.Signer.generate("example.com/tiles")
    text = note.parse_note((pub / "checkpoint").read_bytes()).text
    (pub / "checkpoint").write_bytes(note.sign_note(text, [forger]))
    with static(pub) as url:
        _refused(url, rep, world.vkey, capsys, "the served checkpoint")
    # and a replica folder of another log (its checkpoint under another key): usage error
    other = note.Signer.generate("example.com/other")
    with static(world.pub["grown"]) as url:
        assert main(["mirror", url, "--out", str(rep), "--verifier-key",
                     other.verifier().to_string()]) == 1
    assert "the served checkpoint" in capsys.readouterr().err


def test_serve_dir_serves_a_replica_that_mirrors_and_proves(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hashtrail serve --dir` over a replica: a mirror of the mirror is byte-identical,
    verify-proof --url works against it, and only the log's paths are served."""
    rep = tmp_path / "replica"
    with static(world.pub["grown"]) as url:
        assert _mirror(url, rep, world.vkey, "--words") == 0
    (tmp_path / "secret.txt").write_text("not the log's")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashtrail", "serve", "--dir", str(rep), "--listen",
         "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"serving {rep} as tlog-tiles at http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        capsys.readouterr()
        assert _mirror(url, tmp_path / "replica2", world.vkey, "--words") == 0
        assert _files(tmp_path / "replica2") == _files(rep)
        assert main(["ledger", "verify-proof", "--url", url, "--device", world.signed,
                     "--seq", "7", "--verifier-key", world.vkey]) == 0
        for path, status in (("/checkpoint", 200), ("/tile/0/000", 200),
                             ("/../secret.txt", 404), ("/tile/0/../../../secret.txt", 404),
                             ("/%2e%2e/secret.txt", 404), ("/tile/0/0000", 404),
                             ("/tile/0/999", 404), ("/.mirror-staging-x", 404)):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            c.close()
            assert r.status == status, (path, r.status)
            assert b"not the log's" not in body
            if path == "/tile/0/000":
                assert r.getheader("Cache-Control") == "public, max-age=31536000, immutable"
                assert body == (rep / "tile/0/000").read_bytes()
    finally:
        interrupt(proc)


def test_a_checkpoint_claiming_a_huge_tree_costs_one_failed_fetch(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A signed checkpoint for 2^62 leaves the server cannot back: the mirror stops at
    the first tile it cannot fetch (tiles are requested lazily), nothing changes."""
    rep = _replica_of(world, "first", tmp_path / "replica")
    signer = read_signer(f"{world.grown}.key", "the ledger key")
    pub = tmp_path / "huge"
    shutil.copytree(world.pub["first"], pub)
    text = note.parse_note((pub / "checkpoint").read_bytes()).text.split("\n")
    text[1] = str(1 << 62)
    (pub / "checkpoint").write_bytes(note.sign_note("\n".join(text), [signer]))
    before = _snapshot(rep)
    with static(pub) as url:
        t0 = time.monotonic()
        assert _mirror(url, rep, world.vkey) == 2
        assert time.monotonic() - t0 < 20
    assert "HTTP 404" in capsys.readouterr().err
    assert _snapshot(rep) == before


def test_words_a_server_lacked_are_asked_for_again(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server without device words (a folder published without --words): the replica
    lists the leaves it has no word for, and the next run gets them from one that has."""
    bare = tmp_path / "bare"
    shutil.copytree(world.pub["first"], bare)
    shutil.rmtree(bare / "hashtrail")
    rep = tmp_path / "replica"
    size1, size2 = _size(world.pub["first"]), _size(world.pub["grown"])
    with static(bare) as url:
        assert _mirror(url, rep, world.vkey, "--words", "--json") == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["words"], r["words_missing"]) == (0, size1)
    assert json.loads((rep / "hashtrail" / "words-missing.json").read_text()) == \
        list(range(size1))
    with static(world.pub["grown"]) as url:
        assert _mirror(url, rep, world.vkey, "--words", "--json") == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["words"], r["words_missing"]) == (size2, 0)
    assert json.loads((rep / "hashtrail" / "words-missing.json").read_text()) == []
    got, want = _files(rep), _files(world.pub["grown"])
    extra = {k for k in got if k not in want}
    assert "hashtrail/words-missing.json" in extra
    assert all(".p/" in k for k in extra - {"hashtrail/words-missing.json"})
    assert {k: v for k, v in got.items() if k not in extra} == want
