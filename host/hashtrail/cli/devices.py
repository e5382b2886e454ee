"""`hashtrail devices list|revoke`: the ledger's device registry;
`hashtrail devices check`: the devices on serial ports, after provisioning."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hashtrail.cli.args import at_least, device_arg, ledger_arg, store_arg
from hashtrail.collector.port import check_devices
from hashtrail.ledger import firmware
from hashtrail.ledger.enrollment_state import enrollment_state, trusted_map
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_key import LedgerKeyError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "devices", help="list or revoke ledger devices; check devices on their ports")
    s = p.add_subparsers(dest="devices_cmd", required=True)
    ls = s.add_parser("list", help="enrolled devices, their state and whose signature "
                                   "their enrollment carries")
    ledger_arg(ls)
    ls.add_argument("--json", action="store_true", help="print the devices as JSON")
    ls.set_defaults(func=run_list)
    rv = s.add_parser("revoke", help="refuse every later entry from this device's key")
    rv.add_argument("device", metavar="ID", type=device_arg,
                    help="the device id (32 lower-case hex characters)")
    rv.add_argument("--reason", required=True, help="why, kept with the revocation")
    ledger_arg(rv)
    rv.add_argument("--json", action="store_true", help="print the result as JSON")
    rv.set_defaults(func=run_revoke)
    ck = s.add_parser(
        "check", help="per device on each port: board, firmware, id, enrolled, log verifies",
        description="A collection dry-run per port: HELLO, every record the store does not "
                    "hold yet and a checkpoint for a fresh nonce, verified as collect "
                    "verifies them; nothing is stored, acknowledged or set on the device. "
                    "Exit 1 if any device fails.")
    ck.add_argument("--port", action="append", required=True,
                    help="serial port or a virtual device's pty (repeat for several)")
    store_arg(ck, "collector store: enrolled or not, verified from its anchor (without "
                  "one, every log from its entry 0)", required=False)
    ck.add_argument("--baud", type=at_least(1), default=115200,
                    help="serial baud rate (default 115200)")
    ck.add_argument("--json", action="store_true", help="print the results as JSON")
    ck.set_defaults(func=run_check)


def run_list(args: argparse.Namespace) -> int:
    """Each device's row, and its enrollment checked as `verify --ledger` checks it
    (ledger.enrollment_state): a list must not show a label as the collector's word
    when the operator changed it."""
    with Ledger.open(args.ledger) as led:
        devs = led.devices()
        fws = {f.device_id: f for f in firmware.firmware_history(led)}
        trusted = trusted_map(led.trusted_collectors())
        enrolled = [enrollment_state(d, trusted) for d in devs]
    rows: list[dict[str, Any]] = [
        {"device": d.device_id, "label": d.label, "board": d.board,
         "entries": d.tip_seq + 1, "fw": fws[d.device_id].fw,
         "updates": fws[d.device_id].installed, "forked": d.forked,
         "revoked_at": d.revoked_at, "revoked_reason": d.revoked_reason,
         "enrollment": e.to_json()}
        for d, e in zip(devs, enrolled, strict=True)]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r, e in zip(rows, enrolled, strict=True):
            state = "revoked" if r["revoked_at"] else "FORKED" if r["forked"] else "ok"
            n = int(r["updates"] or 0)
            fw = f"fw {r['fw'] or '-'}" + (f" ({n} update{'s' if n > 1 else ''})" if n
                                            else "")
            print(f"{r['device']}  {r['label']:<16} {r['entries']:>8} entries  "
                  f"{fw:<24} {state:<7}  {e.text()}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    try:
        led = Ledger.open_signing(args.ledger)
    except LedgerKeyError:
        led = Ledger.open(args.ledger)  # revoking needs no key; the signed statement does
    with led:
        d = led.revoke(args.device, args.reason)
        if not led.can_sign:
            print("hashtrail: warning: no ledger key: the revocation is not signed, so "
                  "`serve` and `ledger publish` do not show it to monitors; revoke again "
                  "with the key (<ledger>.key or HASHTRAIL_LEDGER_KEY) to sign it",
                  file=sys.stderr)
    print(json.dumps({"device": d.device_id, "revoked_at": d.revoked_at,
                      "reason": d.revoked_reason}) if args.json
          else f"revoked {d.device_id}: {d.revoked_reason}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    rows = check_devices(args.port, args.store, baud=args.baud)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=1))
    else:
        print(f"{'PORT':<14} {'BOARD':<8} {'FW':<7} {'DEVICE':<32} {'ENROLLED':<16} LOG")
        for r in rows:
            enrolled = ("-" if r.enrolled is None else
                        f"yes ({r.label})" if r.enrolled and r.label else
                        "yes" if r.enrolled else "no")
            log = (f"verified, {r.entries} entries" if r.ok else
                   "FAILED: " + "; ".join(r.problems))
            print(f"{r.port:<14} {r.board or '?':<8} {r.fw or '?':<7} "
                  f"{r.device_id or '?':<32} {enrolled:<16} {log}")
    return 0 if rows and all(r.ok for r in rows) else 1
