"""`hashtrail reconcile BUNDLE... --ledger FILE`: merge collector bundles into the ledger."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hashtrail import userfile
from hashtrail.cli.ledger import key_file_arg, open_signing
from hashtrail.collector.bundle import Bundle, read_bundle
from hashtrail.errors import FormatError, InputError, printable
from hashtrail.ledger.reconcile import reconcile


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "reconcile", help="verify bundles and merge them into a ledger")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE",
                   help="signed bundle files (`hashtrail export` writes them)")
    p.add_argument("--ledger", required=True, help="ledger file (made by `ledger init`)")
    key_file_arg(p, "the ledger's signing key (a checkpoint is signed after each run)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


_WHAT = "a bundle (JSON lines, from `hashtrail export`)"


def _read(path: str) -> Bundle:
    userfile.check_input(path, _WHAT, max_bytes=None)
    try:
        return read_bundle(path)
    except FormatError as e:
        raise InputError(f"{path}: {e}; expected {_WHAT}") from None


def run(args: argparse.Namespace) -> int:
    out: list[dict[str, Any]] = []
    bad = 0
    # every bundle read before the ledger is touched: a bad one merges nothing
    bundles = [_read(path) for path in args.bundles]
    with open_signing(args) as led:
        for path, bundle in zip(args.bundles, bundles, strict=True):
            r = reconcile(led, bundle)
            bad += len(r.findings)
            out.append({"bundle": path, "signed_by": r.signed_by, "enrolled": r.enrolled,
                        "accepted": r.accepted,
                        "duplicates": r.duplicates, "pending": r.pending,
                        "checkpoints": r.checkpoints, "forks": r.forks,
                        "findings": [f._asdict() for f in r.findings]})
        size = led.size
    if args.json:
        print(json.dumps({"bundles": out, "size": size}, indent=1))
    else:
        for o in out:
            who = f"trusted collector {o['signed_by']}" if o["signed_by"] else \
                "no trusted collector (enrolls nothing)"
            print(f"{o['bundle']} ({who}): enrolled {o['enrolled']}, accepted "
                  f"{o['accepted']}, duplicates {o['duplicates']}, held {o['pending']}, "
                  f"forks {o['forks']}")
            for f in o["findings"]:
                print(f"  {f['device_id']} seq {f['seq']}: {printable(f['reason'])}")
        print(f"ledger size {size}")
    return 1 if bad else 0
