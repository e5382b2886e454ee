"""keys.der_signature against the library's encoder, and DeviceKey.signed's range check.

Why: DeviceKey.signed builds the DER signature by hand and checks r, s as bytes (a
per-entry-signed reconcile calls it once per entry); a wrong length byte or a missing
0x00 would refuse good signatures, a loose range check would hand OpenSSL values the
old integer check refused."""

from __future__ import annotations

import hashlib
import random

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from hashtrail.formats.keys import DeviceKey, N, der_signature


def _b32(x: int) -> bytes:
    return x.to_bytes(32, "big")


def test_der_signature_equals_the_library_encoder() -> None:
    rnd = random.Random(12)
    values = [1, 2, 0x7F, 0x80, 0xFF, 0x100, N - 1, N - 2, (1 << 255) - 1, 1 << 255,
              (1 << 248) - 1, 1 << 247, 1 << 248]
    values += [rnd.randrange(1, N) for _ in range(300)]
    values += [rnd.randrange(1, 1 << rnd.randrange(1, 256)) for _ in range(300)]
    for r in values:
        s = values[rnd.randrange(len(values))]
        assert der_signature(_b32(r), _b32(s)) == encode_dss_signature(r, s), (r, s)


def test_signed_accepts_real_signatures_and_refuses_out_of_range() -> None:
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)
    key = DeviceKey(pub)
    algo = ec.ECDSA(Prehashed(hashes.SHA256()))
    for i in range(200):      # (some r or s below 2^248: leading zero bytes dropped)
        d = hashlib.sha256(i.to_bytes(4, "big")).digest()
        r, s = decode_dss_signature(priv.sign(d, algo))
        sig = _b32(r) + _b32(s)
        assert key.signed(d, sig)
        assert not key.signed(hashlib.sha256(d).digest(), sig)
        # s and n - s both verify in ECDSA; s + n (when it fits) must not be taken
        assert key.signed(d, _b32(r) + _b32(N - s))
        if s + N < 1 << 256:
            assert not key.signed(d, _b32(r) + _b32(s + N))
        if r + N < 1 << 256:
            assert not key.signed(d, _b32(r + N) + _b32(s))
    d = hashlib.sha256(b"x").digest()
    for bad in (bytes(64), _b32(0) + _b32(1), _b32(1) + _b32(0), _b32(N) + _b32(1),
                _b32(1) + _b32(N), b"\xff" * 64, bytes(63), bytes(65)):
        assert not key.signed(d, bad)


def test_signed_all_gives_the_verdicts_of_signed() -> None:
    """The table's DER heads and the first-byte range check of signed_all against
    `signed`, signature by signature: halves with and without their top bit set,
    leading zero bytes, 0xff first bytes (n - 1 and above), good and bad ones."""
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)
    key = DeviceKey(pub)
    algo = ec.ECDSA(Prehashed(hashes.SHA256()))
    rnd = random.Random(7)
    digests: list[bytes] = []
    sigs: list[bytes] = []
    for i in range(300):
        d = hashlib.sha256(i.to_bytes(4, "big")).digest()
        r, s = decode_dss_signature(priv.sign(d, algo))
        for sig in (_b32(r) + _b32(s), _b32(r) + _b32(N - s), _b32(r ^ 1) + _b32(s)):
            digests.append(d)
            sigs.append(sig)
    d = hashlib.sha256(b"x").digest()
    for r in (0, 1, 0x7F << 248, 0x80 << 248, (0xFF << 248) - 1, N - 1, N, (1 << 256) - 1,
              rnd.randrange(1, 1 << 200)):
        for s in (1, 0x80 << 248, N - 1, N, rnd.randrange(1, N)):
            digests.append(d)
            sigs.append(_b32(r) + _b32(s))
    got = key.signed_all(digests, b"".join(sigs))
    assert list(got) == [int(key.signed(h, sg)) for h, sg in zip(digests, sigs, strict=True)]
    assert sum(got) >= 600          # (the good ones and their n - s twins verify)
