"""formats/leaf: the ledger leaf layout of docs/LEDGER.md, written and read by one module.

Why: reconcile writes leaves and the proof verifier reads leaves from strangers; the
bytes here are spelled out from the spec, so a change of the layout fails here first.
"""

from __future__ import annotations

import hashlib

import pytest
from hashtrail.errors import FormatError
from hashtrail.formats.leaf import Leaf, leaf_bytes, leaf_prefix, parse_leaf

DID = "00112233445566778899aabbccddeeff"
ENTRY = b"\xa9\x00\x01"


def test_layout_is_the_documented_one() -> None:
    leaf = leaf_bytes(DID, 258, ENTRY)
    assert leaf == (b"HTL1" + bytes.fromhex(DID) + bytes([0, 0, 0, 0, 0, 0, 1, 2])
                    + hashlib.sha256(ENTRY).digest() + ENTRY)
    assert leaf.startswith(leaf_prefix(DID))
    assert parse_leaf(leaf) == Leaf(DID, 258, hashlib.sha256(ENTRY).digest(), ENTRY)


@pytest.mark.parametrize("bad", [
    b"",
    leaf_bytes(DID, 1, ENTRY)[:60],                          # no entry bytes
    b"HTL2" + leaf_bytes(DID, 1, ENTRY)[4:],                # another log's tag
    leaf_bytes(DID, 1, ENTRY)[:-1] + b"\x02",               # entry not what its hash says
])
def test_malformed_leaves_are_refused(bad: bytes) -> None:
    with pytest.raises(FormatError):
        parse_leaf(bad)
