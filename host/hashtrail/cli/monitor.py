"""`hashtrail monitor URL`: follow a log served as C2SP tlog-tiles and report, per
device, new entries, gaps, forks and what devices report (hashtrail.ledger.monitor)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.cli.args import at_least, device_arg, seconds, trusted_key, trusted_key_args
from hashtrail.cli.serve import url_arg
from hashtrail.ledger.monitor import Pass, follow, monitor_once


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "monitor", help="follow a log served as tlog-tiles: new entries, gaps, forks "
                        "and device reports per device")
    p.add_argument("url", type=url_arg, metavar="URL", help="the log's URL")
    trusted_key_args(p)
    p.add_argument("--device", type=device_arg, metavar="ID",
                   help="report only this device (every leaf is still checked)")
    p.add_argument("--state", metavar="FILE",
                   help="where the monitor keeps what it saw (made when missing; its "
                        "verified replica beside it in FILE.tiles/); without it every "
                        "run reads the whole log")
    p.add_argument("--follow", action="store_true",
                   help="keep polling the log (Ctrl-C stops)")
    p.add_argument("--interval", type=seconds, default=10.0, metavar="S",
                   help="with --follow: seconds between passes (default 10)")
    p.add_argument("--passes", type=at_least(1), metavar="N",
                   help="with --follow: stop after N passes")
    p.add_argument("--no-signatures", action="store_true",
                   help="do not fetch and check each new entry's device signature (one "
                        "request per entry)")
    p.add_argument("--json", action="store_true", help="one JSON object per pass")
    p.set_defaults(func=run)


def _print(p: Pass, as_json: bool) -> None:
    if as_json:
        print(json.dumps(p.to_json()), flush=True)
        return
    print(f"monitor {p.url}: tree size {p.old_size} -> {p.size} ({p.status}), "
          f"{sum(d.new for d in p.devices)} new entries, {len(p.devices)} devices"
          + (" ALARM" if p.alarm else ""), flush=True)
    for d in p.devices:
        seqs = f"seq {d.first_seq}..{d.last_seq}" if d.new else "nothing new"
        notes = [f"GAP seqs {a}..{b}" for a, b in d.gaps] + \
            [f"FORK at seq {s}" for s in d.forks] + \
            [f"CHAIN BREAK at seq {s}" for s in d.breaks] + \
            [f"device reports its log altered (entry seq {s})" for s in d.altered] + \
            [f"device reports an overflow (entry seq {s})" for s in d.overflows] + \
            [f"BAD DEVICE SIGNATURE at seq {s}: {why}" for s, why in d.bad_signatures] + \
            ([f"revoked by the ledger at {d.revoked[0]}: {d.revoked[1]}"]
             if d.revoked else []) + \
            ([f"REVOCATION WITHDRAWN: {d.revocation_lost}"] if d.revocation_lost else [])
        print(f"  {d.device}  +{d.new:<6} {seqs:<20} total {d.entries}"
              + ("".join(f"\n      ! {n}" for n in notes)))
    for x in p.problems:
        print(f"  ! {x}")
    print(f"  device signatures: {p.signatures}; revocations: {p.revocations}", flush=True)


def run(args: argparse.Namespace) -> int:
    trusted = trusted_key(args)
    what = "the monitor's state file"
    state = None if args.state is None else \
        userfile.check_input(args.state, what, max_bytes=None) \
        if Path(args.state).exists() else userfile.check_output(args.state, what)
    if not args.follow:
        p = monitor_once(args.url, trusted, state, args.device,
                         signatures=not args.no_signatures)
        _print(p, args.json)
        return 1 if p.alarm else 0
    alarms = follow(args.url, trusted, state, args.device, args.interval,
                    lambda p: _print(p, args.json), args.passes,
                    signatures=not args.no_signatures)
    return 1 if alarms else 0
