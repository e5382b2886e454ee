#!/usr/bin/env python3
"""Reconcile into a PostgreSQL ledger beside a SQLite one, in the same run.

    .venv/bin/python tools/bench_ledger_pg.py [--entries 100000] [--devices 20]
                                              [--collectors 4] [--json]
                                              [--skip sqlite files collectors]
                                              [--checkpoint-every K]

Needs the PostgreSQL server (HASHTRAIL_TEST_PG, default
postgresql://postgres@127.0.0.1:5432/postgres); each figure uses a fresh database
`hashtrail_bench_<random>`, dropped after.

- `reconcile_*_entries_per_s`: one bundle of `--entries` entries from `--devices`
  checkpoint-signed devices (host-made chains, tools/devchain.py), parsed before the
  clock starts, reconciled by one process into a fresh ledger: every check, the walk,
  the Merkle tree, the rows, the commit and the signed checkpoint.
- `verify_*_seconds`, `verify_*_peak_mb`: `hashtrail verify --ledger` of that ledger
  as a fresh process (interpreter start included), and its peak RSS.
- `reconcile_file_*_seconds`, `reconcile_file_*_peak_mb`: `hashtrail reconcile` of
  the same bundle as one file into another fresh ledger, as a fresh process
  (interpreter start and the bundle file's two passes included), and its peak RSS:
  what a collector's reconcile holds in memory, which must not grow with N.
- `write_floor_*_entries_per_s`: the storage alone, the same entries and tree nodes
  written in one transaction with no checks (add_entries + add_nodes): what the
  backend's bulk path costs, the part of a reconcile that differs between backends.
- `collectors_at_once_pg_entries_per_s`: `--collectors` `hashtrail reconcile`
  processes, each with its own bundle of a share of the devices, started together
  against one PostgreSQL ledger (they queue on its advisory lock), wall time from the
  first start to the last exit, interpreter start and bundle files included;
  `one_process_same_files_pg_entries_per_s` is the same files in one process, the
  serial baseline for it.

Each device signs one checkpoint, over its last entry; with `--checkpoint-every K` also
one every K entries. With only the last one, a device whose entries span several
reconcile chunks (reconcile.CHUNK) has every chunk but its last held in `pending` until
the checkpoint's chunk comes (the shape of a device collected rarely).

`--skip` leaves parts out (at 10^6 each takes minutes): `sqlite` (every SQLite figure),
`files` (the reconcile_file_* figures), `collectors` (the last two).
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


def _cps(devs: list[Device], every: int) -> list[tuple[Device, bytes]]:
    """Each device's checkpoints: one over its last entry, and one every `every` entries
    (0: none more)."""
    out = []
    for d in devs:
        last = len(d.entries) - 1
        seqs = range(every - 1, last, every) if every else range(0)
        out += [(d, d.checkpoint(seq=s)) for s in seqs] + [(d, d.checkpoint())]
    return out


def _reconcile(target: str, key: Path, b: Bundle, n: int) -> float:
    with trust(Ledger.create(target, "bench/ledger", key_file=key)) as led:
        t = time.perf_counter()
        r = reconcile(led, b)
        dt = time.perf_counter() - t
        if r.accepted != n or r.findings:
            raise SystemExit(f"reconcile did not accept every entry: {r.accepted} of {n}")
    return n / dt


def _peak(argv: list[str], ok: str) -> tuple[float, float]:
    """`hashtrail ARGV` as a fresh process: (seconds, peak RSS MB); it must exit 0 and
    print `ok`."""
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child forked from
    # this (large) process would report this process's peak
    code = ("import sys\nfrom hashtrail.cli import main\n"
            f"c = main({argv!r})\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
            "print(hwm[0].split()[1], file=sys.stderr)\n"
            "sys.exit(c)")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
    dt = time.perf_counter() - t
    if r.returncode != 0 or ok not in r.stdout:
        raise SystemExit(f"{argv[0]} failed: {r.stdout[-500:]}{r.stderr[-500:]}")
    return dt, int(r.stderr.strip().splitlines()[-1]) / 1024


def _verify(target: str) -> tuple[float, float]:
    """`hashtrail verify --ledger target` as a fresh process: (seconds, peak RSS MB)."""
    return _peak(["verify", "--ledger", target], "verify: OK")


def _reconcile_file(target: str, key: Path, path: Path, n: int) -> tuple[float, float]:
    """`hashtrail reconcile` of bundle file `path` into a new ledger `target`, as a fresh
    process: (seconds, peak RSS MB)."""
    with trust(Ledger.create(target, "bench/ledger", key_file=key)):
        pass
    got = _peak(["reconcile", "--ledger", target, "--key-file", str(key), str(path)],
                "accepted")
    with Ledger.open(target) as led:
        if led.size != n:
            raise SystemExit(f"reconcile of {path} took {led.size} of {n} entries")
    return got


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


def _collectors(made: list[str], tmp: Path, devs: list[Device], n: int, collectors: int,
                every: int) -> dict[str, int]:
    """`collectors` reconcile processes at once into one PostgreSQL ledger, and the same
    files in one process (module doc)."""
    got: dict[str, int] = {}
    url = pgtest.new_database(made)
    key = tmp / "c.key"
    with trust(Ledger.create(url, "bench/ledger", key_file=key)):
        pass
    files = []
    for c in range(collectors):
        part = devs[c::collectors]
        files.append(save(bundle(part, cps=_cps(part, every),
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

    got["collectors_at_once"] = collectors
    got["collectors_at_once_pg_entries_per_s"] = round(
        n / cli(url, key, [[f] for f in files]))
    # the same bundle files in one process, one after the other: the figure above
    # against the same work (bundle files read and checked, interpreter start) serially
    url1, key1 = pgtest.new_database(made), tmp / "c1.key"
    with trust(Ledger.create(url1, "bench/ledger", key_file=key1)):
        pass
    got["one_process_same_files_pg_entries_per_s"] = round(n / cli(url1, key1, [files]))
    return got


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--collectors", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                    help="each device also signs a checkpoint every K entries (module doc)")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["sqlite", "files", "collectors"],
                    help="leave these parts out (module doc)")
    a = ap.parse_args()
    skip = set(a.skip)
    if pgtest.server_problem():
        raise SystemExit(pgtest.server_problem())
    t = time.perf_counter()
    devs = _devices(a.entries, a.devices)
    n = sum(len(d.entries) for d in devs)
    b = bundle(devs, cps=_cps(devs, a.checkpoint_every))
    made_s = time.perf_counter() - t
    out: dict[str, object] = {**host_machine(),
                              "load_average_1min": round(os.getloadavg()[0], 2),
                              "entries": n, "devices": a.devices,
                              "checkpoint_every": a.checkpoint_every,
                              "chain_and_bundle_seconds": round(made_s, 1)}
    with tempfile.TemporaryDirectory() as td, pgtest.databases() as made:
        tmp = Path(td)
        lite, pg = str(tmp / "l.db"), pgtest.new_database(made)
        backends = ([] if "sqlite" in skip else [("sqlite", lite)]) + [("pg", pg)]
        for name, target in backends:
            out[f"reconcile_{name}_entries_per_s"] = round(
                _reconcile(target, tmp / f"{name}.key", b, n))
        for name, target in backends:
            secs, mb = _verify(target)
            out[f"verify_{name}_seconds"], out[f"verify_{name}_peak_mb"] = \
                round(secs, 1), round(mb)
        if "files" not in skip:
            whole = save(b, tmp / "all.jsonl")
            for name, target in ([] if "sqlite" in skip else [("sqlite", str(tmp / "r.db"))]
                                 ) + [("pg", pgtest.new_database(made))]:
                secs, mb = _reconcile_file(target, tmp / f"r{name}.key", whole, n)
                out[f"reconcile_file_{name}_seconds"] = round(secs, 1)
                out[f"reconcile_file_{name}_peak_mb"] = round(mb)
        if "sqlite" not in skip:
            out["write_floor_sqlite_entries_per_s"] = round(
                _floor(str(tmp / "f.db"), tmp / "f.key", devs))
        out["write_floor_pg_entries_per_s"] = round(
            _floor(pgtest.new_database(made), tmp / "g.key", devs))
        out["load_average_1min_end"] = round(os.getloadavg()[0], 2)
        if "collectors" not in skip:
            out.update(_collectors(made, tmp, devs, n, a.collectors, a.checkpoint_every))
    print(json.dumps(out, indent=1) if a.json else
          "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
