"""tools/bench_device.py runs end to end: fast and naive in one VM, both heaps measured.

Why: the benchmark is how the signing target is reported; it must keep running as
the firmware changes. The numbers themselves depend on the machine, so this checks
what does not: the run completes (fast and naive signatures agree, or it aborts),
every op is timed, and the heap figures are consistent with each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_json_smoke() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_device.py"),
                           "--rounds", "1", "--inputs", "2", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert set(r["ops_us"]) == {"fast_sign", "naive_sign", "fast_verify", "naive_verify"}
    for op in r["ops_us"].values():
        assert op["samples"] == 2 and 0 < op["min_us"] <= op["median_us"]
        assert op["esp32_160mhz"] > op["esp32_240mhz"] > 0
    # Fast signing beats double-and-add by a wide margin on any machine.
    assert r["sign_speedup_naive_over_fast"]["min"] > 2
    assert 0 < r["resident_heap_bytes"] < r["min_heap_bytes"] <= r["heap"]
    assert r["machine"]["nproc"] >= 1 and r["machine"]["cpu"]
