"""verify's rebuilt tree (hashtrail.ledger.rebuilt_tree) on disk equals the in-memory
tree hash for hash: every node, the root at every size, the first index of a leaf,
across the point where a level's tail goes to its file; and verify's peak memory does
not grow with the tree (the reason it is on disk, issue 12)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hashtrail.formats import merkle
from hashtrail.ledger import rebuilt_tree
from hashtrail.ledger.rebuilt_tree import RebuiltTree


def _leaf(i: int) -> bytes:
    return merkle.leaf_hash(hashlib.sha256(i.to_bytes(4, "big")).digest())


@pytest.mark.parametrize("buf", [32, 96, 1 << 16])
def test_the_same_tree_as_in_memory(buf: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rebuilt_tree, "_BUF", buf)     # 1 and 3 hashes a file write
    monkeypatch.setattr(rebuilt_tree, "_READ", 64)     # and 2 hashes a read
    mem = merkle.MemoryTree()
    leaves = [_leaf(i % 45) for i in range(300)]       # repeats: first_index
    with RebuiltTree() as disk:
        for i, h in enumerate(leaves):
            mem.append(h)
            disk.append(h)
            assert disk.size == mem.size == i + 1
            assert disk.root() == mem.root()
        for size in range(1, 301):
            assert disk.root(size) == mem.root(size)
        want = [(lv, ix, h) for lv, hs in enumerate(mem.levels) for ix, h in enumerate(hs)]
        assert list(disk.nodes()) == want
        assert list(disk.nodes(1)) == [n for n in want if n[0] >= 1]
        firsts = disk.first_index({_leaf(3), _leaf(44), _leaf(999)})
        assert firsts == {_leaf(3): 3, _leaf(44): 44}
        if buf < 1 << 16:
            assert disk.levels[0].fd is not None and disk.levels[0].flushed > 0


def test_no_file_is_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files are unlinked as they are made: a killed verify leaves nothing."""
    monkeypatch.setattr(rebuilt_tree, "_BUF", 32)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(rebuilt_tree.tempfile, "tempdir", None)
    with RebuiltTree() as t:
        for i in range(50):
            t.append(_leaf(i))
        assert t.levels[0].fd is not None
        assert os.listdir(tmp_path) == []
    assert os.listdir(tmp_path) == []


def test_memory_does_not_grow_with_the_tree() -> None:
    """50,000 leaves: 3.2 MB of hashes held in memory before; now each level's tail."""
    import tracemalloc
    leaves = [_leaf(i) for i in range(50_000)]
    tracemalloc.start()
    try:
        with RebuiltTree() as t:
            for h in leaves:
                t.append(h)
            root = t.root()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    mem = merkle.MemoryTree()
    for h in leaves:
        mem.append(h)
    assert root == mem.root()
    assert peak < 1_000_000, peak
