"""`hashtrail selfcheck`: the device crypto, run on the MicroPython VM at a board's heap.

Why: before flashing or simulating, a user (or CI) wants one command that proves the
firmware's P-256 code works where it will run: a fresh key from new_key, a signature,
its verification, and tampered signatures and digests rejected, all inside the
board's heap budget, from the compiled .mpy. The host then checks the device's
signature independently with `cryptography` (OpenSSL). Timings are printed so a
slow regression is visible; they are unix-port times, not ESP32 times.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from hashtrail.cli.args import at_least
from hashtrail.device.boards import load_board
from hashtrail.device.devrun import run_snippet
from hashtrail.errors import VerificationError

# The device side. Prints one JSON line; any failure raises (non-zero exit).
_DEVICE = r"""
import gc, time, hashlib, json
from hashtrail import p256
def clock(fn, *args):
    t = time.ticks_us()
    out = fn(*args)
    return time.ticks_diff(time.ticks_us(), t), out
d = p256.new_key()
if not 0 < d < p256.N:
    raise ValueError("new_key out of range")
pub = p256.public_key(d)
h = hashlib.sha256(b"hashtrail selfcheck %(nonce)s").digest()
ts = []
tv = []
for i in range(%(reps)d):
    gc.collect()
    t, sig = clock(p256.sign, d, h)
    ts.append(t)
    gc.collect()
    t, ok = clock(p256.verify, pub, h, sig)
    tv.append(t)
    if not ok:
        raise ValueError("verify rejected a fresh signature")
bad = bytearray(sig)
bad[40] ^= 1
other = hashlib.sha256(b"other").digest()
checks = {
    "verify": p256.verify(pub, h, sig),
    "tampered_sig_rejected": not p256.verify(pub, h, bytes(bad)),
    "tampered_digest_rejected": not p256.verify(pub, other, sig),
    "deterministic": p256.sign(d, h) == sig,
}
gc.collect()
ts.sort()
tv.sort()
print("@@SELFCHECK " + json.dumps({"pub": pub.hex(), "digest": h.hex(), "sig": sig.hex(),
    "checks": checks, "sign_us": ts[len(ts) // 2], "verify_us": tv[len(tv) // 2],
    "free_heap": gc.mem_free()}))
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "selfcheck",
        help="check the device P-256 code on the MicroPython VM at a board's heap budget")
    p.add_argument("--board", default="esp32",
                   help="board whose heap budget applies (default esp32)")
    p.add_argument("--reps", type=at_least(1), default=5, help="timed sign/verify repetitions")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def host_verifies(pub: bytes, digest: bytes, sig: bytes) -> bool:
    """OpenSSL's verdict (via `cryptography`) on a raw r || s signature of a digest."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    if len(sig) != 64:
        return False
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    except ValueError:
        return False
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def selfcheck(board: str, reps: int = 5) -> dict[str, Any]:
    """Run the device self-check; returns the report (checks all True when it passed)."""
    b = load_board(board)
    code = _DEVICE % {"nonce": os.urandom(8).hex(), "reps": max(1, reps)}
    out = run_snippet(code, heap=b.heap_budget, timeout=120)
    line = next((ln for ln in out.splitlines() if ln.startswith("@@SELFCHECK ")), None)
    if line is None:
        raise VerificationError(f"the device self-check printed no result:\n{out[-2000:]}")
    rep: dict[str, Any] = json.loads(line[len("@@SELFCHECK "):])
    rep["checks"]["host_cryptography_verifies"] = host_verifies(
        bytes.fromhex(rep["pub"]), bytes.fromhex(rep["digest"]), bytes.fromhex(rep["sig"]))
    rep["board"] = b.name
    rep["heap"] = b.heap_budget
    rep["ok"] = all(rep["checks"].values())
    return rep


def run(args: argparse.Namespace) -> int:
    rep = selfcheck(args.board, args.reps)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"device self-check on the MicroPython unix port, board {rep['board']} "
              f"(heap {rep['heap']} B), firmware from .mpy")
        for name, ok in rep["checks"].items():
            print(f"  {'ok  ' if ok else 'FAIL'}  {name.replace('_', ' ')}")
        print(f"  sign {rep['sign_us'] / 1000:.2f} ms, verify {rep['verify_us'] / 1000:.2f} ms "
              f"(median of {args.reps}, unix-port time); free heap after: {rep['free_heap']} B")
    if not rep["ok"]:
        raise VerificationError("device self-check failed",
                                hint="the firmware's p256 is broken; run the device tests: "
                                     "python3 tools/dev.py test tests/firmware")
    return 0
