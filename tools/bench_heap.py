#!/usr/bin/env python3
"""Measure the device firmware's heap on the MicroPython unix port, loaded from .mpy.

Why: the brief's rule is that every device module loads and runs inside the board's
heap budget (boards/esp32.json: 102400 bytes). This prints what each module keeps
resident, and the smallest heap at which the complete application still runs
(tests/firmware/test_app_budget.py: two boots, sampling, automatic and on-request
checkpoints, HELLO, SET_TIME, RECORDS streaming, ACK + prune), found by bisection.

    python tools/bench_heap.py [--board esp32] [--step 512] [--json] [--no-bisect]

Figures:
  resident    gc.mem_alloc() after importing the module minus before, after
              gc.collect(), with its dependencies already imported (its own cost)
  app boot    heap in use after app.App() has booted (modules, log, link, buffers)
  min free    the smallest gc.mem_free() after gc.collect() seen at any host event of
              a boot's full-app run at the board budget (the test's headroom figure);
              first boot (key made) and second boot (log recovered) run separately
  min heap    the smallest -X heapsize (multiple of --step) at which that run
              succeeds, re-checked twice (layout varies: random key, sensor noise);
              it also covers transient peaks inside signing, which a sample
              after gc.collect() cannot see. budget - min heap = real headroom.
  harness     heap in use just before the app boots (runner, dtest, the test module
              compiled from source, scripted host, Python block device, littlefs
              mount); min heap - harness estimates what the firmware alone needs.
Boot-only modules (boardcfg, keyfile, logscan, bootcheck, bootfind) are imported for
the boot and dropped again: their "resident" figure is what they cost while loaded, not
after boot (bootfind only when the boot check finds a problem, or on a checkpoints-only
board).
The unix port here is 64-bit: object words are 8 bytes against the ESP32's 4, so the
same objects take more heap than on a board; the test harness (runner, test module,
scripted host, Python block device) shares the heap too. Both make these figures
conservative for a board.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "firmware"
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(ROOT / "host"))

import build_mpy  # noqa: E402
from hashtrail.paths import venv_tool  # noqa: E402

# Import order of the application (each module's dependencies come before it), names
# inside the firmware's package (firmware/lib/hashtrail/; "__init__" is the package
# itself). p256_table is imported by p256 only when p256_table.bin is missing, so p256
# is measured first and the table after it (0 when it stays on flash).
MODULES = ("__init__", "hmac256", "p256", "p256_table", "cbor", "entry", "cose", "identity",
           "logstore", "devlog", "link", "boardcfg", "board_unix", "sensors", "app",
           "bootcheck", "bootfind")
# Loaded only during the boot check, after the app's modules: listed after the total.
BOOT_CHECK = ("bootcheck", "bootfind")

_RESIDENT = r"""
import gc, sys, json
out = []
for name in %(mods)r:
    if name == "p256_table" and sys.modules["hashtrail.p256"]._TABLE_FILE is not None:
        out.append([name, 0])  # read from flash, never imported
        continue
    gc.collect()
    a = gc.mem_alloc()
    __import__("hashtrail" if name == "__init__" else "hashtrail." + name)
    gc.collect()
    out.append([name, gc.mem_alloc() - a])
print("@@RESIDENT " + json.dumps(out))
"""

_BOOT = r"""
import gc, os, sys, vfs
sys.path.append(%(tests)r)
import test_app_budget as t
os.chdir(%(data)r)
bd = t._FileBlock("boot.img")
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), "/fl")
gc.collect()
a0 = gc.mem_alloc()
from hashtrail import app
a = app.App(root="/fl/ht", cfg_path="board.json", inp=None, out=sys.stdout.buffer)
gc.collect()
print("@@BOOT %%d %%d" %% (gc.mem_alloc() - a0, gc.mem_free()))
"""


def _vm(code_or_args: list[str], heap: int, fw: Path, cwd: Path,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MICROPYPATH=f"{fw / 'lib'}:{TESTS}")
    return subprocess.run([venv_tool("micropython"), "-X", f"heapsize={heap}", *code_or_args],
                          env=env, cwd=str(cwd), capture_output=True, text=True,
                          timeout=timeout)


def resident(fw: Path, tmp: Path) -> dict[str, int]:
    proc = _vm(["-c", _RESIDENT % {"mods": MODULES}], 1024 * 1024, fw, tmp)
    m = re.search(r"@@RESIDENT (.*)", proc.stdout)
    if not m:
        raise SystemExit(f"resident-heap run failed:\n{proc.stdout}{proc.stderr}")
    return {str(k): int(v) for k, v in json.loads(m.group(1))}


def app_boot(fw: Path, data: Path, heap: int) -> tuple[int, int]:
    proc = _vm(["-c", _BOOT % {"tests": str(TESTS), "data": str(data)}], heap, fw, data)
    m = re.search(r"@@BOOT (\d+) (\d+)", proc.stdout)
    if not m:
        raise SystemExit(f"app boot failed at heap {heap}:\n{proc.stdout}{proc.stderr}")
    return int(m.group(1)), int(m.group(2))


TESTS_RUN = ("test_first_boot_at_board_budget", "test_second_boot_at_board_budget")


def full_app(fw: Path, data: Path, heap: int, test: str) -> int | None:
    """Min free heap of one boot's full-app run at `heap`, or None when it fails."""
    try:
        proc = _vm([str(TESTS / "_runner.py"), "test_app_budget", test, str(data)], heap, fw,
                   data, timeout=180)
    except subprocess.TimeoutExpired:
        return None
    # A run that reached the end but missed the test's own 16 KB headroom check still
    # fits in this heap: only a failure before the report line counts as not fitting.
    m = re.search(r"@@APPHEAP min_free=(\d+)", proc.stdout)
    return int(m.group(1)) if m else None


