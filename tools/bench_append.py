#!/usr/bin/env python3
"""Benchmark the device's append with per-entry signing against without, and its boot
check, on the MicroPython unix port at the board's heap budget.

Why: every entry is signed by default on every board, so each append costs
one ECDSA signature; a battery-bound board may switch it off (board config
`log.sign_entries`). This measures what that choice costs: ms per append both ways
and their ratio, flash bytes per entry both ways, and the boot check for logs of N
entries (logboot.boot_walk/boot_verdict, bootcheck.py: the device checks its own log
against its signatures before it appends anything).

    python tools/bench_append.py [--board esp32] [--appends 200] [--boot-n 100,500,1000]
                                 [--json]

What runs: the real firmware (.mpy, as a board loads it) in `micropython -X
heapsize=<board heap_budget>`, devlog.Log on littlefs over the virtual board's
file-backed block device (firmware/lib/hashtrail/blockdev_file.py, 4 KB blocks), appending
the app's readings (two values, like boards/esp32.json's sensors). Signed and unsigned
logs are appended in alternating batches of 25, each batch a VM of its own (a fresh
heap at the budget, as after a board's boot), so machine noise hits both alike; each
append is timed on its own (ticks_us) and the median and minimum are reported.
Flash bytes per entry are the record sizes on flash (header + entry + signature +
CRC; littlefs metadata not included). The boot check is timed alone (the store's
recovery scan before it is timed too, for scale), in a fresh VM, on a log of N
entries another VM wrote with the same Log (checkpoints off).

ESP32 figures are scale-factor estimates, not measurements (no board here): unix time
x100 at 160 MHz, x70 at 240 MHz, the factor tools/bench_device.py and docs/DEVICE.md
use for p256. It is a CPU-bound factor: littlefs writes to real flash (page program,
sector erase) add time on a board that the unix port's file writes do not show.
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
from hashtrail.device.devrun import run_snippet  # noqa: E402
from hashtrail.paths import venv_tool  # noqa: E402

ESP32_SCALE = {"esp32_160mhz": 100, "esp32_240mhz": 70}

_COMMON = r"""
import gc, json, os, time, vfs
from hashtrail import blockdev_file, devlog, logstore

R = [("mcu_temp", "Cel", 41.5), ("adc0", "V", 1.234)]


class Clock:
    def __init__(self):
        self.up = 0

    def uptime_ms(self):
        self.up += 10
        return self.up

    def now(self):
        return 1700000000 + self.up // 1000


def mount(name, blocks, mkfs):
    bd = blockdev_file.FileBlock(name, 4096, blocks)
    if mkfs:
        vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/f")
    return "/f/ht"


def open_log(root, sign):
    return devlog.Log(root, "esp32", "0.1.0", Clock(), {"log": {
        "sign_entries": sign, "checkpoint_every": 0, "checkpoint_s": 0}}, "power_on")
"""

# One VM per batch of appends (a fresh heap at the board budget, like a board), the
# signed and unsigned batches alternating.
_APPEND = _COMMON + r"""
log = open_log(mount(%(image)r, 256, True), %(sign)r)
times = []
for _ in range(%(n)d):
    gc.collect()
    t = time.ticks_us()
    log.reading(R)
    times.append(time.ticks_diff(time.ticks_us(), t))
total = n = 0
for rec in log.records(0):
    magic, flags, seq, blen = logstore.parse(rec)
    if magic == logstore.ENTRY and seq >= 2:
        total += len(rec)
        n += 1
log.close()
print("@@BENCH " + json.dumps({"times": times, "flash": total / n}))
"""

_FILL = _COMMON + r"""
log = open_log(mount(%(image)r, %(blocks)d, True), %(sign)r)
while log.last_seq < %(n)d - 1:
    log.reading(R)
log.close()
print("@@BENCH {}")
"""

# The boot check, in a fresh VM on the log _FILL wrote: the store's recovery scan alone
# (timed for scale), then the scan with the boot check's walk riding on it plus its
# verdict, as devlog.Log runs them at boot; the check's cost is the difference.
_BOOT = _COMMON + r"""
from hashtrail import keyfile, logboot
root = mount(%(image)r, %(blocks)d, False)
for _ in range(2):  # the first scan warms littlefs's and the OS's caches: not timed
    gc.collect()
    t = time.ticks_us()
    store = logstore.LogStore(root, boot_check=True)
    t_scan = time.ticks_diff(time.ticks_us(), t)
    store.close()
    store = None
ident = keyfile.load(root)
gc.collect()
t = time.ticks_us()
store = logstore.LogStore(root, boot_check=True, observe=lambda: logboot.boot_walk(%(sign)r))
wk = store.observed.result(store)
store.observed = None
found = logboot.boot_verdict(store, wk, ident.pub, ident.device_id)
t_check = time.ticks_diff(time.ticks_us(), t) - t_scan
per_entry = wk[0]
if found is not None or per_entry != %(sign)r:
    raise SystemExit("boot check failed on an untouched log: %%r" %% (found,))
print("@@BENCH " + json.dumps({"entries": store.last_seq + 1, "signed": %(sign)r,
                               "scan_us": t_scan, "check_us": t_check}))
