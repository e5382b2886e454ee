#!/usr/bin/env python3
"""The full power-cut sweep: cut power at EVERY flash operation of longer scripts, both
clean cuts and half-programmed writes, for the log store and for the whole Log.

Why: the test suite runs the same sweep on short scripts (a few seconds); this runs
it on longer ones (more rotations, prunes and checkpoints) and prints the timing.
The device-side code is tests/firmware/powercut.py and powercut_log.py.

    python tools/powercut_sweep.py [--store-entries 200] [--log-readings 120] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def _device(code: str, mpy: Path) -> str:
    env = dict(os.environ, MICROPYPATH=f"{mpy / 'lib'}:{ROOT / 'tests' / 'firmware'}")
    exe = str(Path(sys.executable).parent / "micropython")
    proc = subprocess.run([exe, "-X", "heapsize=4M", "-c", code], env=env,
                          capture_output=True, text=True, timeout=7200)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@SWEEP ")]
    if proc.returncode != 0 or not line:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise SystemExit(f"sweep failed:\n{tail}")
    return line[0][8:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store-entries", type=int, default=200)
    ap.add_argument("--log-readings", type=int, default=120)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import build_mpy

    mpy = ROOT / "build" / "sweep-mpy"
    build_mpy.build(mpy)
    rows = []
    for what, mod, arg in (("store", "powercut", f"n_entries={a.store_entries}, blocks=96"),
                           ("log", "powercut_log", f"n={a.log_readings}, blocks=96")):
        for half in (False, True):
            t = time.monotonic()
            out = _device(f"import {mod}; t, c = {mod}.sweep({arg}, half={half}); "
                          f"print('@@SWEEP %d %d' % (t, c))", mpy)
            total, checked = map(int, out.split())
            rows.append({"what": what, "half_write": half, "flash_ops": total,
                         "cuts_checked": checked, "seconds": round(time.monotonic() - t, 1)})
            if not a.json:
                r = rows[-1]
                print(f"{what:>5} {'half-programmed' if half else 'clean':>15} cuts: "
                      f"{checked}/{total} flash ops recovered in {r['seconds']} s")
    if a.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
