"""RFC 9162 Merkle tree math: hashes, inclusion and consistency proofs. Pure, no I/O.

Why this shape: the ledger keeps one hash per complete subtree (like Go's tlog "stored
hashes"; a leaf's hash it reads from the leaf's own row), so a proof at a million leaves
reads O(log n) rows. The algorithms here never
touch storage: they read hashes through a callable `get(level, index) -> bytes`, the hash
of the complete subtree over leaves [index * 2**level, (index + 1) * 2**level). Tests
hand them a list (`MemoryTree`); the ledger hands them an SQLite lookup.

Generation follows RFC 9162 §2.1.3.1 (PATH) and §2.1.4.1 (SUBPROOF); checking follows
the verification algorithms of §2.1.3.2 and §2.1.4.2 literally, and fails closed:
leftover hashes, too few hashes, wrong lengths or sizes raise `VerificationError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from hashtrail.errors import VerificationError

HASH_SIZE = 32
GetNode = Callable[[int, int], bytes]
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def appended_nodes(first: int, leaves: Iterable[bytes], node: GetNode, *,
                   lowest: int = 0, hashed: bool = False) -> list[tuple[int, int, bytes]]:
    """(level, index, hash) of every complete subtree that appending `leaves` to a tree
    of `first` leaves makes, in order; `node(level, index)` reads an older one. Levels
    below `lowest` are left out of the list (a ledger keeps none of levels 0 and 1: it
    computes them from its entries). `hashed`: `leaves` are leaf hashes (leaf_hash),
    not leaf bytes.

    Why not leaf_hash / node_hash per node: this runs once or twice per entry a ledger
    accepts, so the hashing is inlined. A level's nodes complete in index order, so the
    left sibling of (level, i) is that level's newest node: from this batch, or (at most
    once per level) from before it, through `node`."""
    lefts: dict[int, bytes] = {}      # level -> its newest node, awaiting a right sibling
    rows: list[tuple[int, int, bytes]] = []
    add, sha256 = rows.append, hashlib.sha256
    for index, leaf in enumerate(leaves, first):
        h = leaf if hashed else sha256(b"\x00" + leaf).digest()
        if not lowest:
            add((0, index, h))
        level, i = 0, index
        while i & 1:
            left = lefts.pop(level, None)
            if left is None:
                left = node(level, i - 1)
            h = sha256(b"\x01" + left + h).digest()
            level, i = level + 1, i >> 1
            if level >= lowest:
                add((level, i, h))
        lefts[level] = h
    return rows


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def range_hash(get: GetNode, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) from stored complete-subtree hashes: O(log n) reads."""
    n = hi - lo
    if n <= 0:
        raise ValueError("empty range")
    if n & (n - 1) == 0 and lo % n == 0:
        return get(n.bit_length() - 1, lo // n)
    k = _split(n)
    return node_hash(range_hash(get, lo, lo + k), range_hash(get, lo + k, hi))


def root(get: GetNode, size: int) -> bytes:
    return EMPTY_ROOT if size == 0 else range_hash(get, 0, size)


def new_nodes(get: GetNode, index: int, leaf_h: bytes) -> list[tuple[int, int, bytes]]:
    """The complete-subtree hashes that appending leaf number `index` creates.

    Returns (level, index, hash) triples, starting with the leaf hash itself; `get`
    is only asked for left siblings, which are already stored.
    """
    out = [(0, index, leaf_h)]
    level, i, h = 0, index, leaf_h
    while i & 1:
        h = node_hash(get(level, i - 1), h)
        level, i = level + 1, i >> 1
        out.append((level, i, h))
    return out


# -- inclusion ------------------------------------------------------------------------


def prove_inclusion(get: GetNode, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1."""
    if not 0 <= index < size:
        raise VerificationError(f"leaf {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:   # iterative PATH: siblings collected root-down, reversed at the end
        k = _split(hi - lo)
        if index < lo + k:
            proof.append(range_hash(get, lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(get, lo, lo + k))
            lo = lo + k
    proof.reverse()
    return proof


def check_inclusion(leaf_h: bytes, index: int, size: int, root_h: bytes,
                    proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.3.2; raises VerificationError unless the proof holds exactly."""
    _check_hashes([leaf_h, root_h, *proof])
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf_h
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof has leftover hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError("inclusion proof is too short")
    if r != root_h:
        raise VerificationError("inclusion proof does not lead to the root hash")


# -- consistency ----------------------------------------------------------------------


def prove_consistency(get: GetNode, old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) = SUBPROOF(old, D[0:new], true) of RFC 9162 §2.1.4.1."""
    if not 0 < old <= new:
        raise VerificationError(f"no consistency proof from size {old} to size {new}")
    proof: list[bytes] = []
    m, lo, hi, complete = old, 0, new, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(range_hash(get, lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(get, lo, lo + k))
            m, lo, complete = m - k, lo + k, False
    if not complete:
        proof.append(range_hash(get, lo, hi))
    proof.reverse()
    return proof


def check_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                      proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises VerificationError unless the proof holds exactly."""
    _check_hashes([old_root, new_root, *proof])
    if not 0 < old <= new:
        raise VerificationError(f"no consistency from size {old} to size {new}")
    if old == new:
        if proof:
            raise VerificationError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise VerificationError("same tree size, different root hashes")
        return
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fr, sr = consistency_roots(old, new, path)
    if fr != old_root or sr != new_root:
        raise VerificationError("consistency proof does not match the two root hashes")


def full_consistency_path(get: GetNode, old: int, new: int) -> list[bytes]:
    """prove_consistency's path, led by the old tree's root when old is a power of two
    (RFC 9162 leaves that node out: the verifier is meant to supply the old root)."""
    lead = [root(get, old)] if old & (old - 1) == 0 else []
    return lead + prove_consistency(get, old, new)


def consistency_roots(old: int, new: int, path: Sequence[bytes]) -> tuple[bytes, bytes]:
    """The (old root, new root) a full consistency path (see full_consistency_path)
    computes, 0 < old < new. A path that yields the signed new root pins the old tree
    (collision resistance): an old root other than the one signed for size `old`
    proves the two roots inconsistent."""
    _check_hashes(path)
    if not 0 < old < new:
        raise VerificationError(f"no consistency path from size {old} to size {new}")
    if not path:
        raise VerificationError("consistency proof is empty")
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof has leftover hashes")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    return fr, sr


def _check_hashes(hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise VerificationError("a proof hash is not 32 bytes")


class MemoryTree:
    """Complete-subtree hashes kept in lists: for tests, evidence checks and bulk builds."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = []

    def get(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    @property
    def size(self) -> int:
        return len(self.levels[0]) if self.levels else 0

    def append(self, leaf_h: bytes) -> list[tuple[int, int, bytes]]:
        nodes = new_nodes(self.get, self.size, leaf_h)
        for level, index, h in nodes:
            if level == len(self.levels):
                self.levels.append([])
            if index != len(self.levels[level]):
                raise AssertionError("nodes appended out of order")
            self.levels[level].append(h)
        return nodes

    def root(self, size: int | None = None) -> bytes:
        return root(self.get, self.size if size is None else size)
