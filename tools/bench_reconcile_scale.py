#!/usr/bin/env python3
"""Reconcile and verify at scale (issue 12): entries/s and peak memory at 10^5..10^6.

    .venv/bin/python tools/bench_reconcile_scale.py [--entries 100000 1000000]
        [--devices 20] [--new 1000] [--checkpoint-every 100] [--per-entry-signed]
        [--rounds 1]
        [--compare OTHER/host] [--profile FILE] [--json]

For each N it writes one signed bundle of N entries from `--devices` host-made devices
(tools/devchain.py format; policy 0, a device checkpoint every `--checkpoint-every`
entries, written as the exporter writes: devices in id order, each by seq) and a
second bundle with `--new` more entries of the same devices. Each step below then runs
in a fresh process, so its peak RSS (getrusage ru_maxrss) is its own:

- openssl (with `--per-entry-signed`): raw OpenSSL verify on all cores over the
  bundle's first 20,000 per-entry signatures, right before and right after each
  round's reconcile; `ratio_reconcile_vs_openssl_all_cores` is the whole `hashtrail
  reconcile` of the file (both passes, the pool's start) against the mean of the two,
  the median over the rounds (this machine's speed drifts by a fifth within minutes:
  a baseline measured once, apart, moved the ratio more than any change did).
  `cpu_ratio_verify_vs_reconcile`: a verify's CPU time against all the CPU time
  reconcile took per entry, its child processes' too: the share of the work that is
  the verifies; with both cores busy throughout, the ratio above is about this.
- floor: read the same bundle line by line (JSON, base64), hash each entry and its
  Merkle leaf, and insert the entries rows in one SQLite transaction. What any
  reconcile must at least do; the ratio reconcile / floor is measured in the same run.
- reconcile: `reconcile_files` (what `hashtrail reconcile` runs) into a new ledger.
- incremental: the `--new` bundle onto that N-entry ledger.
- seen: the N-entry bundle again (already reconciled: skipped).
- verify: `verify_ledger` of the whole ledger.

Times are measured inside the child (no interpreter start), as wall time and as the
process's CPU time (on a shared machine the CPU ratio is the steadier one: other
processes stretch wall time, much less CPU time); a reconcile's own child processes (the
bundle reader, ledger.chunk_reader; verify workers) are counted apart
(`children_cpu_seconds`, `cpu_ratio_with_children_vs_floor`): they run beside it, on
the other core. With `--rounds R` the floor and the
reconcile run R times each, alternating, and the fastest of each counts (the least
disturbed estimate, for the baseline as much as for reconcile). `--compare DIR` also
reconciles the same bundle, in each round, with the hashtrail package in DIR (the
`host` folder of another checkout, e.g. `git worktree add /tmp/old main`): before and
after in one run, against the same floor. `--profile FILE` also
writes a cProfile of the largest reconcile (pstats format) and prints its top entries.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = Path(os.environ.get("BENCH_HASHTRAIL_HOST") or ROOT / "host")   # (--compare)
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(HOST))

import devchain  # noqa: E402
from benchutil import host_machine  # noqa: E402
from hashtrail.collector.bundle import FORMAT, signed_message  # noqa: E402
from hashtrail.formats import checkpoint as cp  # noqa: E402
from hashtrail.formats import entry as en  # noqa: E402
from hashtrail.formats import note  # noqa: E402
from hashtrail.formats.keys import genesis_prev  # noqa: E402

COLLECTOR = note.Signer("collector-bench", bytes(range(32)))


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            + "\n").encode("ascii")


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


class _Chain:
    """One device's chain, kept as its head only (a million entries stay out of
    memory): entries and checkpoints in the devchain format."""

    def __init__(self, secret: int, policy: int = 0) -> None:
        self.d = devchain.Device(secret, policy=policy)
        self.policy = policy
        self.head = genesis_prev(self.d.pub)
        self.seq = 0

    def entry(self) -> bytes:
        s = self.seq
        if s == 0:
            kind, body = en.KIND_KEY_CREATED, {1: self.d.pub, 2: self.policy}
        else:
            kind, body = en.KIND_READING, [{en.SENML_N: "temp", en.SENML_U: "Cel",
                                            en.SENML_V: 20 + (s % 10) / 4}]
        raw = devchain.canon({en.KEY_V: en.VERSION, en.KEY_SEQ: s, en.KEY_T: 1_700_000_000 + s,
                              en.KEY_UP: s * 1000, en.KEY_BOOT: 1, en.KEY_PREV: self.head,
                              en.KEY_FW: "0.1.0", en.KEY_KIND: kind, en.KEY_BODY: body})
        self.head = hashlib.sha256(raw).digest()
        self.seq += 1
        return raw

    def checkpoint(self) -> bytes:
        s = self.seq - 1
        prot = devchain.canon({cp.HDR_ALG: cp.ALG_ES256, cp.HDR_KID: self.d.device_id})
        payload = devchain.canon({cp.CP_V: cp.VERSION, cp.CP_DEVICE: self.d.device_id,
                                  cp.CP_SEQ: s, cp.CP_HEAD: self.head,
                                  cp.CP_T: 1_700_000_000 + s, cp.CP_UP: 5})
        sig = self.d.sign(hashlib.sha256(cp.sig_structure(prot, payload)).digest())
        import cbor2
        return devchain.canon(cbor2.CBORTag(cp.TAG_COSE_SIGN1, [prot, {}, payload, sig]))


def make_bundles(dirpath: Path, n: int, devices: int, new: int, every: int,
                 per_entry: bool = False, leave_out: int | None = None
                 ) -> tuple[Path, Path]:
    """The N-entry bundle and the `new`-entry continuation, both signed (with
    `per_entry`: every entry signed by its device, policy 1; with `leave_out`, each
    device's entry of that index is not in the N-entry bundle: a hole, every entry
    above it held, as a collector that missed one, or a hostile bundle, leaves it)."""
    chains = sorted((_Chain(50_000 + i, 1 if per_entry else 0) for i in range(devices)),
                    key=lambda c: c.d.id_hex)
    paths = []
    for part, total in (("big", n), ("new", new)):
        path = dirpath / f"{part}-{n}.jsonl"
        h = hashlib.sha256()
        cps: list[bytes] = []
        with open(path, "wb") as f:
            def put(obj: dict[str, Any], f: Any = f, h: Any = h) -> None:
                data = _line(obj)
                f.write(data)
                h.update(data)
            put({"collector": {"id": "00" * 8, "name": "bench"}, "created": 1_700_000_000,
                 "format": FORMAT})
            for c in chains:
                put({"type": "enrollment", "device": c.d.id_hex, "pub": _b64(c.d.pub),
                     "label": "bench", "board": "unix", "fw": "0.1.0", "enrolled_at": 1})
            for i, c in enumerate(chains):
                k = total // devices + (1 if i < total % devices else 0)
                for j in range(k):
                    s = c.seq
                    raw = c.entry()
                    sig = c.d.sign(hashlib.sha256(raw).digest()) if per_entry else None
                    if part == "big" and j == leave_out:
                        continue
                    put({"type": "entry", "device": c.d.id_hex, "seq": s,
                         "body": _b64(raw), "sig": _b64(sig)})
                    if (j + 1) % every == 0 or j == k - 1:
                        cps.append(_line({"type": "checkpoint", "device": c.d.id_hex,
                                          "cose": _b64(c.checkpoint()), "nonce": None}))
            for data in cps:
                f.write(data)
                h.update(data)
            f.write(_line({"type": "signature", "key": COLLECTOR.verifier().to_string(),
                           "sig": _b64(COLLECTOR.sign(signed_message(h.digest())))}))
        paths.append(path)
    return paths[0], paths[1]


# -- the steps, each in its own process ---------------------------------------------------

def _floor(bundle: Path, db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("""CREATE TABLE entries (device_id TEXT NOT NULL, seq INTEGER NOT NULL,
        leaf_index INTEGER NOT NULL UNIQUE, entry_hash BLOB NOT NULL, body BLOB NOT NULL,
        sig BLOB, PRIMARY KEY (device_id, seq)) WITHOUT ROWID""")
    t0, c0 = time.perf_counter(), time.process_time()
    sha, b64d, loads = hashlib.sha256, base64.b64decode, json.loads
    n = 0
    conn.execute("BEGIN IMMEDIATE")
    rows = []
    with open(bundle, "rb") as f:
        for raw in f:
            obj = loads(raw)
            if obj.get("type") != "entry":
                continue
            body = b64d(obj["body"])
            h = sha(body).digest()
            did = obj["device"]
            leaf = b"HTL1" + bytes.fromhex(did) + obj["seq"].to_bytes(8, "big") + h + body
            sha(b"\x00" + leaf).digest()
            rows.append((did, obj["seq"], n, h, body, None))
            n += 1
            if len(rows) >= 20_000:
                conn.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?)", rows)
                rows = []
    conn.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    return {"entries": n, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0}


def _openssl(bundle: Path, sample: int) -> dict[str, Any]:
    """Raw OpenSSL on all cores over the bundle's first `sample` per-entry signatures:
    each DER-encoded and its key parsed beforehand, verified by `cryptography` over
    prehashed digests on one thread per CPU (OpenSSL drops the GIL), nothing else; as
    tools/bench_ledger.py measures it."""
    from concurrent.futures import ThreadPoolExecutor

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import (
        Prehashed,
        encode_dss_signature,
    )
    from hashtrail.formats.keys import cpu_workers
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    jobs = []
    with open(bundle, "rb") as f:
        for raw in f:
            obj = json.loads(raw)
            if obj.get("type") == "enrollment":
                keys[obj["device"]] = ec.EllipticCurvePublicKey.from_encoded_point(
                    ec.SECP256R1(), base64.b64decode(obj["pub"]))
            elif obj.get("type") == "entry" and obj["sig"] is not None:
                sig = base64.b64decode(obj["sig"])
                jobs.append((keys[obj["device"]], encode_dss_signature(
                    int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                    hashlib.sha256(base64.b64decode(obj["body"])).digest()))
                if len(jobs) >= sample:
                    break
    alg = ec.ECDSA(Prehashed(hashes.SHA256()))
    workers = cpu_workers()
    step = -(-len(jobs) // workers)

    def run(lo: int) -> None:
        for key, der, h in jobs[lo:lo + step]:
            key.verify(der, h, alg)

    with ThreadPoolExecutor(workers) as pool:        # started before the clock
        t0, c0 = time.perf_counter(), time.process_time()
        list(pool.map(run, range(0, len(jobs), step)))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {"verifies": len(jobs), "seconds": dt, "cpu_seconds": dc, "threads": workers}


def _reconcile(bundle: Path, ledger: Path, profile: str | None) -> dict[str, Any]:
    from hashtrail.ledger.reconcile_files import reconcile_files
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    if profile:
        import cProfile
        pr = cProfile.Profile()
        pr.enable()
    run = reconcile_files(ledger, [str(bundle)])
    if profile:
        pr.disable()
        pr.dump_stats(profile)
    r = run.bundles[0].result
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "children_cpu_seconds": _children_cpu() - k0,
            "accepted": r.accepted,
            "already": getattr(r, "already", False), "pending": r.pending,
            "findings": len(r.findings), "size": run.size}


def _children_cpu() -> float:
    """CPU time of the child processes waited for (the bundle reader, verify workers)."""
    t = os.times()
    return t.children_user + t.children_system


def _verify(ledger: Path) -> dict[str, Any]:
    from hashtrail.ledger.ledger_db import Ledger
    from hashtrail.ledger.ledger_verify import verify_ledger
    t0 = time.perf_counter()
    with Ledger.open(ledger) as led:
        rep = verify_ledger(led)
    return {"seconds": time.perf_counter() - t0, "ok": rep.ok, "size": rep.size,
            "problems": rep.problems[:3]}


def child(args: list[str]) -> None:
    step = args[0]
    if step == "floor":
        out = _floor(Path(args[1]), Path(args[2]))
    elif step == "new-ledger":
        _new_ledger(Path(args[1]))
        out = {}
    elif step == "openssl":
        out = _openssl(Path(args[1]), int(args[2]))
    elif step == "reconcile":
        out = _reconcile(Path(args[1]), Path(args[2]), args[3] if len(args) > 3 else None)
    else:
        out = _verify(Path(args[1]))
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # (the largest of its child processes waited for: the bundle reader, a verify worker)
    out["children_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(out))


def _run(*args: str, host: Path | None = None) -> dict[str, Any]:
    """A step in a fresh process, with this checkout's hashtrail or the one in `host`."""
    h = str(host or ROOT / "host")
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": h,
                                       "BENCH_HASHTRAIL_HOST": h})
    if r.returncode != 0:
        raise SystemExit(f"step {args[0]} failed:\n{r.stderr}")
    return json.loads(r.stdout.splitlines()[-1])


