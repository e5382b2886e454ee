"""`hashtrail export`: a collector store -> a bundle file signed by the collector's
identity key (docs/BUNDLE.md). `--show-key` prints that key's verifier string: what the
ledger operator passes to `hashtrail ledger trust` so this collector may enroll devices.
hashtrail.collector.export does the work; this module parses and prints."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hashtrail.cli.args import device_arg, store_arg
from hashtrail.collector.export import collector_key, export_bundle


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="export a collector store as a bundle")
    store_arg(p, "collector store file")
    p.add_argument("--out", help="bundle file to write ('-' for stdout)")
    p.add_argument("--show-key", action="store_true",
                   help="print this collector's verifier key (for `ledger trust`) and exit")
    p.add_argument("--name", default="", help="collector name written in the bundle")
    p.add_argument("--device", action="append", type=device_arg,
                   help="only this device (repeatable)")
    p.add_argument("--since", metavar="CURSOR",
                   help="only what the ledger has not received from this collector: a "
                        "cursor file from `hashtrail ledger cursor --collector KEY`")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.show_key:
        key = collector_key(args.store)
        print(json.dumps({"collector_key": key}) if args.json else key)
        return 0
    e = export_bundle(args.store, sys.stdout if args.out == "-" else args.out,
                      name=args.name, devices=args.device, since=args.since)
    summary = dict(e.to_json(), out=args.out)
    out = sys.stderr if args.out == "-" else sys.stdout
    print(json.dumps(summary) if args.json else
          f"exported {summary['entries']} entries, {summary['checkpoints']} checkpoints of "
          f"{summary['devices']} devices to {args.out}, signed by collector key "
          f"{summary['collector_key']}", file=out)
    return 0
