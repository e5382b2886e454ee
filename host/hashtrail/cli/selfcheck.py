"""`hashtrail selfcheck`: the device crypto, run on the MicroPython VM at a board's heap
(hashtrail.device.selfcheck does the work; this module parses and prints).

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
from typing import Any

from hashtrail.cli.args import at_least
from hashtrail.device.selfcheck import selfcheck
from hashtrail.errors import VerificationError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "selfcheck",
        help="check the device P-256 code on the MicroPython VM at a board's heap budget")
    p.add_argument("--board", default="esp32",
                   help="board whose heap budget applies (default esp32)")
    p.add_argument("--reps", type=at_least(1), default=5, help="timed sign/verify repetitions")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


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
