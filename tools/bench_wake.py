#!/usr/bin/env python3
"""How long `hashtrail enroll` takes on a device left at the MicroPython REPL.

mpremote (deploy, exec, ls) leaves a board at the REPL; enroll and collect then soft-
reset it to start the application (Link.hello_waking). Measured on one virtual device
(real firmware, unix port, pty console), in the same run: an enroll of the device at
the REPL (after `mpremote exec`), and, as the baseline, an enroll of the same device
running its application. Each is a fresh CLI process, as a user runs it; the median
of --runs is reported, with the ratio REPL / running.

    python tools/bench_wake.py [--runs 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _enroll(port: str, store: Path) -> float:
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "hashtrail.cli", "enroll", "--port", port,
                        "--store", str(store), "--label", "bench"],
                       capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"enroll failed: {p.stderr.strip()}")
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from hashtrail.paths import venv_tool
    from hashtrail.sim import VirtualDevice
    from hashtrail.sim.provision import wait_ready

    at_repl: list[float] = []
    running: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, VirtualDevice(Path(tmp), "wake") as dev:
        wait_ready(dev, timeout=20)
        for i in range(args.runs):
            running.append(_enroll(dev.port, Path(tmp) / f"r{i}.db"))
            subprocess.run([venv_tool("mpremote"), "connect", dev.port, "exec", "print(6*7)"],
                           check=True, capture_output=True, timeout=60)
            at_repl.append(_enroll(dev.port, Path(tmp) / f"w{i}.db"))
    res = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "runs": args.runs,
           "enroll_running_s": round(statistics.median(running), 2),
           "enroll_at_repl_s": round(statistics.median(at_repl), 2)}
    res["ratio"] = round(res["enroll_at_repl_s"] / res["enroll_running_s"], 2)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"enroll, device running its application: {res['enroll_running_s']} s "
              f"(median of {args.runs})")
        print(f"enroll, device at the REPL:            {res['enroll_at_repl_s']} s "
              f"({res['ratio']}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
