"""formats/keys.parse_key_file: the device key file as a reader of the flash sees it.

Why: tests and the attack suite read `/ht/key` off powered-off images through this one
reader; it must take the documented bytes and refuse anything else rather than hand a
wrong key to a test that then proves nothing.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hashtrail.errors import FormatError
from hashtrail.formats.keys import KeyFile, N, parse_key_file

D = 0x1F2E3D4C5B6A79880A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E4F50617
PUB = ec.derive_private_key(D, ec.SECP256R1()).public_key().public_bytes(
    Encoding.X962, PublicFormat.UncompressedPoint)


def key_file(d: int = D, pub: bytes = PUB, magic: bytes = b"HTK1") -> bytes:
    body = magic + d.to_bytes(32, "big") + pub          # docs/FORMATS.md "Device files"
    return body + struct.pack("<I", zlib.crc32(body))


def test_the_documented_bytes_give_the_key() -> None:
    assert parse_key_file(key_file()) == KeyFile(D, PUB)


@pytest.mark.parametrize("raw", [
    key_file()[:-1],
    key_file() + b"\x00",
    key_file(magic=b"HTK2"),
    key_file()[:-4] + bytes(4),                                   # CRC wrong
    key_file(d=0),
    key_file(d=N),
    key_file(pub=PUB[:-1] + bytes([PUB[-1] ^ 1])),                # not on the curve
])
def test_anything_else_is_refused(raw: bytes) -> None:
    with pytest.raises(FormatError):
        parse_key_file(raw)
