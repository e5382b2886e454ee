#!/usr/bin/env python3
"""Long fuzz runs: the suite's decoder targets for minutes, and the device protocol.

Decoders: the same targets and properties as tests/fuzz (tests/fuzz/fuzzprops.py),
each given an equal share of --minutes, in rounds of hypothesis runs; prints the cases
run per target. A failure prints hypothesis' minimal falsifying input and exits 1.

Protocol: a RUNNING virtual device gets random and mutated request lines (valid CRCs
included), over-long lines, control bytes other than 0x03 (Ctrl-C) and garbage for
--protocol-seconds; then it must still answer HELLO, be collected cleanly (chain,
signatures, a fresh checkpoint), and, powered off, its flash image must verify and
agree with what was collected.

    python tools/fuzz.py --minutes 5 [--target NAME ...] [--protocol-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
sys.path.insert(0, str(ROOT / "tools"))

from hashtrail.collector.collect import collect  # noqa: E402
from hashtrail.collector.store import Store  # noqa: E402
from hashtrail.device import link as L  # noqa: E402
from hashtrail.device.link import open_serial  # noqa: E402

_SAFE = [b for b in range(256) if b != 0x03]  # never Ctrl-C: it stops the app


def _line(rng: random.Random, ack_upto: int) -> bytes:
    """One fuzzed request line (never containing 0x03)."""
    kind = rng.randrange(10)
    if kind == 0:  # garbage of any byte but 0x03, newline-terminated
        return bytes(rng.choice(_SAFE) for _ in range(rng.randrange(1, 80))) + b"\n"
    if kind == 1:  # over-long request line
        return L.PREFIX + b"0" * rng.randrange(190, 600) + b"\r"
    if kind == 2:  # not hex / odd length / truncated
        good = L.encode_request(rng.randrange(1, 256), L.REQ_HELLO)
        return good[:rng.randrange(3, len(good) - 1)] + rng.choice([b"zz", b"", b"0"]) + b"\n"
    if kind == 3:  # control bytes (not 0x03) inside and around a request
        good = L.encode_request(rng.randrange(1, 256), L.REQ_HELLO)
        ctl = bytes(rng.choice([0, 1, 2, 4, 5, 6, 7, 8, 0x1B, 0x7F]) for _ in range(4))
        i = rng.randrange(len(good))
        return good[:i] + ctl + good[i:]
    # Valid CRC, fuzzed fields: version, command, argument lengths and values.
    version = 1 if rng.random() < 0.85 else rng.randrange(256)
    cmd = rng.choice([L.REQ_HELLO, L.REQ_RECORDS, L.REQ_CREDIT, L.REQ_CHECKPOINT,
                      L.REQ_CANCEL, L.REQ_SET_TIME, L.REQ_ACK, 0, 8, 0x7F, 0x81, 0xFF])
    if cmd == L.REQ_RECORDS and rng.random() < 0.7:
        args = struct.pack("<IH", rng.choice([0, 1, 2**32 - 1, rng.randrange(2**16)]),
                           rng.choice([0, 1, 4, 65535]))
    elif cmd == L.REQ_CHECKPOINT:
        args = os.urandom(rng.choice([0, 1, 16, 32, 33, 90]))
    elif cmd == L.REQ_ACK and rng.random() < 0.5:
        args = struct.pack("<I", rng.randrange(0, ack_upto + 1))  # only what we hold
    elif cmd in (L.REQ_SET_TIME, L.REQ_ACK):
        # A wrong length only: a valid SET_TIME/ACK is a real command (time, pruning).
        args = os.urandom(rng.choice([0, 1, 3, 5, 7, 9, 12]))
    else:
        args = os.urandom(rng.choice([0, 1, 2, 6, 40]))
    body = bytes((version, rng.randrange(256), cmd)) + args
    body += struct.pack("<I", zlib.crc32(body))
    hx = body.hex()
    if rng.random() < 0.3:
        hx = hx.upper()
    return L.PREFIX + hx.encode() + rng.choice([b"\n", b"\r", b"\r\n"])


def protocol_fuzz(port: str, seconds: float, seed: int, ack_upto: int = 0) -> dict[str, int]:
    """Send fuzzed lines for `seconds` to the device on `port`; count what came back."""
    rng = random.Random(seed)
    counts = {"lines": 0, "bytes_out": 0, "frames": 0, "error_frames": 0, "bytes_in": 0}
    with open_serial(port) as link:
        stop = threading.Event()

        def reader() -> None:
            dec = L.FrameDecoder(keep_text=0)
            while not stop.is_set():
                data = link.stream.read(65536, 0.1)
                counts["bytes_in"] += len(data)
                for f in dec.feed(data):
                    counts["frames"] += 1
                    counts["error_frames"] += f.type == L.REP_ERROR

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                line = _line(rng, ack_upto)
                if 3 in line:
                    raise AssertionError("a fuzz line contains 0x03")
                link.stream.write(line)
                counts["lines"] += 1
                counts["bytes_out"] += len(line)
                if rng.random() < 0.2:
                    time.sleep(0.01)
        finally:
            time.sleep(0.5)
            stop.set()
            t.join()
    return counts


def check_device_after(dev: Any, store: Path, pub: bytes) -> tuple[int, list[str]]:
    """HELLO, a clean collection, then (powered off) the image against the store."""
    import soak

    soak.wait_ready(dev, timeout=15)
    with Store.open(store) as st, open_serial(dev.port) as link:
        res = collect(link, st)
        did = res.device_id
        known = {r.seq: r.body for r in st.accepted_records(did)}
    dev.stop()
    n, findings = soak.check_image_against(dev, pub, known)
    return n, findings


def run_protocol(seconds: float, seed: int) -> int:
    import soak

    with tempfile.TemporaryDirectory(prefix="hashtrail-pfuzz-") as tmp:
        dev = soak.make_device(Path(tmp), "pfuzz", 0.1)
        try:
            store = Path(tmp) / "c.db"
            info = soak.wait_ready(dev)
            with Store.open(store) as st:
                st.enroll(info.device_id, info.pub, label="pfuzz")
                with open_serial(dev.port) as link:
                    first = collect(link, st)
            counts = protocol_fuzz(dev.port, seconds, seed, ack_upto=first.upto_seq or 0)
            n, findings = check_device_after(dev, store, info.pub)
        finally:
            dev.stop()
    print(f"protocol: {counts['lines']} lines ({counts['bytes_out']} B) in {seconds:.0f} s, "
          f"{counts['frames']} frames back ({counts['error_frames']} ERROR); "
          f"afterwards HELLO + clean collection; image: {n} entries checked, "
          f"{len(findings)} findings")
    for f in findings:
        print(f"  ! {f}")
    return 1 if findings else 0


def _runner(strategy: Any, prop: Any, given: Any, settings: Any, st: Any,
            health: Any) -> tuple[Any, list[int]]:
    """A hypothesis test of one target (500 examples a round) and its case counter."""
    count = [0]

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(health))
    @given(st.data())
    def one(data: Any) -> None:
        count[0] += 1
        prop(data.draw(strategy()))

    return one, count


def run_decoders(minutes: float, names: list[str]) -> int:
    from fuzzprops import TARGETS
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = names or sorted(TARGETS)
    share = minutes * 60 / len(names)
    failed = 0
    for name in names:
        one, count = _runner(*TARGETS[name], given, settings, st, HealthCheck)

        end = time.monotonic() + share
        rounds = 0
        try:
            while time.monotonic() < end:
                one()
                rounds += 1
        except Exception as e:  # hypothesis has printed the falsifying example
            failed += 1
            print(f"{name:22s} FAILED after {count[0]} cases: {type(e).__name__}: {e}"[:400])
            continue
        print(f"{name:22s} {count[0]:8d} cases in {share:5.0f} s", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="decoder fuzzing time")
    ap.add_argument("--target", action="append", default=[], help="only this decoder target")
    ap.add_argument("--protocol-seconds", type=float, default=60.0,
                    help="device protocol fuzzing time (0: skip)")
    ap.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "little"))
    args = ap.parse_args(argv)
    rc = 0
    if args.minutes > 0:
        rc |= run_decoders(args.minutes, args.target)
    if args.protocol_seconds > 0:
        rc |= run_protocol(args.protocol_seconds, args.seed)
    print(f"seed {args.seed}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
