#!/usr/bin/env python3
"""Host chain-verification throughput, against a python-ecdsa verifier, in one run.

Why: the brief's target is a per-entry cost close to OpenSSL's raw ECDSA verify where
every entry is signed, close to SHA-256 + CBOR decode where only checkpoints are, and
at least 20x a python-ecdsa baseline. Both verifiers check the same records (framing
CRC, entry decode, link, signatures, checkpoint); the chain is made on the host in
the device's exact format (key, entries, COSE checkpoint), so it is fast to build.

    python tools/bench_verify.py [--entries 5000] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ecdsa import NIST256p, VerifyingKey
from ecdsa.util import sigdecode_string

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from hashtrail.chainverify import verify_chain  # noqa: E402
from hashtrail.checkpoint import sig_structure  # noqa: E402
from hashtrail.records import parse_records  # noqa: E402

_D = 0x3C3F7E1A2B4D5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E9


def _sign(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _record(magic: int, seq: int, body: bytes, sig: bytes | None) -> bytes:
    rec = struct.pack("<BBIH", magic, 1 if sig else 0, seq, len(body)) + body + (sig or b"")
    return rec + struct.pack("<I", zlib.crc32(rec))


def make_chain(n: int, signed: bool) -> tuple[bytes, bytes]:
    """(pub, segment bytes): n reading entries and one checkpoint over the last."""
    key = ec.derive_private_key(_D, ec.SECP256R1())
    pub = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    kid = hashlib.sha256(pub).digest()[:16]
    prev = hashlib.sha256(b"hashtrail/genesis/v1" + pub).digest()
    out = bytearray()
    for seq in range(n):
        if seq == 0:
            kind, body = 3, {1: pub}
        else:
            kind, body = 0, [{0: "temp", 1: "Cel", 2: 4.0 + (seq % 9) * 0.125},
                             {0: "humidity", 1: "%RH", 2: 55 + seq % 7},
                             {0: "vbat", 1: "V", 2: 3.7}]
        raw = cbor2.dumps({0: 1, 1: seq, 2: 1757600000 + seq * 60, 3: seq * 60000, 4: 1,
                           5: prev, 6: "0.1.0", 7: kind, 8: body}, canonical=True)
        prev = hashlib.sha256(raw).digest()
        out += _record(0xA7, seq, raw, _sign(key, prev) if signed else None)
    protected = cbor2.dumps({1: -7, 4: kid}, canonical=True)
    payload = cbor2.dumps({0: 1, 1: kid, 2: n - 1, 3: prev, 4: 1757600000, 5: 1},
                          canonical=True)
    sig = _sign(key, hashlib.sha256(sig_structure(protected, payload)).digest())
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig]))
    out += _record(0xC7, n - 1, cose, None)
    return pub, bytes(out)


def baseline_verify(pub: bytes, data: bytes) -> bool:
    """The same checks with python-ecdsa doing the signatures (pure Python)."""
    vk = VerifyingKey.from_string(pub, curve=NIST256p, hashfunc=hashlib.sha256)
    prev = hashlib.sha256(b"hashtrail/genesis/v1" + pub).digest()
    pos, seq, ok = 0, 0, True
    while pos < len(data):
        magic, flags, rseq, n = struct.unpack_from("<BBIH", data, pos)
        size = 8 + n + (64 if flags & 1 else 0) + 4
        if zlib.crc32(data[pos:pos + size - 4]) != struct.unpack_from("<I", data,
                                                                       pos + size - 4)[0]:
            return False
        body = data[pos + 8:pos + 8 + n]
        if magic == 0xA7:
            e = cbor2.loads(body)
            ok = ok and e[1] == seq == rseq and e[5] == prev
            prev = hashlib.sha256(body).digest()
            if flags & 1:
                ok = ok and vk.verify_digest(data[pos + 8 + n:pos + 8 + n + 64], prev,
                                             sigdecode=sigdecode_string)
            seq += 1
        else:
            tag = cbor2.loads(body)
            prot, _, payload, sig = tag.value
            ok = ok and cbor2.loads(payload)[3] == prev and vk.verify(
                sig, sig_structure(prot, payload), hashfunc=hashlib.sha256,
                sigdecode=sigdecode_string)
        pos += size
    return bool(ok)


def hashtrail_verify(pub: bytes, data: bytes) -> bool:
    recs, probs = parse_records(data, "bench")
    return verify_chain(pub, recs, probs).ok


def _rate(fn: Any, pub: bytes, data: bytes, n: int, min_time: float = 1.0) -> float:
    runs, t0 = 0, time.perf_counter()
    while True:
        if not fn(pub, data):
            raise SystemExit(f"{fn.__name__} rejected a valid chain")
        runs += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return runs * n / dt


def _raw_ops(n: int) -> dict[str, float]:
    """Reference costs: OpenSSL verify and SHA-256 + cbor2 decode of one entry."""
    key = ec.derive_private_key(_D, ec.SECP256R1())
    digest = hashlib.sha256(b"x").digest()
    der = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    pk = key.public_key()
    t0 = time.perf_counter()
    for _ in range(n):
        pk.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    verify = n / (time.perf_counter() - t0)
    body = cbor2.dumps({0: 1, 1: 5, 2: 1757600000, 3: 1, 4: 1, 5: digest, 6: "0.1.0", 7: 0,
                        8: [{0: "temp", 1: "Cel", 2: 4.5}]}, canonical=True)
    t0 = time.perf_counter()
    for _ in range(n * 10):
        hashlib.sha256(body).digest()
        cbor2.loads(body)
    return {"openssl_verify_per_s": verify,
            "sha256_cbor_decode_per_s": n * 10 / (time.perf_counter() - t0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=5000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    n = args.entries
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "entries": n, "reference": _raw_ops(2000)}
    for label, signed in (("checkpoint_signed", False), ("entry_signed", True)):
        pub, data = make_chain(n, signed)
        ours = _rate(hashtrail_verify, pub, data, n)
        base = _rate(baseline_verify, pub, data, n, min_time=0.5)
        result[label] = {"hashtrail_entries_per_s": ours, "python_ecdsa_entries_per_s": base,
                         "ratio": ours / base}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = result["machine"]
    print(f"machine: {m['processor']}, {m['platform']}, Python {m['python']}")
    ref = result["reference"]
    print(f"reference: OpenSSL verify {ref['openssl_verify_per_s']:,.0f}/s; "
          f"SHA-256 + cbor2 decode {ref['sha256_cbor_decode_per_s']:,.0f}/s")
    for label in ("checkpoint_signed", "entry_signed"):
        r = result[label]
        print(f"{label:18s} hashtrail {r['hashtrail_entries_per_s']:>10,.0f} entries/s   "
              f"python-ecdsa {r['python_ecdsa_entries_per_s']:>9,.0f} entries/s   "
              f"ratio {r['ratio']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
