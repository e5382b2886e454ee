"""`hashtrail devices list|revoke`: the ledger's device registry."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..ledger_db import Ledger
from . import device_arg


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("devices", help="list or revoke ledger devices")
    s = p.add_subparsers(dest="devices_cmd", required=True)
    ls = s.add_parser("list", help="enrolled devices and their state")
    ls.add_argument("--ledger", required=True)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    rv = s.add_parser("revoke", help="refuse every later entry from this device's key")
    rv.add_argument("device", metavar="ID", type=device_arg)
    rv.add_argument("--reason", required=True)
    rv.add_argument("--ledger", required=True)
    rv.add_argument("--json", action="store_true")
    rv.set_defaults(func=run_revoke)


def run_list(args: argparse.Namespace) -> int:
    with Ledger.open(args.ledger) as led:
        devs = led.devices()
    rows = [{"device": d.device_id, "label": d.label, "board": d.board,
             "entries": d.tip_seq + 1, "forked": d.forked, "revoked_at": d.revoked_at,
             "revoked_reason": d.revoked_reason} for d in devs]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            state = "revoked" if r["revoked_at"] else "FORKED" if r["forked"] else "ok"
            print(f"{r['device']}  {r['label']:<16} {r['entries']:>8} entries  {state}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    with Ledger.open(args.ledger) as led:
        d = led.revoke(args.device, args.reason)
    print(json.dumps({"device": d.device_id, "revoked_at": d.revoked_at,
                      "reason": d.revoked_reason}) if args.json
          else f"revoked {d.device_id}: {d.revoked_reason}")
    return 0
