#!/usr/bin/env python3
"""Reconcile into a PostgreSQL ledger beside a SQLite one, in the same run.

    .venv/bin/python tools/bench_ledger_pg.py [--entries 100000] [--devices 20]
                                              [--collectors 4] [--json]

Needs the PostgreSQL server (HASHTRAIL_TEST_PG, default
postgresql://postgres@127.0.0.1:5432/postgres); each figure uses a fresh database
`hashtrail_bench_<random>`, dropped after.

- `reconcile_*_entries_per_s`: one bundle of `--entries` entries from `--devices`
  checkpoint-signed devices (host-made chains, tools/devchain.py), parsed before the
  clock starts, reconciled by one process into a fresh ledger: every check, the walk,
  the Merkle tree, the rows, the commit and the signed checkpoint.
- `verify_*_seconds`, `verify_*_peak_mb`: `hashtrail verify --ledger` of that ledger
  as a fresh process (interpreter start included), and its peak RSS.
- `write_floor_*_entries_per_s`: the storage alone, the same entries and tree nodes
  written in one transaction with no checks (add_entries + add_nodes): what the
  backend's bulk path costs, the part of a reconcile that differs between backends.
- `collectors_at_once_pg_entries_per_s`: `--collectors` `hashtrail reconcile`
  processes, each with its own bundle of a share of the devices, started together
  against one PostgreSQL ledger (they queue on its advisory lock), wall time from the
  first start to the last exit, interpreter start and bundle files included;
  `one_process_same_files_pg_entries_per_s` is the same files in one process, the
  serial baseline for it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "host"))

import pgtest  # noqa: E402
from benchutil import host_machine  # noqa: E402
from hashtrail.collector.bundle import Bundle  # noqa: E402
from hashtrail.formats import merkle  # noqa: E402
from hashtrail.ledger.ledger_db import Ledger  # noqa: E402
from hashtrail.ledger.reconcile import reconcile  # noqa: E402
from ledgerkit import Device, bundle, save, trust  # noqa: E402


def _devices(n: int, k: int) -> list[Device]:
    out = []
    for i in range(k):
        d = Device(42_000 + i)
        d.readings(n // k - 1)
        out.append(d)
    return out


def _reconcile(target: str, key: Path, b: Bundle, n: int) -> float:
    with trust(Ledger.create(target, "bench/ledger", key_file=key)) as led:
        t = time.perf_counter()
        r = reconcile(led, b)
        dt = time.perf_counter() - t
        if r.accepted != n or r.findings:
            raise SystemExit(f"reconcile did not accept every entry: {r.accepted} of {n}")
    return n / dt


def _verify(target: str) -> tuple[float, float]:
    """`hashtrail verify --ledger target` as a fresh process: (seconds, peak RSS MB)."""
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child forked from
    # this (large) process would report this process's peak
    code = ("import sys\nfrom hashtrail.cli import main\n"
            f"c = main(['verify', '--ledger', {target!r}])\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
            "print(hwm[0].split()[1], file=sys.stderr)\n"
            "sys.exit(c)")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
    dt = time.perf_counter() - t
    if r.returncode != 0 or "verify: OK" not in r.stdout:
        raise SystemExit(f"verify failed: {r.stdout[-500:]}{r.stderr[-500:]}")
    return dt, int(r.stderr.strip().splitlines()[-1]) / 1024


def _floor(target: str, key: Path, devs: list[Device]) -> float:
    """Entries per second for the storage's bulk writes alone (each: its entries row and
    its ~1 tree node above the leaves, hashed by Ledger.append_leaves)."""
    rows = []
    leaves = []
    for d in devs:
        for seq, body, sig in d.entries:
            h = hashlib.sha256(body).digest()
            rows.append((d.id_hex, seq, len(rows), h, body, sig))
            leaves.append(b"HTL1" + d.device_id + seq.to_bytes(8, "big") + h + body)
    with Ledger.create(target, "bench/ledger", key_file=key) as led:
        t = time.perf_counter()
        with led.transaction():
            led.append_leaves(leaves)
            led.storage.add_entries(rows)
        dt = time.perf_counter() - t
        assert led.size == len(rows)
        assert led.root() == merkle.root(lambda lv, i: led.node(lv, i), len(rows))
    return len(rows) / dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--collectors", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if pgtest.server_problem():
        raise SystemExit(pgtest.server_problem())
    t = time.perf_counter()
    devs = _devices(a.entries, a.devices)
    n = sum(len(d.entries) for d in devs)
    b = bundle(devs, cps=[(d, d.checkpoint()) for d in devs])
    made_s = time.perf_counter() - t
    out: dict[str, object] = {**host_machine(),
                              "load_average_1min": round(os.getloadavg()[0], 2),
                              "entries": n, "devices": a.devices,
                              "chain_and_bundle_seconds": round(made_s, 1)}
    with tempfile.TemporaryDirectory() as td, pgtest.databases() as made:
        tmp = Path(td)
        lite, pg = str(tmp / "l.db"), pgtest.new_database(made)
        out["reconcile_sqlite_entries_per_s"] = round(_reconcile(lite, tmp / "l.key", b, n))
        out["reconcile_pg_entries_per_s"] = round(_reconcile(pg, tmp / "p.key", b, n))
        for name, target in (("sqlite", lite), ("pg", pg)):
            secs, mb = _verify(target)
            out[f"verify_{name}_seconds"], out[f"verify_{name}_peak_mb"] = \
                round(secs, 1), round(mb)
        out["write_floor_sqlite_entries_per_s"] = round(
            _floor(str(tmp / "f.db"), tmp / "f.key", devs))
        out["write_floor_pg_entries_per_s"] = round(
            _floor(pgtest.new_database(made), tmp / "g.key", devs))
        # several collectors at once, one process each, into one PostgreSQL ledger
        url = pgtest.new_database(made)
        key = tmp / "c.key"
        with trust(Ledger.create(url, "bench/ledger", key_file=key)):
            pass
        files = []
        for c in range(a.collectors):
            part = devs[c::a.collectors]
            files.append(save(bundle(part, cps=[(d, d.checkpoint()) for d in part],
                                     name=f"site-{c}"), tmp / f"site-{c}.jsonl"))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "host")}

        def cli(url: str, key: Path, groups: list[list[Path]]) -> float:
            """Wall time of one `reconcile` process per group, all started at once."""
            t = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-m", "hashtrail.cli", "reconcile",
                                       "--ledger", url, "--key-file", str(key),
                                       *map(str, g)], stdout=subprocess.DEVNULL, env=env)
                     for g in groups]
            codes = [p.wait() for p in procs]
            dt = time.perf_counter() - t
            with Ledger.open(url) as led:
                if codes != [0] * len(procs) or led.size != n:
                    raise SystemExit(f"reconcile processes: exits {codes}, size {led.size}")
            return dt

        out["collectors_at_once"] = a.collectors
        out["collectors_at_once_pg_entries_per_s"] = round(
            n / cli(url, key, [[f] for f in files]))
        # the same bundle files in one process, one after the other: the figure above
        # against the same work (bundle files read and checked, interpreter start) serially
        url1, key1 = pgtest.new_database(made), tmp / "c1.key"
        with trust(Ledger.create(url1, "bench/ledger", key_file=key1)):
            pass
        out["one_process_same_files_pg_entries_per_s"] = round(n / cli(url1, key1, [files]))
    print(json.dumps(out, indent=1) if a.json else
          "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
