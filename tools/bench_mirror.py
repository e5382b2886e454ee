#!/usr/bin/env python3
"""How fast `hashtrail mirror` verifies a log: entries/s for a whole new replica.

    .venv/bin/python tools/bench_mirror.py [--leaves 1000000] [--entry-bytes 100]
                                           [--connections 8] [--json]

A log of `leaves` leaves is laid out as C2SP tlog-tiles in a temporary folder (leaf
bytes as hashtrail.formats.leaf makes them, each over `entry-bytes` random bytes: the
mirror checks the tree, not what the entries say; hash tiles computed here, the
checkpoint signed with a throwaway ledger key), served by `hashtrail serve --dir` in its
own process on 127.0.0.1, and mirrored into an empty folder by
hashtrail.ledger.mirror.mirror in this process (what `hashtrail mirror URL --out DIR
--verifier-key K` runs). Reported: the whole run (fetch over HTTP, verify, write the
replica) and the verification alone (entry bundles hashed against level-0 tiles, every
tile above checked against the tiles below, root and signature), as entries/s.
The server and the mirror share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

from hashtrail.formats import merkle, note  # noqa: E402
from hashtrail.formats.leaf import leaf_bytes  # noqa: E402
from hashtrail.ledger import tiles  # noqa: E402
from hashtrail.ledger.mirror import mirror  # noqa: E402
from hashtrail.ledger.tiles import WIDTH, TileHashes, TileRef  # noqa: E402

ORIGIN = "bench.hashtrail.example/mirror"


def _tile_root(data: bytes) -> bytes:
    hs = [data[i:i + 32] for i in range(0, len(data), 32)]
    while len(hs) > 1:
        hs = [merkle.node_hash(hs[i], hs[i + 1]) for i in range(0, len(hs), 2)]
    return hs[0]


def build(folder: Path, leaves: int, entry_bytes: int) -> tuple[note.Signer, float]:
    """The log as tlog-tiles in `folder`; (its signer, seconds taken)."""
    t0 = time.monotonic()
    signer = note.Signer.generate(ORIGIN)
    rnd = os.urandom(entry_bytes + 4096)
    dev = hashlib.sha256(b"bench").hexdigest()[:32]
    level = bytearray()
    written: dict[TileRef, bytes] = {}
    for n in range((leaves + WIDTH - 1) // WIDTH):
        lo, hi = n * WIDTH, min(leaves, (n + 1) * WIDTH)
        bundle, hashes = bytearray(), bytearray()
        for i in range(lo, hi):
            o = i % 4096
            leaf = leaf_bytes(dev, i, rnd[o:o + entry_bytes])
            bundle += len(leaf).to_bytes(2, "big") + leaf
            hashes += merkle.leaf_hash(leaf)
        level += hashes
        for ref, data in ((tiles.tile_for(None, n, leaves), bundle),
                          (tiles.tile_for(0, n, leaves), hashes)):
            p = folder / ref.path()
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            if ref.level == 0:
                written[ref] = bytes(data)
    t = 1
    while leaves >> (8 * t):
        below = bytes(level)
        level = bytearray()
        for i in range(0, len(below) // (WIDTH * 32)):
            level += _tile_root(below[i * WIDTH * 32:(i + 1) * WIDTH * 32])
        for n in range((len(level) // 32 + WIDTH - 1) // WIDTH):
            ref = tiles.tile_for(t, n, leaves)
            data = bytes(level[n * WIDTH * 32:n * WIDTH * 32 + ref.width * 32])
            p = folder / ref.path()
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            written[ref] = data
        t += 1
    root = merkle.root(TileHashes(written.__getitem__, leaves).get, leaves)
    (folder / tiles.CHECKPOINT).write_bytes(
        note.sign_checkpoint(note.Checkpoint(ORIGIN, leaves, root), [signer]))
    return signer, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--entry-bytes", type=int, default=100)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        log, rep = Path(tmp) / "log", Path(tmp) / "replica"
        signer, built = build(log, a.leaves, a.entry_bytes)
        proc = subprocess.Popen([sys.executable, "-m", "hashtrail", "serve", "--dir", str(log),
                                 "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split(" at ")[1].split()[0]
            r = mirror(url, rep, signer.verifier(), connections=a.connections)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
        res = {"leaves": a.leaves, "entry_bytes": a.entry_bytes, "build_s": round(built, 2),
               "requests": r.requests, "bytes": r.bytes, "seconds": round(r.seconds, 2),
               "verify_seconds": round(r.verify_seconds, 2),
               "entries_per_s": round(r.size / r.seconds),
               "verified_entries_per_s": round(r.size / r.verify_seconds)}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"mirror of {a.leaves:,} entries ({a.entry_bytes}-byte entries) from `hashtrail "
              f"serve --dir` on loopback: {r.requests:,} requests, {r.bytes:,} bytes\n"
              f"  whole run (fetch, verify, write): {r.seconds:.2f} s = "
              f"{res['entries_per_s']:,} entries/s\n"
              f"  verification alone: {r.verify_seconds:.2f} s = "
              f"{res['verified_entries_per_s']:,} entries/s\n"
              f"  (log built in {built:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