"""


def _run(code: str, heap: int, cwd: Path) -> Any:
    out = run_snippet(code, heap=heap, timeout=3600, cwd=cwd)
    line = next(ln for ln in out.splitlines() if ln.startswith("@@BENCH "))
    return json.loads(line[len("@@BENCH "):])


def _raw(heap: int, appends: int, boot_n: list[int]) -> dict[str, Any]:
    times: dict[str, list[int]] = {"signed": [], "unsigned": []}
    flash: dict[str, float] = {}
    boot = []
    batch = 25
    with tempfile.TemporaryDirectory(prefix="hashtrail-bench-append-") as tmp:
        d = Path(tmp)
        for _ in range(appends // batch):
            for sign, name in ((True, "signed"), (False, "unsigned")):
                r = _run(_APPEND % {"image": "a.img", "sign": sign, "n": batch}, heap, d)
                times[name] += r["times"]
                flash[name] = r["flash"]
        for n in boot_n:
            for sign in (True, False):
                args = {"image": f"b{n}{int(sign)}.img", "sign": sign, "n": n,
                        "blocks": 64 + n * 200 // 4096}
                _run(_FILL % args, heap, d)
                boot.append(_run(_BOOT % args, heap, d))
    return {"times": times, "flash": flash, "boot": boot}


def _median(xs: list[int]) -> float:
    s = sorted(xs)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def board_heap(board: str) -> int:
    return int(json.loads((ROOT / "boards" / f"{board}.json").read_text())["heap_budget"])


def machine() -> dict[str, Any]:
    vm = subprocess.run([venv_tool("micropython"), "-c",
                         "import sys; print(sys.implementation.version)"],
                        capture_output=True, text=True).stdout.strip()
    return {**host_machine(), "micropython": vm}


def _esp32(us: float) -> dict[str, float]:
    return {k: round(us * f / 1000, 1) for k, f in ESP32_SCALE.items()}


def bench(board: str, appends: int, boot_n: list[int]) -> dict[str, Any]:
    heap = board_heap(board)
    raw = _raw(heap, appends, boot_n)
    append = {}
    for name in ("signed", "unsigned"):
        ts = raw["times"][name]
        med = _median(ts)
        append[name] = {"median_ms": round(med / 1000, 3), "min_ms": round(min(ts) / 1000, 3),
                        "samples": len(ts), "esp32_ms": _esp32(med),
                        "flash_bytes_per_entry": round(raw["flash"][name], 1)}
    s, u = append["signed"], append["unsigned"]
    boot = [{**b, "check_ms": round(b["check_us"] / 1000, 1),
             "scan_ms": round(b["scan_us"] / 1000, 1),
             "check_us_per_entry": round(b["check_us"] / b["entries"], 1),
             "esp32_check_ms": _esp32(b["check_us"])} for b in raw["boot"]]
    return {
        "machine": machine(),
        "board": board,
        "heap": heap,
        "appends": appends,
        "append": append,
        "ratio_signed_over_unsigned": {
            "median": round(s["median_ms"] / u["median_ms"], 1),
            "min": round(s["min_ms"] / u["min_ms"], 1)},
        "flash_ratio": round(s["flash_bytes_per_entry"] / u["flash_bytes_per_entry"], 2),
        "boot_check": boot,
        "esp32_note": "ESP32 figures are unix time x100 (160 MHz) / x70 (240 MHz), the "
                      "factor tools/bench_device.py uses: CPU-bound estimates, not "
                      "measurements; flash program/erase time on a board comes on top",
    }


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['nproc']} CPUs; MicroPython {m['micropython']} unix port, "
        f"-X heapsize={r['heap']} (board {r['board']}); {r['appends']} appends each way, "
        "in alternating batches of 25 (one VM each), firmware from .mpy",
        f"{'append':10s} {'median ms':>10s} {'min ms':>8s} {'flash B/entry':>14s}   "
        "ESP32 est. ms @160 / @240 MHz",
    ]
    for name in ("signed", "unsigned"):
        a = r["append"][name]
        lines.append(f"{name:10s} {a['median_ms']:10.3f} {a['min_ms']:8.3f} "
                     f"{a['flash_bytes_per_entry']:14.1f}   {a['esp32_ms']['esp32_160mhz']:8.1f}"
                     f" / {a['esp32_ms']['esp32_240mhz']:.1f}")
    rr = r["ratio_signed_over_unsigned"]
    lines.append(f"signed / unsigned: {rr['median']}x per append (medians; minima "
                 f"{rr['min']}x), {r['flash_ratio']}x flash per entry")
    lines.append(f"{'boot check':10s} {'entries':>8s} {'policy':>8s} {'check ms':>9s} "
                 f"{'us/entry':>9s} {'scan ms':>8s}   ESP32 est. check ms @160 / @240 MHz")
    for b in r["boot_check"]:
        pol = "1 (sig)" if b["signed"] else "0 (cp)"
        lines.append(f"{'':10s} {b['entries']:8d} {pol:>8s} {b['check_ms']:9.1f} "
                     f"{b['check_us_per_entry']:9.1f} {b['scan_ms']:8.1f}   "
                     f"{b['esp32_check_ms']['esp32_160mhz']:8.0f} / "
                     f"{b['esp32_check_ms']['esp32_240mhz']:.0f}")
    lines.append(r["esp32_note"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", default="esp32", help="board whose heap_budget applies")
    ap.add_argument("--appends", type=int, default=200, help="appends each way (200)")
    ap.add_argument("--boot-n", default="100,500,1000",
                    help="log lengths (entries) to time the boot check on")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    appends = max(25, args.appends // 25 * 25)
    result = bench(args.board, appends, [int(x) for x in args.boot_n.split(",") if x])
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
