#!/usr/bin/env python3
"""Ledger benchmarks: reconcile throughput vs a python-ecdsa baseline, proofs at 10^6 leaves.

    .venv/bin/python tools/bench_ledger.py [--entries 5000] [--leaves 1000000] [--json]

Reconcile: real bundles (host-made chains, tools/devchain.py) into a real SQLite ledger,
for a checkpoint-signed chain and a per-entry-signed chain. Baseline: the same
per-entry signatures verified with python-ecdsa (pure Python), the verifier hashtrail
would be without OpenSSL. Proofs: a 10^6-leaf tree bulk-loaded into the ledger's
`nodes` table, then inclusion and consistency proofs read through SQLite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "host"))

import ecdsa  # noqa: E402
from hashtrail import merkle  # noqa: E402
from hashtrail.ledger_db import Ledger  # noqa: E402
from hashtrail.reconcile import reconcile  # noqa: E402
from ledgerkit import Device, bundle  # noqa: E402


def _reconcile_rate(tmp: Path, n: int, sig: bool) -> tuple[float, float]:
    d = Device(31337 + sig, per_entry_sig=sig)
    d.readings(n - 1)
    b = bundle([d], cps=[(d, d.checkpoint())])
    path = tmp / f"l{int(sig)}.db"
    with Ledger.create(path, "bench/ledger") as led:
        t = time.perf_counter()
        r = reconcile(led, b)
        dt = time.perf_counter() - t
        assert r.accepted == n, r
    return n / dt, os.path.getsize(path) / n


def _ecdsa_rate(n: int) -> float:
    d = Device(4711, per_entry_sig=True)
    d.readings(n - 1)
    vk = ecdsa.VerifyingKey.from_string(d.pub, curve=ecdsa.NIST256p)
    t = time.perf_counter()
    for _, body, sig in d.entries:
        h = hashlib.sha256(body).digest()
        if not vk.verify_digest(sig, h):
            raise SystemExit("baseline verify failed")
    return n / (time.perf_counter() - t)


def _proofs(tmp: Path, leaves: int) -> dict[str, float]:
    tree = merkle.MemoryTree()
    t = time.perf_counter()
    for i in range(leaves):
        tree.append(merkle.leaf_hash(i.to_bytes(8, "big")))
    build = time.perf_counter() - t
    led = Ledger.create(tmp / "big.db", "bench/big")
    with led.tx() as db:
        db.executemany("INSERT INTO nodes VALUES (?,?,?)",
                       ((lv, ix, h) for lv, row in enumerate(tree.levels)
                        for ix, h in enumerate(row)))
        db.execute("UPDATE meta SET value=? WHERE key='size'", (str(leaves),))
    load = time.perf_counter() - t - build
    rng = random.Random(1)
    root = led.root()
    ti = tc = 0.0
    k = 200
    for _ in range(k):
        i = rng.randrange(leaves)
        t = time.perf_counter()
        p = merkle.prove_inclusion(led.node, i, leaves)
        ti += time.perf_counter() - t
        merkle.check_inclusion(tree.get(0, i), i, leaves, root, p)
        old = rng.randrange(1, leaves)
        t = time.perf_counter()
        merkle.prove_consistency(led.node, old, leaves)
        tc += time.perf_counter() - t
    led.close()
    return {"leaves": leaves, "build_s": round(build, 2), "load_s": round(load, 2),
            "inclusion_ms": round(ti / k * 1000, 3), "consistency_ms": round(tc / k * 1000, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=5000)
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        cp_rate, cp_size = _reconcile_rate(tmp, a.entries, False)
        sig_rate, sig_size = _reconcile_rate(tmp, a.entries, True)
        base = _ecdsa_rate(min(a.entries, 1000))
        proofs = _proofs(tmp, a.leaves)
    out = {"machine": f"{platform.machine()} {platform.processor() or ''} "
                      f"{os.cpu_count()} cpus, Python {platform.python_version()}".strip(),
           "entries": a.entries,
           "checkpoint_signed_entries_per_s": round(cp_rate),
           "per_entry_signed_entries_per_s": round(sig_rate),
           "python_ecdsa_verify_per_s": round(base),
           "ratio_checkpoint_signed_vs_python_ecdsa": round(cp_rate / base, 1),
           "ratio_per_entry_signed_vs_python_ecdsa": round(sig_rate / base, 1),
           "ledger_bytes_per_entry": round(cp_size), "ledger_bytes_per_signed_entry":
           round(sig_size), "proofs": proofs}
    print(json.dumps(out, indent=1) if a.json else
          "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
