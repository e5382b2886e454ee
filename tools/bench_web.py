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

    .venv/bin/python tools/bench_web.py --state-key 1000,10000 [--repeat 9] [--json]

The cost of the fleet view's state key (web/data.state_key), which every /api/fleet
request computes to know whether its cached verification still holds: the key as it
is (each device's enrollment fields, collector key and signature, and the trusted
collectors, so an edited enrollment is seen at once) against the narrower key it was
before those were added (tip, fork flag, revocation and label per device), timed
alternately in one process on the same ledger, the median of `--repeat` rounds (and
the ratio of the best rounds); and
beside them a warm /api/fleet from a real `hashtrail serve` (the key plus the cached
answer), for the share the widening adds to a request. The ledgers are built as above
(5 entries per device), and every enrollment is then signed by the bench collector
(formats.enrollment), as an exporting collector signs it, so the key holds the real
key strings and 64-byte signatures.
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


def _sign_enrollments(ledger: Path) -> None:
    """Every device's enrollment signed by the bench collector (as `export` signs it)."""
    import sqlite3

    from hashtrail.formats.enrollment import sign_enrollment
    key = brs.COLLECTOR.verifier().to_string()
    db = sqlite3.connect(ledger)
    with db:
        rows = db.execute("SELECT device_id, pub, label, board, fw, enrolled_at FROM "
                          "devices").fetchall()
        db.executemany("UPDATE devices SET enroll_key=?, enroll_sig=? WHERE device_id=?",
                       [(key, sign_enrollment(brs.COLLECTOR, did, bytes(pub), label, board,
                                              fw, at), did)
                        for did, pub, label, board, fw, at in rows])
    db.close()


def _narrow_state_key(led: Any) -> tuple[Any, ...]:
    """web/data.state_key as it was before it covered enrollments (commit 09a1f13^)."""
    st = led.storage
    with st.snapshot():
        devs = tuple((d.device_id, d.tip_seq, d.tip_head, d.forked, d.revoked_at, d.label)
                     for d in led.devices())
        held = sum(1 for _ in st.scan_pending())
        cps = sum(1 for _ in st.scan_device_checkpoints())
        ev = sum(1 for _ in st.scan_evidence())
        return (led.size, devs, held, cps, ev, len(led.checkpoints()))


def state_key_cost(work: Path, devices: int, repeat: int) -> dict[str, Any]:
    """The state key with and without the enrollment fields, alternately, on one
    ledger of `devices` devices with signed enrollments; and a warm /api/fleet."""
    from hashtrail.ledger.ledger_db import Ledger
    from hashtrail.web import data
    ledger, built = build(work, f"key-{devices}", 5 * devices, devices, 5)
    _sign_enrollments(ledger)
    wide: list[float] = []
    narrow: list[float] = []
    with Ledger.open(ledger) as led:
        assert data.state_key(led)[1][0][-1] is not None      # the signatures are in it
        data.state_key(led)
        _narrow_state_key(led)                                # warm the page cache
        pair = [(data.state_key, wide), (_narrow_state_key, narrow)]
        for i in range(repeat):
            for fn, out in pair if i % 2 == 0 else pair[::-1]:     # alternately first
                t0 = time.perf_counter()
                fn(led)
                out.append(time.perf_counter() - t0)
    srv = Server(ledger)
    try:
        first = srv.get_seconds("api/fleet")
        warm = [srv.get_seconds("api/fleet") for _ in range(repeat)]
    finally:
        srv.stop()
    w, n, f = (statistics.median(x) * 1000 for x in (wide, narrow, warm))
    return {"devices": devices, "build_seconds": round(built, 1),
            "state_key_ms": round(w, 2), "narrow_state_key_ms": round(n, 2),
            "ratio": round(w / n, 2), "added_ms": round(w - n, 2),
            "best_ratio": round(min(wide) / min(narrow), 2),
            "wide_runs_ms": [round(x * 1000, 2) for x in wide],
            "narrow_runs_ms": [round(x * 1000, 2) for x in narrow],
            "first_api_fleet_s": round(first, 2), "warm_api_fleet_ms": round(f, 1),
            "added_share_of_warm_request": round((w - n) / f, 3)}


def main_state_key(a: argparse.Namespace) -> None:
    report: dict[str, Any] = {"machine": host_machine(), "repeat": a.repeat, "runs": []}
    with tempfile.TemporaryDirectory() as d:
        for n in (int(x) for x in a.state_key.split(",")):
            report["runs"].append(state_key_cost(Path(d), n, a.repeat))
    if a.json:
        print(json.dumps(report, indent=1))
        return
    m = report["machine"]
    print(f"{m['cpu']}, {m['nproc']} CPUs, Python {m['python']}; median of {a.repeat}")
    for r in report["runs"]:
        print(f"  {r['devices']} devices (signed enrollments): state key "
              f"{r['state_key_ms']} ms, without the enrollment fields "
              f"{r['narrow_state_key_ms']} ms: ratio {r['ratio']}x (+{r['added_ms']} ms; "
              f"best rounds {r['best_ratio']}x); warm /api/fleet {r['warm_api_fleet_ms']} "
              f"ms, so the widening is {100 * r['added_share_of_warm_request']:.1f}% of a "
              "request")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--state-key", metavar="N,N", help="measure the state key's cost at "
                    "these device counts instead (module doc)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.state_key:
        return main_state_key(a)
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
