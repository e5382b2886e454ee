"""`hashtrail verify --ledger FILE`: re-verify a whole ledger from raw bytes."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ..ledger_db import Ledger
from ..ledger_verify import verify_ledger


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="re-verify device chains, checkpoints and the Merkle log of a ledger")
    p.add_argument("--ledger", required=True)
    p.add_argument("--device", help="only this device (the Merkle log is always checked)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _t(t: int | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def run(args: argparse.Namespace) -> int:
    with Ledger.open(args.ledger) as led:
        rep = verify_ledger(led, args.device)
    if args.json:
        print(json.dumps(rep.as_json(), indent=1))
        return 0 if rep.ok else 1
    print(f"{'device':<32}  {'entries':>8}  {'first (UTC)':<16}  {'last (UTC)':<16}  "
          f"{'held':>5}  status")
    for d in rep.devices:
        print(f"{d.device_id:<32}  {d.entries:>8}  {_t(d.first_t):<16}  {_t(d.last_t):<16}  "
              f"{d.pending:>5}  {d.status}")
        for a in d.problems + d.anomalies:
            print(f"    ! {a}")
    for p in rep.problems:
        print(f"! {p}")
    print(f"Merkle log: {rep.size} leaves, root {rep.root}, {rep.checkpoints} signed "
          f"checkpoints: {'OK' if not rep.problems else 'FAILED'}")
    print("verify: OK" if rep.ok else "verify: PROBLEMS FOUND")
    return 0 if rep.ok else 1
