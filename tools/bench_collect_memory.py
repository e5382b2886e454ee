#!/usr/bin/env python3
"""Peak memory of `hashtrail collect` against what a device sends (issue 19).

What is measured (one run, same machine): the CLI as a child process against the fake
device on a pty (tests/e2e/hostile_device.py), its peak RSS read from its own VmHWM
(the hostile test harness, tests/e2e/test_hostile_device.py):
- baseline: an honest device of 21 entries, collected and accepted;
- long: a valid chain of --entries entries (no per-entry signatures, so it builds
  fast), collected and accepted: where a collector holding every record until the fresh
  checkpoint peaks highest;
- hostile: an endless stream of record chunks under a huge announcement, stopped at
  the --max-records ceiling (--entries + 1000).
Reported as MB above the baseline and as ratios against it. Set HOSTILE_HOST to
another host/ directory (e.g. an older checkout) to measure that collector instead.

    python tools/bench_collect_memory.py [--entries 199000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--entries", type=int, default=199_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import hostile_device as hd
    import test_hostile_device as t

    n = a.entries

    class Long(hd.Behaviour):
        def __init__(self) -> None:
            super().__init__()
            self.chain = hd.devchain.Device(hd.SECRET, per_entry_sig=False)
            self.chain.readings(n)

    hostile = t.EndlessStream()
    hostile.announce = 2**32 - 2
    out: dict[str, object] = {"host": str(t.HOST), "entries": n}
    with tempfile.TemporaryDirectory() as d:
        runs = {"baseline": (hd.Behaviour(), ()), "long": (Long(), ()),
                "hostile": (hostile, ("--max-records", str(n + 1000)))}
        for name, (b, extra) in runs.items():
            tmp = Path(d) / name
            tmp.mkdir()
            run = t.collect(tmp, b, None, *extra)
            out[name] = {"rc": run.rc, "seconds": round(run.seconds, 1),
                         "peak_mb": round(run.rss_mb, 1)}
    base = out["baseline"]["peak_mb"]  # type: ignore[index]
    for name in ("long", "hostile"):
        r = out[name]
        r["above_baseline_mb"] = round(r["peak_mb"] - base, 1)  # type: ignore[index]
        r["ratio"] = round(r["peak_mb"] / base, 2)  # type: ignore[index]
    if a.json:
        print(json.dumps(out))
    else:
        for name in ("baseline", "long", "hostile"):
            print(f"{name:>8}: {out[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
