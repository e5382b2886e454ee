"""`hashtrail mirror URL --out DIR`: keep a verified replica of a log served as C2SP
tlog-tiles (hashtrail.ledger.mirror does the fetching and checking)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.cli.args import trusted_key, trusted_key_args
from hashtrail.cli.serve import url_arg
from hashtrail.ledger.mirror import mirror


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "mirror", help="fetch a log served as tlog-tiles, check every tile against its "
                       "signed checkpoint and the last one seen, keep a replica")
    p.add_argument("url", type=url_arg, metavar="URL",
                   help="the log's URL (`hashtrail serve`, or a published folder behind "
                        "any web server)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the replica folder (made when missing): the published tlog-tiles "
                        "layout, its checkpoint the last one this mirror proved")
    trusted_key_args(p)
    p.add_argument("--words", action="store_true",
                   help="also copy each new entry's device signature (hashtrail/word/...), "
                        "each checked as a whole proof first, so `ledger verify-proof "
                        "--url` works against the replica: one request per entry")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    trusted = trusted_key(args)
    out = userfile.check_dir(args.out, "the replica folder")
    r = mirror(args.url, Path(out), trusted, words=args.words)
    if args.json:
        print(json.dumps({"url": args.url, "out": str(out), **r._asdict()}))
        return 0
    rate = f", {r.size - r.old_size} new entries verified at " \
           f"{(r.size - r.old_size) / r.verify_seconds:,.0f}/s" \
        if r.verify_seconds > 0 and r.size > r.old_size else ""
    what = {"updated": f"tree size {r.old_size} -> {r.size}: {r.fetched} tiles fetched, "
                       f"{r.kept} kept{rate}",
            "unchanged": f"tree size {r.size}: nothing new",
            "behind": f"tree size {r.size}: the server's checkpoint is older (consistent)"}
    if args.words:
        what["updated"] += f"; {r.words} device words checked" + (
            f", {r.words_missing} entries without one yet" if r.words_missing else "")
    print(f"mirror {out}: {what[r.status]} ({r.requests} requests, {r.bytes:,} bytes, "
          f"{r.seconds:.2f} s)")
    return 0
