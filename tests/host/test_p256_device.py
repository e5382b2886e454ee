"""Device p256 output checked on the host by OpenSSL (`cryptography`) and python-ecdsa.

Why: the device tests compare the device with vectors; this test goes the other way.
The real firmware runs on the MicroPython VM (compiled .mpy, esp32 heap budget) over
host-chosen keys and digests, and what it prints is verified here: public keys equal
OpenSSL's, signatures equal python-ecdsa's RFC 6979 signatures byte for byte and
verify with OpenSSL, and device `verify` agrees with OpenSSL on good, tampered and
foreign (random-nonce) signatures. Also runs the firmware built with mpy-cross -O3,
which strips `assert`: verification must not depend on one.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hashtrail.device.boards import load_board
from hashtrail.device.devrun import DeviceRunError, run_snippet

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))

from vectors_p256 import (  # noqa: E402
    EDGE_SCALARS,
    N,
    cryptography_verifies,
    reference_sign,
)

HEAP = load_board("esp32").heap_budget

_SIGN = r"""
import binascii
from hashtrail import p256
for line in open("cases.txt"):
    d, h = line.split()
    h = binascii.unhexlify(h)
    d = int(d, 16)
    print(binascii.hexlify(p256.public_key(d)).decode(),
          binascii.hexlify(p256.sign(d, h)).decode())
"""

_VERIFY = r"""
import binascii
from hashtrail import p256
for line in open("cases.txt"):
    pub, h, sig = [binascii.unhexlify(x) for x in line.split()]
    print(1 if p256.verify(pub, h, sig) else 0)
"""


def _cases(count: int) -> list[tuple[int, bytes]]:
    rnd = random.Random(256)
    out = [(d, hashlib.sha256(b"edge %d" % d).digest()) for d in EDGE_SCALARS]
    while len(out) < count:
        out.append((rnd.randrange(1, N), rnd.randbytes(32)))
    return out


def test_device_keys_and_signatures_check_with_openssl(tmp_path: Path) -> None:
    cases = _cases(120)
    (tmp_path / "cases.txt").write_text("".join(f"{d:x} {h.hex()}\n" for d, h in cases))
    lines = run_snippet(_SIGN, heap=HEAP, cwd=tmp_path).split()
    assert len(lines) == 2 * len(cases)
    for i, (d, digest) in enumerate(cases):
        pub, sig = bytes.fromhex(lines[2 * i]), bytes.fromhex(lines[2 * i + 1])
        ossl_pub = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint)
        assert pub == ossl_pub, f"public key of d={d:x}"
        assert (pub, sig) == reference_sign(d, digest), f"python-ecdsa differs, d={d:x}"
        assert cryptography_verifies(pub, digest, sig), f"OpenSSL rejects d={d:x}"


def test_device_verify_agrees_with_openssl(tmp_path: Path) -> None:
    rnd = random.Random(257)
    rows: list[tuple[bytes, bytes, bytes]] = []
    for _ in range(40):
        key = ec.derive_private_key(rnd.randrange(1, N), ec.SECP256R1())
        msg = rnd.randbytes(20)
        r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        pub = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        digest = hashlib.sha256(msg).digest()
        rows.append((pub, digest, sig))
        bad = bytearray(sig)
        bad[rnd.randrange(64)] ^= 1 << rnd.randrange(8)
        rows.append((pub, digest, bytes(bad)))
        rows.append((pub, hashlib.sha256(digest).digest(), sig))
    (tmp_path / "cases.txt").write_text(
        "".join(f"{p.hex()} {d.hex()} {s.hex()}\n" for p, d, s in rows))
    got = run_snippet(_VERIFY, heap=HEAP, cwd=tmp_path).split()
    assert got == ["1" if cryptography_verifies(*row) else "0" for row in rows]
    assert got.count("1") == 40


def test_firmware_built_with_O3_still_rejects(tmp_path: Path) -> None:
    """-O3 strips asserts; p256 must raise/return explicitly, so results are the same."""
    import subprocess

    out = tmp_path / "o3"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_mpy.py"), "--board", "unix",
                    "-O", "3", "--out", str(out)], check=True, capture_output=True)
    code = r"""
import hashlib
from hashtrail import p256
h = hashlib.sha256(b"o3").digest()
pub = p256.public_key(5)
sig = p256.sign(5, h)
bad = sig[:63] + bytes([sig[63] ^ 1])
print(p256.__file__, p256.verify(pub, h, sig), p256.verify(pub, h, bad),
      p256.verify(pub, h, bytes(64)), p256.verify(b"\x04" + bytes(64), h, sig))
try:
    p256.sign(0, h)
    print("no error")
except ValueError:
    print("ValueError")
"""
    import os

    env_path = out / "lib"
    res = subprocess.run([_micropython(), "-X", f"heapsize={HEAP}", "-c", code],
                         env=dict(os.environ, MICROPYPATH=str(env_path)),
                         capture_output=True, text=True, timeout=120)
    lines = res.stdout.split("\n")
    assert lines[0].endswith(".mpy True False False False"), res.stdout + res.stderr
    assert lines[1] == "ValueError"


def _micropython() -> str:
    from hashtrail.paths import venv_tool

    return venv_tool("micropython")


def test_devrun_reports_device_exceptions() -> None:
    with pytest.raises(DeviceRunError) as e:
        run_snippet("from hashtrail import p256\np256.public_key(0)\n", heap=HEAP)
    assert "private key out of range" in str(e.value)
