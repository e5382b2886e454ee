#!/usr/bin/env python3
"""Loopback load on `hashtrail serve` against `python -m http.server` (and nginx, when
installed) serving the same tiles, published to a folder, in the same run.

    .venv/bin/python tools/bench_serve.py [--leaves 20000] [--seconds 5]
                                          [--connections 16] [--max-requests 200000]
                                          [--no-append] [--rate R] [--from-start] [--json]

A real ledger (tests/e2e/tileskit.py: two devices through the real reconcile) is
published with `ledger publish`; both servers run as their own processes on 127.0.0.1
and are sent the same requests: GETs of full hash tiles and entry bundles picked at
random (seeded), over `connections` concurrent connections, kept alive where the server
allows it (http.server answers HTTP/1.0 and closes each one: that is how it serves).
Unless --no-append, a reconcile appends to the ledger in another process during both
measurements (the issue's "while a reconcile appends"; the static folder does not
change, but the load on the machine is the same). Each measurement is bounded by
`seconds` (and, for the Python client, `max-requests`), after a one-second warm-up.
`hashtrail serve` is measured once it says its fleet view is ready (the verification
and readings decode it runs in side processes as it starts are done: a one-time start-up
cost of seconds, reported); `--from-start` measures it from the moment it listens, that
start-up included.
The load generator is wrk (C, one thread) when installed, else this process (asyncio,
one core, which then competes with the server for the CPU: its figures are a floor).
Reported: requests/s, latency p50/p99, non-200 answers (every request names a full
tile of the published tree, immutable under tlog-tiles: any non-200 is a fault, and the
figures are then not valid), and hashtrail's ratio to http.server; and each server's own
CPU time per answered request (user + system of its process, from /proc, over the
measured window): on a machine shared with other work the latencies and rates move with
the load around (runs minutes apart differ by 3x), while CPU per request is the server's
own cost. nginx (one process, `master_process off`, access log off), when installed, is
the floor the machine allows in the same run: a p99 it cannot reach either is the
machine's load, not the server's. The load average before the run is reported with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from benchutil import host_machine  # noqa: E402
from hashtrail.cli import main as cli_main  # noqa: E402
from hashtrail.ledger import tiles  # noqa: E402
from hashtrail.ledger.ledger_db import Ledger  # noqa: E402
from tileskit import Server, TileLedger, make_ledger  # noqa: E402

HOST = "127.0.0.1"      # loopback only


class Load:
    def __init__(self, max_requests: int) -> None:
        self.lat: list[float] = []
        self.bad = 0
        self.max = max_requests


async def _worker(port: int, paths: list[str], until: float, load: Load | None,
                  rnd: random.Random) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < until and (load is None or len(load.lat) < load.max):
        if writer is None:
            reader, writer = await asyncio.open_connection(HOST, port)
        assert reader is not None
        t0 = time.perf_counter()
        writer.write(f"GET /{rnd.choice(paths)} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (x.partition(":") for x in lines[1:] if x)}
        await reader.readexactly(int(fields.get("content-length", "0")))
        dt = time.perf_counter() - t0
        if load is not None:
            load.lat.append(dt)
            if lines[0].split()[1] != "200":
                load.bad += 1
        if lines[0].startswith("HTTP/1.0") or fields.get("connection", "").lower() == "close":
            writer.close()
            await writer.wait_closed()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _run(port: int, paths: list[str], conns: int, seconds: float,
               max_requests: int, pid: int) -> tuple[Load, float, float]:
    rnd = random.Random(1)
    warm = time.perf_counter() + 1.0
    await asyncio.gather(*(_worker(port, paths, warm, None, rnd) for _ in range(conns)))
    load = Load(max_requests)
    c0, t0 = _cpu(pid), time.perf_counter()
    await asyncio.gather(*(_worker(port, paths, t0 + seconds, load, rnd)
                           for _ in range(conns)))
    return load, time.perf_counter() - t0, _cpu(pid) - c0


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, paths: list[str], conns: int, seconds: float,
            max_requests: int, pid: int) -> dict[str, Any]:
    load, wall, cpu = asyncio.run(_run(port, paths, conns, seconds, max_requests, pid))
    lat = sorted(load.lat)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else lat * 99
    return {"requests": len(lat), "seconds": round(wall, 3),
            "rps": round(len(lat) / wall), "p50_ms": round(q[49] * 1e3, 3),
            "p99_ms": round(q[98] * 1e3, 3), "max_ms": round(lat[-1] * 1e3, 3),
            "non_200": load.bad, "cpu_us_per_request": round(cpu * 1e6 / max(1, len(lat)))}


def measure_wrk(port: int, paths: list[str], conns: int, seconds: float,
                work: Path, pid: int, rate: int = 0) -> dict[str, Any]:
    """The same load with wrk (C, one thread; warm-up second first): a client that
    costs the server's core less than this process does. `rate`: each connection
    waits conns/rate s before its next request (wrk's delay()), so the load offered is
    at most `rate` requests/s: the latency at that rate rather than at saturation
    (paced per connection, not open-loop: a stalled answer delays that connection's
    next request, so the p99 of a stalling server comes out a little low)."""
    script = work / "paths.lua"
    script.write_text("paths = {" + ",".join(f'"/{p}"' for p in paths) + "}\n"
                      "math.randomseed(1)\nrequest = function()\n"
                      "  return wrk.format('GET', paths[math.random(#paths)])\nend\n"
                      + (f"delay = function()\n  return {conns * 1000 / rate:.3f}\nend\n"
                         if rate else ""))
    url = f"http://{HOST}:{port}/"
    base = ["wrk", "-t1", f"-c{conns}", "--latency", "-s", str(script)]
    subprocess.run([*base, "-d1s", url], capture_output=True, check=True, timeout=30)
    c0 = _cpu(pid)
    r = subprocess.run([*base, f"-d{max(1, round(seconds))}s", "--timeout", "5s", url],
                       capture_output=True, text=True, check=True, timeout=seconds + 60)
    cpu = _cpu(pid) - c0
    out: dict[str, Any] = {"client": "wrk"}
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    for line in r.stdout.splitlines():
        f = line.split()
        if f[:1] == ["Requests/sec:"]:
            out["rps"] = round(float(f[1]))
        elif len(f) == 2 and f[0] in ("50%", "99%"):
            num = f[1].rstrip("mus")
            out[f"p{f[0][:-1]}_ms"] = round(float(num) * units[f[1][len(num):]], 3)
        elif "requests in" in line:
            out["requests"] = int(f[0])
        elif line.strip().startswith("Non-2xx"):
            out["non_200"] = int(f[-1])
    out.setdefault("non_200", 0)
    out["cpu_us_per_request"] = round(cpu * 1e6 / max(1, out.get("requests", 0)))
    return out


def _append(tl: TileLedger, stop: Any, out: Any, niceness: int = 0) -> None:
    """Reconcile more entries until `stop` is set (a child process); reports how many
    leaves and reconciles. `niceness`: the appender's scheduling priority lowered as an
    operator would run a batch job beside a server (`nice hashtrail reconcile`)."""
    if niceness:
        os.nice(niceness)
    with Ledger.open(tl.path) as led:
        first = size = led.size
    runs = 0
    while not stop.is_set():
        size = tl.grow(40, 100)
        runs += 1
    out.put((size - first, runs))


def wait_ready(proc: subprocess.Popen[str], timeout: float = 300.0) -> float:
    """Seconds until `hashtrail serve` says its fleet view is ready (its start-up
    verification and readings decode are done), reading its stderr on a thread that
    then keeps draining it."""
    import threading
    t0, ready = time.perf_counter(), threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "fleet view ready" in line:
                ready.set()
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout):
        raise RuntimeError(f"hashtrail serve was not ready in {timeout:.0f} s")
    return time.perf_counter() - t0


class NginxServer:
    """nginx serving the published folder: one process (its CPU is then one /proc
    entry), no access log, on a free loopback port."""

    def __init__(self, folder: Path, work: Path) -> None:
        with socket.socket() as sk:
            sk.bind((HOST, 0))
            self.port = sk.getsockname()[1]
        d = work / "nginx"
        d.mkdir()
        temps = "".join(f"  {k}_temp_path {d / k};\n"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (d / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "") +
            f"daemon off;\nmaster_process off;\npid {d / 'nginx.pid'};\n"
            f"error_log {d / 'error.log'};\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n  access_log off;\n{temps}"
            f"  server {{ listen {HOST}:{self.port}; root {folder}; }}\n}}\n")
        self.proc = subprocess.Popen(["nginx", "-p", str(d), "-c", str(d / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start: " + (d / "error.log").read_text()[-500:])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class StaticServer:
    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "0", "--bind", HOST, "--directory",
             str(folder)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split(" port ")[1].split()[0])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--rate", type=int, default=0, metavar="R",
                    help="offer at most R requests/s (wrk only; 0: as fast as answered)")
    ap.add_argument("--append-nice", type=int, default=0, metavar="N",
                    help="run the appending reconciles at nice N (0: same priority)")
    ap.add_argument("--no-nginx", dest="nginx", action="store_false",
                    help="leave nginx out even when installed")
    ap.add_argument("--from-start", action="store_true",
                    help="measure hashtrail serve as soon as it listens, while its fleet "
                         "view verifies the ledger (default: once it says it is ready)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                    help="load generator: wrk when installed (auto), else this process")
    a = ap.parse_args()
    if not (0 < a.seconds <= 60 and 0 < a.connections <= 256 and 0 < a.max_requests
            <= 10**6 and 256 <= a.leaves <= 2 * 10**6 and 0 <= a.append_nice <= 19
            and 0 <= a.rate <= 10**6):
        ap.error("bounded: seconds 0..60, connections 1..256, max-requests 1..10^6, "
                 "leaves 256..2*10^6, append-nice 0..19, rate 0..10^6")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        d = Path(tmp)
        tl = make_ledger(d / "led.db", a.leaves // 10, a.leaves - a.leaves // 10)
        out = d / "pub"
        with open(os.devnull, "w") as null:
            sys.stdout, saved = null, sys.stdout
            try:
                assert cli_main(["ledger", "publish", "--ledger", str(tl.path), "--out",
                                 str(out)]) == 0
            finally:
                sys.stdout = saved
        size = int((out / "checkpoint").read_bytes().split(b"\n")[1])
        paths = [r.path() for r in tiles.tiles_of(size) if not r.partial and
                 (r.level == 0 or r.level is None)]
        results: dict[str, Any] = {}
        use_wrk = a.client == "wrk" or (a.client == "auto" and shutil.which("wrk") is not None)
        if a.rate and not use_wrk:
            ap.error("--rate needs wrk (the Python client runs as fast as answered)")
        ctx = multiprocessing.get_context("fork")
        stop, q = ctx.Event(), ctx.Queue()
        app = None if a.no_append else ctx.Process(target=_append,
                                                    args=(tl, stop, q, a.append_nice))
        if app is not None:
            app.start()
        names = ["http.server", "hashtrail serve"]
        if shutil.which("nginx") is not None and a.nginx:
            names.insert(0, "nginx")
        load_before = os.getloadavg()
        ready_s: float | None = None
        try:
            for name in names:
                srv: Server | StaticServer | NginxServer = \
                    StaticServer(out) if name == "http.server" else \
                    NginxServer(out, d) if name == "nginx" else Server(tl.path)
                try:
                    if name == "hashtrail serve" and not a.from_start:
                        assert isinstance(srv, Server)
                        ready_s = wait_ready(srv.proc)
                    if use_wrk:
                        results[name] = measure_wrk(srv.port, paths, a.connections,
                                                    a.seconds, d, srv.proc.pid, a.rate)
                    else:
                        results[name] = measure(srv.port, paths, a.connections, a.seconds,
                                                a.max_requests, srv.proc.pid)
                finally:
                    srv.stop()
        finally:
            stop.set()
            appended = q.get(timeout=120) if app is not None else (0, 0)
            if app is not None:
                app.join(30)
        h, s = results["hashtrail serve"], results["http.server"]
        report = {"machine": host_machine(), "leaves": size, "paths": len(paths),
                  "load_average_before": [round(x, 2) for x in load_before],
                  "load_average_after": [round(x, 2) for x in os.getloadavg()],
                  "connections": a.connections, "rate": a.rate,
                  "append_nice": a.append_nice,
                  "serve_ready_seconds": None if ready_s is None else round(ready_s, 2),
                  "results": results,
                  "appended_leaves": appended[0], "reconciles": appended[1],
                  "ratio_rps": round(h["rps"] / max(1, s["rps"]), 2),
                  "ratio_cpu_per_request": round(s["cpu_us_per_request"] /
                                                 max(1, h["cpu_us_per_request"]), 2)}
        if "nginx" in results:
            report["ratio_rps_nginx"] = round(h["rps"] / max(1, results["nginx"]["rps"]), 2)
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        m = report["machine"]
        print(f"{m['cpu']}, {m['nproc']} CPUs, Python {m['python']}; tree of {size} "
              f"leaves, {len(paths)} full tiles and bundles, {a.connections} connections"
              f"{f' offering at most {a.rate} req/s' if a.rate else ''}; "
              f"load average {report['load_average_before'][0]} before, "
              f"{report['load_average_after'][0]} after")
        for name, r in results.items():
            print(f"  {name:16} {r['rps']:>7} req/s  p50 {r['p50_ms']:.2f} ms  p99 "
                  f"{r['p99_ms']:.2f} ms  non-200 {r['non_200']}  "
                  f"{r['cpu_us_per_request']} us CPU/request  ({r.get('client', 'python')}"
                  " client)")
        print("  hashtrail serve measured from the start, while its fleet view verifies"
              if ready_s is None else f"  hashtrail serve measured once its fleet view was "
              f"ready ({ready_s:.1f} s after it listened: verified and decoded in its side "
              f"processes)")
        print(f"  meanwhile {appended[1]} reconciles appended {appended[0]} leaves"
              + (f" (at nice {a.append_nice})" if a.append_nice else ""))
        for name, r in results.items():
            if r["non_200"]:
                print(f"  WARNING: {name} answered {r['non_200']} requests with another "
                      f"status than 200: every path asked is a full tile of the tree, so "
                      f"these figures are not valid")
        print(f"  hashtrail serve / http.server: {report['ratio_rps']}x requests/s, "
              f"{report['ratio_cpu_per_request']}x less CPU per request")
        if "ratio_rps_nginx" in report:
            print(f"  hashtrail serve / nginx: {report['ratio_rps_nginx']}x requests/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
