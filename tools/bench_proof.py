#!/usr/bin/env python3
"""verify-proof time against its floor: one raw OpenSSL P-256 verify + one Ed25519 verify.

    .venv/bin/python tools/bench_proof.py [--sizes 10000 1000000] [--runs 300]
                                          [--cli-runs 10] [--json]

For each ledger size N: a real SQLite ledger (tools/devchain.py chains through the real
reconcile): a per-entry-signed device (policy 1 in entry 0) and a checkpoint-signed
device (policy 0, a device checkpoint every 100 entries), 10^4 entries in all; above
that, filler leaves (entries rows of a device id no one enrolled) appended with the
ledger's own `append_leaves` up to N (the proof of a device entry does not read them,
but its Merkle path is that of an N-leaf tree), then one signed ledger checkpoint.
Timed, each as the median of `runs` (min in the JSON too):
  - baseline: one P-256 ECDSA verify and one Ed25519 verify with `cryptography`
    (OpenSSL), the two signatures every proof check needs at least;
  - `proof.build_inclusion_proof` (ledger prove, library);
  - `proof.check_inclusion_proof` on the parsed JSON (verify-proof, library), for a
    per-entry signature and for a device checkpoint 99 chain links away (the worst
    case at checkpoint_every = 100);
  - `hashtrail ledger verify-proof` in-process (`cli.main`: argument parsing, reading
    the file, checking, printing) and as a fresh process (`python -m hashtrail.cli`,
    `cli-runs` times; interpreter start and imports included, beside a bare
    `python -c pass` start for scale).
Figures are for the machine it runs on, in one run; baseline and hashtrail are
measured alternately so load on a shared machine hits both.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "host"))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed  # noqa: E402
from hashtrail import cli  # noqa: E402
from hashtrail.formats import note  # noqa: E402
from hashtrail.formats.leaf import leaf_bytes  # noqa: E402
from hashtrail.ledger.ledger_db import Ledger  # noqa: E402
from hashtrail.ledger.proof import build_inclusion_proof, check_inclusion_proof  # noqa: E402
from hashtrail.ledger.reconcile import reconcile  # noqa: E402
from ledgerkit import Device, bundle, trust  # noqa: E402

REAL = 10_000          # device entries in every ledger (two devices)
CP_EVERY = 100
FILL_BATCH = 100_000
FILLER = "ff" * 16     # the filler leaves' device id (no such device is enrolled)


def _devices() -> tuple[Device, Device]:
    signed = Device(4242, per_entry_sig=True)
    signed.entry(3, {1: signed.pub, 2: 1})          # policy 1: every entry signed
    signed.readings(REAL // 2 - 1)
    plain = Device(4343)
    plain.entry(3, {1: plain.pub, 2: 0})            # policy 0: checkpoints only
    plain.readings(REAL // 2 - 1)
    return signed, plain


def _ledger(path: Path, size: int, signed: Device, plain: Device) -> float:
    """Fill a ledger to `size` leaves; returns seconds spent."""
    t = time.perf_counter()
    cps = [(plain, plain.checkpoint(seq=s)) for s in range(CP_EVERY - 1, len(plain.entries),
                                                           CP_EVERY)]
    with trust(Ledger.create(path, "bench.example/proofs")) as led:
        r = reconcile(led, bundle([signed, plain], cps=cps))
        if r.findings or r.accepted != REAL:
            raise SystemExit(f"reconcile did not accept the chains: {r}")
        n = led.size
        while n < size:
            k = min(FILL_BATCH, size - n)
            # filler entries rows with their leaves (a leaf's hash is read from its row)
            bodies = [b"filler" + i.to_bytes(8, "big") for i in range(n, n + k)]
            with led.transaction():
                led.append_leaves([leaf_bytes(FILLER, n + j, b) for j, b in enumerate(bodies)])
                led.storage.add_entries([(FILLER, n + j, n + j, hashlib.sha256(b).digest(), b,
                                          None) for j, b in enumerate(bodies)])
            n += k
        led.sign_checkpoint()
    return time.perf_counter() - t


def _time(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _ms(xs: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(xs) * 1000, 4),
            "min_ms": round(min(xs) * 1000, 4)}


def _baseline() -> Callable[[], None]:
    """One P-256 ECDSA verify (prehashed SHA-256, as a per-entry signature) and one
    Ed25519 verify (as a note signature), with `cryptography`."""
    k = ec.generate_private_key(ec.SECP256R1())
    digest = bytes(range(32))
    alg = ec.ECDSA(Prehashed(hashes.SHA256()))
    der = k.sign(digest, alg)
    pub = k.public_key()
    ek = Ed25519PrivateKey.generate()
    msg = b"bench.example/proofs\n1000000\n" + bytes(44) + b"\n"
    esig = ek.sign(msg)
    epub = ek.public_key()

    def run() -> None:
        pub.verify(der, digest, alg)
        epub.verify(esig, msg)
    return run


def _one_size(tmp: Path, size: int, signed: Device, plain: Device, runs: int,
              cli_runs: int) -> dict[str, Any]:
    path = tmp / f"ledger{size}.db"
    fill_s = _ledger(path, size, signed, plain)
    with Ledger.open(path) as led:
        vkey = led.verifier.to_string()
        seq_sig = len(signed.entries) // 2
        seq_cp = CP_EVERY * (len(plain.entries) // CP_EVERY // 2)   # 99 links to its cp
        docs = {"entry": build_inclusion_proof(led, signed.id_hex, seq_sig),
                "checkpoint": build_inclusion_proof(led, plain.id_hex, seq_cp)}
        prove = _time(lambda: build_inclusion_proof(led, signed.id_hex, seq_sig), runs)
    trusted = note.Verifier.from_string(vkey)
    base = _baseline()
    files = {}
    for kind, doc in docs.items():
        docs[kind] = json.loads(json.dumps(doc))
        files[kind] = tmp / f"proof-{size}-{kind}.json"
        files[kind].write_text(json.dumps(doc, indent=1))
    b_runs: list[float] = []
    lib: dict[str, list[float]] = {"entry": [], "checkpoint": []}
    inproc: list[float] = []
    argv = ["ledger", "verify-proof", "--verifier-key", vkey, str(files["entry"])]
    for _ in range(runs):        # alternate, so machine load hits baseline and hashtrail
        b_runs += _time(base, 1)
        for kind in lib:
            d = docs[kind]
            lib[kind] += _time(lambda d=d: check_inclusion_proof(d, trusted), 1)
        with contextlib.redirect_stdout(io.StringIO()):
            inproc += _time(lambda: cli.main(argv), 1)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "host"))
    sub = _time(lambda: subprocess.run([sys.executable, "-m", "hashtrail.cli", *argv],
                                       env=env, check=True, capture_output=True), cli_runs)
    bare = _time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
                 cli_runs)
    med_b = statistics.median(b_runs)
    return {
        "leaves": size, "device_entries": REAL, "fill_s": round(fill_s, 1),
        "path_hashes": len(docs["entry"]["path"]),
        "chain_links": len(docs["checkpoint"]["device_signature"]["chain"]),
        "baseline_p256_plus_ed25519": _ms(b_runs),
        "prove_library": _ms(prove),
        "verify_library_entry_sig": _ms(lib["entry"]),
        "verify_library_checkpoint_99_links": _ms(lib["checkpoint"]),
        "verify_cli_in_process": _ms(inproc),
        "verify_cli_subprocess": _ms(sub),
        "python_bare_start": _ms(bare),
        "ratio_verify_entry_sig_vs_baseline":
            round(statistics.median(lib["entry"]) / med_b, 2),
        "ratio_verify_checkpoint_vs_baseline":
            round(statistics.median(lib["checkpoint"]) / med_b, 2),
        "ratio_cli_in_process_vs_baseline": round(statistics.median(inproc) / med_b, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--cli-runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    signed, plain = _devices()
    results = []
    with tempfile.TemporaryDirectory() as td:
        for size in a.sizes:
            if size < REAL:
                raise SystemExit(f"sizes start at {REAL} (the device entries)")
            results.append(_one_size(Path(td), size, signed, plain, a.runs, a.cli_runs))
    out = {"machine": f"{platform.machine()} {os.cpu_count()} cpus, Python "
                      f"{platform.python_version()}",
           "load_average_1min": round(os.getloadavg()[0], 2), "runs": a.runs,
           "sizes": results}
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"machine: {out['machine']}, load {out['load_average_1min']}")
        for r in results:
            print(f"\n{r['leaves']} leaves ({r['path_hashes']} path hashes):")
            for k, v in r.items():
                if k not in ("leaves", "path_hashes"):
                    print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
