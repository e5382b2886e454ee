"""`hashtrail ledger publish`: the ledger as C2SP tlog-tiles in a folder
(hashtrail.ledger.tiles). Tile paths per the spec, tile contents re-derived here from
the entry bundles alone (leaf hashes, subtree hashes, the signed root), and a folder
that grows keeps its full tiles byte-identical. Real reconciles into real SQLite files
(tests/e2e/tileskit.py)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import merkle, note
from hashtrail.formats.leaf import leaf_bytes
from hashtrail.ledger import tiles
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.proof import build_inclusion_proof
from hashtrail.ledger.tiles import TileError, TileRef
from tileskit import TileLedger, make_ledger


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> TileLedger:
    """70k leaves: full and partial tiles at levels 0 and 1, a partial at level 2."""
    return make_ledger(tmp_path_factory.mktemp("tiles") / "big.db", 2000, 68000)


# -- paths --------------------------------------------------------------------------------

def test_index_paths_are_the_specs() -> None:
    assert tiles.index_path(1234067) == "x001/x234/067"
    assert tiles.index_path(0) == "000"
    assert tiles.index_path(1000) == "x001/000"
    assert TileRef(0, 1234067).path() == "tile/0/x001/x234/067"
    assert TileRef(None, 5, 7).path() == "tile/entries/005.p/7"
    assert TileRef(63, 2**64).path() == "tile/63/x018/x446/x744/x073/x709/x551/616"
    for ref in (TileRef(0, 0), TileRef(1, 999, 255), TileRef(None, 10**12, 1),
                TileRef(63, 2**64)):
        assert tiles.parse_path(ref.path()) == ref
    assert tiles.parse_path("checkpoint") is None
    assert tiles.parse_path("hashtrail/word/" + "ab" * 16 + "/x001/000") == \
        tiles.WordRef("ab" * 16, 1000)


@pytest.mark.parametrize("bad", [
    "tile/0/1234", "tile/0/01", "tile/0/x000/001", "tile/0/001/x234", "tile/0/x1/234",
    "tile/00/000", "tile/64/000", "tile/-1/000", "tile/0/-01", "tile/0/000.p/0",
    "tile/0/000.p/256", "tile/0/000.p/07", "tile/0/000.p/", "tile/0/000.p", "tile/0/000/",
    "tile/0/../000", "../checkpoint", "tile/entries", "tile/data/000", "tile//000",
    "tile/0/000?x", "Checkpoint", "checkpoint/", "tile/0/" + "x999/" * 30 + "000",
    "tile/0/\u0660\u0660\u0660", "hashtrail/word/" + "AB" * 16 + "/000",
    "hashtrail/word/ab/000", "",
])
def test_other_spellings_name_nothing(bad: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_path(bad)


def test_a_trees_tiles_are_the_specs_example() -> None:
    """tlog-tiles: size 70,000 is 273 full level-0 tiles, a partial one of width 112,
    one full level-1 tile, a partial of width 17 and a partial level-2 tile of width 1
    (and an entry bundle beside each level-0 tile); size 256 is one full tile and a
    level-1 partial of width 1."""
    refs = list(tiles.tiles_of(70_000))
    hashes = [r for r in refs if r.level is not None]
    assert sum(1 for r in hashes if r.level == 0 and not r.partial) == 273
    assert [r for r in hashes if r.partial] == [TileRef(0, 273, 112), TileRef(1, 1, 17),
                                                 TileRef(2, 0, 1)]
    assert TileRef(1, 0) in hashes and len(hashes) == 277
    assert [r for r in refs if r.level is None] == [
        TileRef(None, n) for n in range(273)] + [TileRef(None, 273, 112)]
    assert list(tiles.tiles_of(256)) == [TileRef(0, 0), TileRef(None, 0), TileRef(1, 0, 1)]
    assert list(tiles.tiles_of(0)) == []


# -- publish ------------------------------------------------------------------------------

def _publish(led: Path, out: Path) -> None:
    assert main(["ledger", "publish", "--ledger", str(led), "--out", str(out), "--json"]) == 0


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file()}


def test_published_tiles_rebuild_the_signed_root(big: TileLedger, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pub"
    _publish(big.path, out)
    res = json.loads(capsys.readouterr().out)
    files = _files(out)
    cp, _ = note.open_checkpoint(files["checkpoint"],
                                 [note.Verifier.from_string(big.verifier_key)])
    size = cp.size
    assert res["size"] == size == 70_001 and res["kept"] == 0
    expect = {r.path() for r in tiles.tiles_of(size)} | {"checkpoint", tiles.REVOCATIONS}
    assert set(files) == expect
    # the leaves, from the entry bundles alone; every one a hashtrail leaf of an entry
    leaves: list[bytes] = []
    for n in range((size + 255) // 256):
        ref = tiles.tile_for(None, n, size)
        leaves += tiles.parse_bundle(files[ref.path()], ref.width)
    assert len(leaves) == size
    with Ledger.open(big.path) as led:
        for i in (0, 1, 255, 256, 40_000, size - 1):
            assert leaves[i] == led.leaf(i)
    d1 = big.signed
    assert leaves[0] == leaf_bytes(d1.id_hex, 0, d1.entries[0][1])
    # level 0 = leaf hashes; level 1 = MTH of each full level-0 tile; level 2 likewise
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(merkle.leaf_hash(leaf))
    for level in (0, 1, 2):
        stored = tree.levels[8 * level]
        count = size >> (8 * level)
        for n in range((count + 255) // 256):
            ref = tiles.tile_for(level, n, size)
            assert files[ref.path()] == b"".join(stored[n * 256:n * 256 + ref.width])
    # and the tiles alone (no leaves) give the checkpoint's root
    th = tiles.TileHashes(lambda r: files[r.path()], size)
    assert merkle.root(th.get, size) == cp.root == tree.root()
    for i in (0, 300, 65_535, 65_536, size - 1):
        merkle.check_inclusion(merkle.leaf_hash(leaves[i]), i, size, cp.root,
                               merkle.prove_inclusion(th.get, i, size))


def test_publish_again_keeps_full_tiles_and_follows_growth(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    tl = make_ledger(tmp_path / "grow.db", 300, 300)
    out = tmp_path / "pub"
    _publish(tl.path, out)
    first = _files(out)
    _publish(tl.path, out)
    res = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert _files(out) == first and res["kept"] == 4      # tile/0/00[01], tile/entries/00[01]
    old_cp = note.parse_checkpoint(note.parse_note(first["checkpoint"]).text)
    size = tl.grow(500, 400)
    _publish(tl.path, out)
    grown = _files(out)
    new_cp = note.parse_checkpoint(note.parse_note(grown["checkpoint"]).text)
    assert new_cp.size == size > old_cp.size
    for path, data in first.items():
        if ".p/" not in path and path != "checkpoint":
            assert grown[path] == data, path        # full tiles never change
    # the old partial tiles stay, and still prove the old tree: consistent growth
    old = tiles.TileHashes(lambda r: grown[r.path()], old_cp.size)
    new = tiles.TileHashes(lambda r: grown[r.path()], size)
    assert merkle.root(old.get, old_cp.size) == old_cp.root
    merkle.check_consistency(old_cp.size, size, old_cp.root, new_cp.root,
                             merkle.prove_consistency(new.get, old_cp.size, size))


def test_publish_words_are_the_proofs_device_part(tmp_path: Path) -> None:
    tl = make_ledger(tmp_path / "w.db", 20, 250)
    out = tmp_path / "pub"
    assert main(["ledger", "publish", "--ledger", str(tl.path), "--out", str(out),
                 "--words"]) == 0
    with Ledger.open(tl.path) as led:
        for d, seq in ((tl.signed, 7), (tl.unsigned, 150)):
            word = json.loads((out / tiles.word_path(d.id_hex, seq)).read_text())
            doc = build_inclusion_proof(led, d.id_hex, seq)
            assert word == {"format": tiles.WORD_FORMAT, **{
                k: doc[k] for k in ("leaf_index", "device", "enrollment",
                                    "device_signature")}}
            assert word["device"]["fingerprint"] == hashlib.sha256(d.pub).hexdigest()
        assert (out / tiles.word_path(tl.unsigned.id_hex, 199)).is_file()
        assert not (out / tiles.word_path(tl.unsigned.id_hex, 200)).exists()  # not accepted


def test_publish_refuses_a_file_as_folder_and_writes_nothing(
        big: TileLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"x")
    assert main(["ledger", "publish", "--ledger", str(big.path), "--out", str(f)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert f.read_bytes() == b"x" and sorted(tmp_path.iterdir()) == [f]



def test_a_cached_tile_is_served_without_the_ledger(tmp_path: Path) -> None:
    """The server's hot path: a tile served once is served again from memory by its
    path (no parse, no ledger read; tools/bench_serve.py), with the same bytes as a
    fresh read; past the cache limit the oldest go and are read again."""
    tl = make_ledger(tmp_path / "c.db", 300, 300)
    with Ledger.open(tl.path) as led:
        fresh = tiles.LedgerTiles(led, cache_bytes=0)
        src = tiles.LedgerTiles(led, cache_bytes=3 * 8192)
        paths = [r.path() for r in tiles.tiles_of(src.size)]
        first = {p: src.get(p) for p in paths}
        assert first == {p: fresh.get(p) for p in paths}
        cached = [p for p in paths if p in src._cache]
        assert cached and sum(len(src._cache[p]) for p in cached) <= 3 * 8192
    # the ledger is closed: what is cached is still served, what is not fails
    for p in cached:
        assert src.get(p) == first[p]
    with pytest.raises(sqlite3.ProgrammingError):           # the connection is closed
        src.get(next(p for p in paths if p not in src._cache))