def _new_ledger(path: Path) -> None:
    from hashtrail.ledger.ledger_db import Ledger
    with Ledger.create(path, "bench.example/ledger") as led:
        led.trust_collector(COLLECTOR.verifier(), "bench")


def measure(n: int, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    big, new = make_bundles(work, n, a.devices, a.new, a.checkpoint_every,
                            a.per_entry_signed, a.leave_out)
    out: dict[str, Any] = {"entries": n, "devices": a.devices,
                           "bundle_mb": big.stat().st_size / 2**20,
                           "make_seconds": time.perf_counter() - t0}
    floors: list[dict[str, Any]] = []
    recs: list[dict[str, Any]] = []
    befores: list[dict[str, Any]] = []
    raws: list[dict[str, Any]] = []
    ledger = work / f"ledger-{n}.db"
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    before_ratios: list[float] = []
    for r in range(a.rounds):
        if a.per_entry_signed:
            raws.append(_run("openssl", str(big), str(min(n, 20_000))))
        floors.append(_run("floor", str(big), str(work / f"floor-{n}.db")))
        for p in work.glob(f"floor-{n}.db*"):
            p.unlink()
        if a.compare:
            other = work / f"before-{n}.db"
            _run("new-ledger", str(other), host=Path(a.compare))
            befores.append(_run("reconcile", str(big), str(other), host=Path(a.compare)))
            for p in work.glob(f"before-{n}.db*"):
                p.unlink()
        for p in work.glob(f"ledger-{n}.db*"):
            p.unlink()
        _run("new-ledger", str(ledger))
        prof = [a.profile] if a.profile and n == max(a.entries) and r == 0 else []
        recs.append(_run("reconcile", str(big), str(ledger), *prof))
        if a.per_entry_signed:
            # (again right after: this round's reconcile against the mean of the two,
            # so that the machine's drift over the round counts for both sides alike)
            raws.append(_run("openssl", str(big), str(min(n, 20_000))))
            pair, rc = raws[-2:], recs[-1]
            raw = sum(x["verifies"] / x["seconds"] for x in pair) / 2
            ratios.append(n / rc["seconds"] / raw)
            if a.compare:       # (the other code's reconcile ran between the same two)
                before_ratios.append(n / befores[-1]["seconds"] / raw)
            # CPU: a verify's core time against all of reconcile's per entry (its
            # children's too); the share of the work that is the verifies themselves
            cpu_ratios.append(sum(x["cpu_seconds"] / x["verifies"] for x in pair) / 2
                              / ((rc["cpu_seconds"] + rc["children_cpu_seconds"]) / n))
    out["floor"] = min(floors, key=lambda x: x["seconds"])
    out["reconcile"] = min(recs, key=lambda x: x["seconds"])
    out["rounds"] = {"floor": floors, "reconcile": recs, "before": befores,
                     "openssl": raws}
    if raws:
        best = min(raws, key=lambda x: x["seconds"] / x["verifies"])
        out["openssl_verifies_per_s"] = best["verifies"] / best["seconds"]
        out["ratio_reconcile_vs_openssl_all_cores"] = statistics.median(ratios)
        out["ratios_by_round"] = ratios
        out["cpu_ratio_verify_vs_reconcile"] = statistics.median(cpu_ratios)
    if before_ratios:
        out["ratio_before_vs_openssl_all_cores"] = statistics.median(before_ratios)
        out["before_ratios_by_round"] = before_ratios
    if befores:
        out["before"] = min(befores, key=lambda x: x["seconds"])
        out["before_entries_per_s"] = n / out["before"]["seconds"]
        out["ratio_before_vs_floor"] = out["before"]["seconds"] / out["floor"]["seconds"]
        out["cpu_ratio_before_vs_floor"] = (min(x["cpu_seconds"] for x in befores)
                                            / min(x["cpu_seconds"] for x in floors))
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    out["incremental"] = _run("reconcile", str(new), str(ledger))
    out["seen"] = _run("reconcile", str(big), str(ledger))
    out["verify"] = _run("verify", str(ledger))
    rec = out["reconcile"]
    out["reconcile_entries_per_s"] = n / rec["seconds"]
    out["floor_entries_per_s"] = n / out["floor"]["seconds"]
    out["ratio_reconcile_vs_floor"] = rec["seconds"] / out["floor"]["seconds"]
    out["cpu_ratio_reconcile_vs_floor"] = (min(x["cpu_seconds"] for x in recs)
                                           / min(x["cpu_seconds"] for x in floors))
    # with its child processes (the bundle reader): all the CPU the reconcile took
    out["cpu_ratio_with_children_vs_floor"] = (
        min(x["cpu_seconds"] + x.get("children_cpu_seconds", 0.0) for x in recs)
        / min(x["cpu_seconds"] for x in floors))
    for p in work.glob(f"*-{n}*"):
        p.unlink()
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--per-entry-signed", action="store_true",
                    help="every entry signed by its device (policy 1); adds raw OpenSSL "
                         "verify on all cores over the same signatures, and the ratio")
    ap.add_argument("--compare", metavar="DIR",
                    help="also reconcile with the hashtrail package in DIR (another "
                         "checkout's host folder), in the same rounds")
    ap.add_argument("--leave-out", type=int, metavar="K",
                    help="leave each device's K-th entry out of the bundle: everything "
                         "above it is held (memory must stay flat: issue 12)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run floor and reconcile this many times each; the best counts")
    ap.add_argument("--profile", help="write a cProfile of the largest reconcile here")
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        results = [measure(n, a, Path(d)) for n in a.entries]
    report = {"machine": host_machine(), "results": results}
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        for r in results:
            print(f"N={r['entries']:>9,}  bundle {r['bundle_mb']:.0f} MB  (best of "
                  f"{a.rounds}; load average {r['load_average_1min']})")
            print(f"  floor      {r['floor_entries_per_s']:>9,.0f} entries/s  "
                  f"peak {r['floor']['peak_mb']:.0f} MB")
            print(f"  reconcile  {r['reconcile_entries_per_s']:>9,.0f} entries/s  "
                  f"peak {r['reconcile']['peak_mb']:.0f} MB (children "
                  f"{r['reconcile'].get('children_peak_mb', 0):.0f} MB)  "
                  f"({r['ratio_reconcile_vs_floor']:.2f}x the floor's time, "
                  f"{r['cpu_ratio_reconcile_vs_floor']:.2f}x its CPU time, "
                  f"{r['cpu_ratio_with_children_vs_floor']:.2f}x with its child "
                  f"processes'; accepted {r['reconcile']['accepted']}, held "
                  f"{r['reconcile']['pending']})")
            if "openssl_verifies_per_s" in r:
                print(f"  openssl    {r['openssl_verifies_per_s']:>9,.0f} verifies/s on all "
                      f"cores; reconcile / openssl "
                      f"{r['ratio_reconcile_vs_openssl_all_cores']:.3f} (median of the "
                      f"rounds: {', '.join(f'{x:.3f}' for x in r['ratios_by_round'])}); "
                      f"verify CPU / reconcile CPU "
                      f"{r['cpu_ratio_verify_vs_reconcile']:.3f}")
            if "before" in r:
                print(f"  before     {r['before_entries_per_s']:>9,.0f} entries/s  "
                      f"peak {r['before']['peak_mb']:.0f} MB  "
                      f"({r['ratio_before_vs_floor']:.2f}x the floor's time, "
                      f"{r['cpu_ratio_before_vs_floor']:.2f}x its CPU time; "
                      f"{a.compare})")
                if "ratio_before_vs_openssl_all_cores" in r:
                    print(f"             before / openssl "
                          f"{r['ratio_before_vs_openssl_all_cores']:.3f} (rounds: "
                          f"{', '.join(f'{x:.3f}' for x in r['before_ratios_by_round'])})")
            print(f"  +{a.new} new  {r['incremental']['seconds']:.3f} s  "
                  f"(accepted {r['incremental']['accepted']})")
            print(f"  seen again {r['seen']['seconds']:.4f} s  (already: "
                  f"{r['seen']['already']})")
            print(f"  verify     {r['verify']['seconds']:.1f} s  peak "
                  f"{r['verify']['peak_mb']:.0f} MB  ok {r['verify']['ok']}")
    if a.profile:
        import pstats
        pstats.Stats(a.profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
