"""The Merkle tree `verify --ledger` rebuilds from the entries rows, kept on disk.

Why on disk: verify compares every stored node with the rebuilt tree, level by level,
and the root at every signed checkpoint's size, so it needs every complete-subtree
hash, 64 bytes a leaf in all. Held in memory (one bytearray a level, as before) that was
64 MB at 10^6 leaves and grew with the ledger; issue 12 asks verify's peak memory to be
flat in N. Each level is appended to a temporary file (unlinked at once: nothing is left
behind, even by a killed process) through a small tail buffer, and read back with pread:
the hashes needed while appending (the left sibling, one per level) are kept apart, and
the rest are read in order (nodes, first_index) or a few at a time (a root: O(log n)).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from hashtrail.formats import merkle

_HASH = 32
_BUF = 1 << 16          # bytes a level holds in memory before they go to its file
_READ = 1 << 20         # bytes read at a time when streaming a level


class _Level:
    """One level's hashes: the first `flushed` in a temporary file, the rest in `buf`."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.flushed = 0
        self.buf = bytearray()
        self.last = b""

    @property
    def count(self) -> int:
        return self.flushed + len(self.buf) // _HASH

    def append(self, h: bytes) -> None:
        self.buf += h
        self.last = h
        if len(self.buf) >= _BUF:
            if self.fd is None:
                fd, path = tempfile.mkstemp(prefix="hashtrail-verify-")
                os.unlink(path)
                self.fd = fd
            os.pwrite(self.fd, self.buf, self.flushed * _HASH)
            self.flushed += len(self.buf) // _HASH
            self.buf = bytearray()

    def get(self, index: int) -> bytes:
        if index >= self.flushed:
            off = (index - self.flushed) * _HASH
            return bytes(self.buf[off:off + _HASH])
        assert self.fd is not None
        return os.pread(self.fd, _HASH, index * _HASH)

    def chunks(self) -> Iterator[bytes]:
        """The level's hashes in order, a chunk at a time (whole hashes)."""
        off, end = 0, self.flushed * _HASH
        while off < end:
            assert self.fd is not None
            chunk = os.pread(self.fd, min(_READ, end - off), off)
            if not chunk:
                raise OSError("a temporary file of verify's rebuilt tree came back short")
            off += len(chunk)
            yield chunk
        if self.buf:
            yield bytes(self.buf)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RebuiltTree:
    """merkle.MemoryTree's complete-subtree hashes (same `get`, `root`), appended leaf by
    leaf, in bounded memory. A context manager: closing drops the files."""

    def __init__(self) -> None:
        self.levels: list[_Level] = []

    def __enter__(self) -> RebuiltTree:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for lv in self.levels:
            lv.close()

    @property
    def size(self) -> int:
        return self.levels[0].count if self.levels else 0

    def get(self, level: int, index: int) -> bytes:
        lv = self.levels[level]
        if index == lv.count - 1:
            return lv.last
        return lv.get(index)

    def append(self, leaf_h: bytes) -> None:
        for level, index, h in merkle.new_nodes(self.get, self.size, leaf_h):
            if level == len(self.levels):
                self.levels.append(_Level())
            if index != self.levels[level].count:
                raise AssertionError("nodes appended out of order")
            self.levels[level].append(h)

    def nodes(self, lowest: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """(level, index, hash), by level then index, from level `lowest` up."""
        for lv in range(lowest, len(self.levels)):
            for ix, h in self._level(lv):
                yield lv, ix, h

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.get, self.size if size is None else size)

    def first_index(self, wanted: set[bytes]) -> dict[bytes, int]:
        """The first leaf index of each hash in `wanted` (that the tree holds)."""
        out: dict[bytes, int] = {}
        if wanted and self.levels:
            for i, h in self._level(0):
                if h in wanted and h not in out:
                    out[h] = i
        return out

    def _level(self, lv: int) -> Iterator[tuple[int, bytes]]:
        ix = 0
        for chunk in self.levels[lv].chunks():
            for off in range(0, len(chunk), _HASH):
                yield ix, chunk[off:off + _HASH]
                ix += 1
