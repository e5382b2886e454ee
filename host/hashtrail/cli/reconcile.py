"""`hashtrail reconcile BUNDLE... --ledger FILE`: merge collector bundles into the ledger
(hashtrail.ledger.reconcile_files does the work; this module parses and prints)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hashtrail.cli import progress
from hashtrail.cli.args import key_file_arg, ledger_arg, migrated_notice
from hashtrail.errors import printable
from hashtrail.ledger.reconcile_files import reconcile_files


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "reconcile", help="verify bundles and merge them into a ledger")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE",
                   help="signed bundle files (`hashtrail export` writes them)")
    ledger_arg(p, "ledger (made by `ledger init`): a SQLite file, or a postgresql:// URL")
    key_file_arg(p, "the ledger's signing key (a checkpoint is signed after each run)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with progress.bar("reconcile", len(args.bundles), unit="bundles") as bar:
        run_ = reconcile_files(args.ledger, args.bundles, args.key_file,
                               migrated=migrated_notice(args.ledger), progress=bar.update)
    out = [b.to_json() for b in run_.bundles]
    if args.json:
        print(json.dumps({"bundles": out, "size": run_.size}, indent=1))
    else:
        for o in out:
            if o["already"]:
                print(f"{o['bundle']}: already reconciled (nothing read, nothing changed)")
                continue
            who = f"trusted collector {o['signed_by']}" if o["signed_by"] else \
                "no trusted collector (enrolls nothing)"
            print(f"{o['bundle']} ({who}): enrolled {o['enrolled']}, accepted "
                  f"{o['accepted']}, duplicates {o['duplicates']}, held {o['pending']}, "
                  f"forks {o['forks']}")
            if o["enrollments_signed"]:
                print(f"  enrollment signatures added to {o['enrollments_signed']} "
                      "device(s) enrolled unsigned before")
            for f in o["findings"]:
                print(f"  {f['device_id']} seq {f['seq']}: {printable(f['reason'])}")
        print(f"ledger size {run_.size}")
    return 1 if run_.findings else 0
