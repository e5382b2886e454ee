"""The comb table in firmware/lib/hashtrail/p256_table.py against OpenSSL (`cryptography`).

Why: every device signature and public key goes through this table; a wrong entry
would make some scalars sign wrongly. Each entry must be the public point of its
scalar sum(2^(32*j) for set bits j of idx), as OpenSSL computes it, and the committed
file must be exactly what tools/gen_p256_table.py generates.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import gen_p256_table  # noqa: E402


def _committed_table() -> bytes:
    tree = ast.parse(gen_p256_table.OUT.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMB":
            value = ast.literal_eval(node.value)
            assert isinstance(value, bytes)
            return value
    raise AssertionError("COMB not found")


def test_committed_table_is_generated() -> None:
    assert gen_p256_table.main(["--check"]) == 0


def test_every_entry_matches_openssl() -> None:
    table = _committed_table()
    assert len(table) == 255 * 64
    # The same bytes ship as p256_table.bin, which .mpy builds read from flash.
    assert gen_p256_table.OUT_BIN.read_bytes() == table
    for idx in range(1, 256):
        k = sum(1 << (32 * j) for j in range(8) if idx >> j & 1)
        pub = ec.derive_private_key(k, ec.SECP256R1()).public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint)
        off = (idx - 1) * 64
        assert table[off:off + 64] == pub[1:], f"comb entry {idx}"
