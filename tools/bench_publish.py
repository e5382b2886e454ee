#!/usr/bin/env python3
"""`ledger publish` of a fresh folder, tiles read a range per tile (storage `nodes`,
`leaf_entries`: one query each) against the one-row-per-hash reads it replaced (256
queries per tile), in the same run, on SQLite and (with --pg) PostgreSQL.

    .venv/bin/python tools/bench_publish.py [--leaves 70000] [--pg] [--json]

The ledger is real (tests/e2e/tileskit.py: two devices through the real reconcile).
Each figure is the best of three publishes into an empty folder (every tile written),
so the file writes are in both; the ratio is per-row / ranged.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "host"))

from benchutil import host_machine  # noqa: E402
from hashtrail.ledger import tiles  # noqa: E402
from hashtrail.ledger.ledger_db import Ledger  # noqa: E402
from tileskit import make_ledger  # noqa: E402


class PerRowTiles(tiles.LedgerTiles):
    """The reads before ranges: one query per hash, one per leaf (the baseline)."""

    def _read(self, ref: tiles.TileRef) -> bytes:
        start = ref.n * tiles.WIDTH
        if ref.level is None:
            out = bytearray()
            for i in range(start, start + ref.width):
                leaf = self.ledger.leaf(i)
                out += struct.pack(">H", len(leaf)) + leaf
            return bytes(out)
        level = tiles.HEIGHT * ref.level
        return b"".join(self.ledger.node(level, i) for i in range(start, start + ref.width))


def _publish(place: str, out: Path, per_row: bool) -> float:
    saved = tiles.LedgerTiles
    if per_row:
        tiles.LedgerTiles = PerRowTiles  # type: ignore[misc]
    try:
        with Ledger.open(place) as led:
            t0 = time.perf_counter()
            tiles.publish(led, out)
            return time.perf_counter() - t0
    finally:
        tiles.LedgerTiles = saved  # type: ignore[misc]


def _measure(place: str, work: Path, name: str) -> dict[str, Any]:
    got: dict[str, list[float]] = {"per_row": [], "ranged": []}
    for k in range(3):
        for mode in got:
            got[mode].append(_publish(place, work / f"{name}-{mode}-{k}", mode == "per_row"))
    a, b = min(got["per_row"]), min(got["ranged"])
    return {"per_row_s": round(a, 3), "ranged_s": round(b, 3), "ratio": round(a / b, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=70_000)
    ap.add_argument(
        "--pg",
        action="store_true",
        help="also a PostgreSQL ledger "
        "(HASHTRAIL_TEST_PG, default postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not 256 <= a.leaves <= 10**6:
        ap.error("leaves: 256..10^6")
    report: dict[str, Any] = {"machine": host_machine(), "leaves": a.leaves}
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        d = Path(tmp)
        tl = make_ledger(d / "led.db", a.leaves // 10, a.leaves - a.leaves // 10)
        with Ledger.open(tl.path) as led:
            report["size"] = led.size
        report["sqlite"] = _measure(str(tl.path), d, "sqlite")
        if a.pg:
            import psycopg

            admin = os.environ.get(
                "HASHTRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
            )
            name = "hashtrail_bench_" + secrets.token_hex(6)
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            try:
                os.environ["HASHTRAIL_LEDGER_KEY"] = str(d / "pg.key")
                url = admin.rsplit("/", 1)[0] + "/" + name
                make_ledger(url, a.leaves // 10, a.leaves - a.leaves // 10)
                report["postgresql"] = _measure(url, d, "pg")
            finally:
                with psycopg.connect(admin, autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"tree of {report['size']} leaves, publish into an empty folder (best of 3)")
        for b in ("sqlite", "postgresql"):
            if b in report:
                r = report[b]
                print(
                    f"  {b:10} per-row reads {r['per_row_s']:.2f} s, range reads "
                    f"{r['ranged_s']:.2f} s: {r['ratio']}x"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