def harness_used(fw: Path, data: Path, heap: int, test: str) -> int:
    """Bytes in use before the app boots in one run of `test`: the runner, dtest, the
    test module (compiled from source), its host script objects, the Python block
    device and the littlefs mount (the mount's caches a board has too)."""
    proc = _vm([str(TESTS / "_runner.py"), "test_app_budget", test, str(data)], heap, fw, data,
               timeout=180)
    m = re.search(r"heap before boot: free \d+, used (\d+)", proc.stdout)
    if not m:
        raise SystemExit(f"{test}: no 'heap before boot' line:\n{proc.stdout}{proc.stderr}")
    return int(m.group(1))


def min_heap(fw: Path, data: Path, hi: int, step: int, test: str, lo: int = 32 * 1024) -> int:
    """Smallest heap (multiple of `step`) at which the run succeeds. Heap layout, and
    so fragmentation, varies between runs (random key, sensor noise), so a bisection
    result is re-checked twice and the search continues upwards if a re-check fails."""
    if full_app(fw, data, hi, test) is None:
        raise SystemExit(f"{test} does not run even at {hi} bytes of heap")
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if full_app(fw, data, mid, test) is not None:
            hi = mid
        else:
            lo = mid
    while any(full_app(fw, data, hi, test) is None for _ in range(2)):
        hi += step
    return hi


def measure(board: str, step: int, bisect: bool) -> dict[str, Any]:
    budget = int(json.loads((ROOT / "boards" / f"{board}.json").read_text())["heap_budget"])
    with tempfile.TemporaryDirectory(prefix="bench-heap-") as tmp_s:
        tmp = Path(tmp_s)
        fw = tmp / "fw"
        build_mpy.build(fw)
        data = tmp / "data"
        data.mkdir()
        importlib.import_module("vectors_app").make_app_board(data)
        res = resident(fw, tmp)
        boot_used, boot_free = app_boot(fw, data, budget)
        importlib.import_module("vectors_app").make_app_image(data)
        out: dict[str, Any] = {
            "board": board, "budget": budget, "resident": res,
            "resident_total": sum(v for k, v in res.items() if k not in BOOT_CHECK),
            "app_boot_used": boot_used, "app_boot_free": boot_free,
            "runs": {},
        }
        for test in TESTS_RUN:
            run: dict[str, Any] = {"min_free": full_app(fw, data, budget, test),
                                   "harness": harness_used(fw, data, budget, test)}
            if bisect:
                mh = min_heap(fw, data, budget if run["min_free"] is not None else 200 * 1024,
                              step, test)
                run["min_heap"] = mh
                run["headroom"] = budget - mh
                run["firmware_heap"] = mh - run["harness"]
            out["runs"][test] = run
    return out


def render(r: dict[str, Any]) -> str:
    lines = [f"MicroPython unix port (64-bit), firmware from .mpy, board {r['board']}: "
             f"heap budget {r['budget']} B",
             f"{'module':12s} {'resident B':>10s}"]
    for name, size in r["resident"].items():
        if name in BOOT_CHECK:
            continue
        note = "  (table read from /lib/hashtrail/p256_table.bin)" if name == "p256_table" and \
            size == 0 else ""
        lines.append(f"{name:12s} {size:10d}{note}")
    lines.append(f"{'total':12s} {r['resident_total']:10d}")
    for name in BOOT_CHECK:
        lines.append(f"{name:12s} {r['resident'][name]:10d}  (boot check only, then dropped)")
    lines.append(f"app booted (modules + log + link + buffers + config): {r['app_boot_used']} B "
                 f"in use, {r['app_boot_free']} B free")
    for test, run in r["runs"].items():
        f = run["min_free"]
        line = f"{test}: " + ("FAILS at budget" if f is None else
                              f"min free after gc.collect {f} B")
        if "min_heap" in run:
            line += f"; smallest heap {run['min_heap']} B -> headroom {run['headroom']} B"
        lines.append(line)
        line = f"  harness in use before boot {run['harness']} B"
        if "min_heap" in run:
            line += (f"; firmware alone ~{run['firmware_heap']} B (smallest heap minus the "
                     f"harness: an estimate, the harness's objects also shape fragmentation)")
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", default="esp32", help="board whose budget applies (esp32)")
    ap.add_argument("--step", type=int, default=512, help="bisection step in bytes (512)")
    ap.add_argument("--no-bisect", action="store_true", help="skip the smallest-heap search")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    r = measure(args.board, args.step, not args.no_bisect)
    print(json.dumps(r, indent=2) if args.json else render(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
