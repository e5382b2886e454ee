#!/usr/bin/env python3
"""The fleet view's render times in headless Chromium (issue 14): the fleet page with
1,000 devices and a device plot of 10^5 readings, each to be drawn in under a second.

    .venv/bin/python tools/bench_web.py [--devices 1000] [--readings 100000]
                                        [--repeat 3] [--json]

Two ledgers are built through the real reconcile from host-made device chains (the
bundles of tools/bench_reconcile_scale.py: policy 0, a signed device checkpoint every
few entries, written as the exporter writes them): one of `--devices` devices with 5
entries each, one of a single device with `--readings` readings. Each is served by a
real `hashtrail serve` process on 127.0.0.1, and the pages are loaded in Debian's
Chromium (Playwright, executable_path=/usr/bin/chromium).

Measured in the browser, from the navigation's start to the first paint after the
table or chart is in the page (the pages' own performance marks, `fleet-painted` and
`plot-painted`: a mark, then a frame, then a task): fetching the JSON, building the
DOM or the chart, and painting. The median of `--repeat` loads with the server's
caches warm, and the first load apart (the server then verifies the whole ledger, or
decodes every reading, once per ledger state). The baseline, measured in the same run
and page: fetching and parsing the same JSON alone; the ratio says what the page adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "host"))

import bench_reconcile_scale as brs  # noqa: E402
from benchutil import host_machine  # noqa: E402
from hashtrail.ledger.reconcile_files import reconcile_files  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 1000.0


def build(work: Path, name: str, entries: int, devices: int, every: int) -> tuple[Path, float]:
    """A ledger of `entries` entries over `devices` devices; (path, seconds to build)."""
    t0 = time.perf_counter()
    sub = work / name
    sub.mkdir()
    big, _ = brs.make_bundles(sub, entries, devices, 0, every)
    ledger = sub / "ledger.db"
    brs._new_ledger(ledger)
    reconcile_files(ledger, [str(big)])
    return ledger, time.perf_counter() - t0


class Server:
    def __init__(self, ledger: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashtrail", "serve", "--ledger", str(ledger), "--listen",
             "127.0.0.1:0", "--json"], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
        assert self.proc.stdout is not None
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def get_seconds(self, path: str) -> float:
        t0 = time.perf_counter()
        with urllib.request.urlopen(self.url + path, timeout=600) as r:
            r.read()
        return time.perf_counter() - t0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _fetch_ms(page: Any, path: str) -> float:
    """Baseline: fetch and parse `path` in the page."""
    return float(page.evaluate("""async (p) => { const t = performance.now();
        await (await fetch(p)).json(); return performance.now() - t; }""", path))


def _paint_ms(page: Any, url: str, mark: str) -> float:
    page.goto(url)
    deadline = time.monotonic() + 120
    # polled from here: wait_for_function evaluates a string, which the page's CSP forbids
    while time.monotonic() < deadline:
        got = page.evaluate("(m) => (window.__hashtrail || {})[m]", mark)
        if got:
            return float(got)
        time.sleep(0.02)
    raise SystemExit(f"{url}: no {mark}-painted mark within 120 s")


def measure(page: Any, srv: Server, path: str, mark: str, api: str, repeat: int
            ) -> dict[str, Any]:
    first = _paint_ms(page, srv.url + path, mark)
    warm = [_paint_ms(page, srv.url + path, mark) for _ in range(repeat)]
    base = [_fetch_ms(page, "/" + api) for _ in range(repeat)]
    med, bmed = statistics.median(warm), statistics.median(base)
    return {"first_paint_ms_first_load": round(first, 1), "first_paint_ms": round(med, 1),
            "runs_ms": [round(x, 1) for x in warm], "baseline_fetch_json_ms": round(bmed, 1),
            "ratio_vs_baseline": round(med / bmed, 2) if bmed else None,
            "under_target": med < TARGET_MS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    report: dict[str, Any] = {"machine": host_machine(), "target_ms": TARGET_MS}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        fleet_db, t_fleet = build(work, "fleet", 5 * a.devices, a.devices, 5)
        plot_db, t_plot = build(work, "plot", a.readings + 1, 1, 1000)
        report["build_seconds"] = {"fleet": round(t_fleet, 1), "plot": round(t_plot, 1)}
        fs, ps = Server(fleet_db), Server(plot_db)
        try:
            # the server's once-per-ledger-state work, timed apart
            report["server_first_fleet_s"] = round(fs.get_seconds("api/fleet"), 2)
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = b.new_page(viewport={"width": 1300, "height": 900})
                report["fleet"] = {"devices": a.devices, **measure(
                    page, fs, "", "fleet", "api/fleet", a.repeat)}
                with urllib.request.urlopen(ps.url + "api/fleet", timeout=600) as r:
                    did = json.loads(r.read())["devices"][0]["id"]
                report["plot"] = {"readings": a.readings, **measure(
                    page, ps, f"device/{did}", "plot", f"api/device/{did}/readings",
                    a.repeat)}
                b.close()
        finally:
            fs.stop()
            ps.stop()
    if a.json:
        print(json.dumps(report, indent=1))
        return
    m = report["machine"]
    print(f"{m['cpu']}, {m['nproc']} CPUs, Python {m['python']}; Chromium headless")
    print(f"  ledgers built in {report['build_seconds']['fleet']} s (fleet) and "
          f"{report['build_seconds']['plot']} s (plot); first /api/fleet (verify of "
          f"{a.devices} devices) {report['server_first_fleet_s']} s")
    for name, what in (("fleet", f"fleet page, {a.devices} devices"),
                       ("plot", f"device plot, {a.readings} readings")):
        r = report[name]
        print(f"  {what}: first paint {r['first_paint_ms']} ms (median of {a.repeat}; first "
              f"load {r['first_paint_ms_first_load']} ms), fetch+parse alone "
              f"{r['baseline_fetch_json_ms']} ms, ratio {r['ratio_vs_baseline']}x: "
              + ("under" if r["under_target"] else "OVER") + f" {TARGET_MS:.0f} ms")


if __name__ == "__main__":
    main()
