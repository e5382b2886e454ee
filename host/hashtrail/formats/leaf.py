"""Ledger leaves (docs/LEDGER.md "Leaf bytes"): one accepted entry as the Merkle log holds it.

    leaf = "HTL1" || device id (16) || seq (u64 BE) || SHA-256(entry) (32) || entry

Why a module of its own: reconcile writes leaves, `verify --ledger` rebuilds them from
the ledger's rows, and a proof verifier reads one handed over by whoever sent the
proof; all three must agree on one layout. The entry bytes are kept exactly as the
device wrote them; the entry hash lets a reader check them without decoding.
"""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

from hashtrail.errors import FormatError

LEAF_TAG = b"HTL1"
_SEQ = struct.Struct(">Q")
HEAD = len(LEAF_TAG) + 16 + _SEQ.size + 32     # everything before the entry bytes


class Leaf(NamedTuple):
    device_id: str      # 32 lower-case hex characters, as every tool prints it
    seq: int
    entry_hash: bytes   # SHA-256 of `entry`, checked by parse_leaf
    entry: bytes


def leaf_prefix(device_id: str) -> bytes:
    """The leaf bytes every entry of one device starts with: "HTL1" || device id."""
    return LEAF_TAG + bytes.fromhex(device_id)


def leaf_bytes(device_id: str, seq: int, entry: bytes) -> bytes:
    return leaf_prefix(device_id) + _SEQ.pack(seq) + hashlib.sha256(entry).digest() + entry


def leaf_hashes(device_id: str, entries: list[tuple[int, bytes, bytes]]) -> list[bytes]:
    """The Merkle leaf hash (merkle.leaf_hash: SHA-256 of 0x00 || leaf bytes) of each of
    one device's (seq, entry hash, entry), the entry hash already known.

    Why here: reconcile and its bundle reader hash a leaf per accepted entry, without
    building `leaf_bytes` (which hashes the entry again) and calling leaf_hash on it;
    this keeps that layout in the one module that defines it."""
    pre, sha256, seq = b"\x00" + leaf_prefix(device_id), hashlib.sha256, _SEQ.pack
    return [sha256(pre + seq(s) + h + e).digest() for s, h, e in entries]


def parse_leaf(leaf: bytes) -> Leaf:
    """The parts of a leaf; FormatError unless it has the tag, a non-empty entry and the
    SHA-256 of that entry."""
    leaf = bytes(leaf)
    if len(leaf) <= HEAD or leaf[:4] != LEAF_TAG:
        raise FormatError("not a hashtrail ledger leaf")
    entry = leaf[HEAD:]
    h = hashlib.sha256(entry).digest()
    if h != leaf[HEAD - 32:HEAD]:
        raise FormatError("leaf entry hash is not SHA-256 of its entry bytes")
    return Leaf(leaf[4:20].hex(), _SEQ.unpack_from(leaf, 20)[0], h, entry)
