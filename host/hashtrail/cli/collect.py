"""`hashtrail collect`: pull, verify and store everything new from one device
(hashtrail.collector.port.collect_port does the work; this module parses and prints)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hashtrail.cli import progress
from hashtrail.cli.args import at_least, seconds, store_arg
from hashtrail.collector.collect import DEADLINE_S, MAX_RECORDS
from hashtrail.collector.port import collect_port


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "collect", help="collect new records from an enrolled device into a collector store")
    p.add_argument("--port", required=True, help="serial port (or a virtual device's pty)")
    store_arg(p, "collector store file (SQLite), made by `hashtrail enroll`")
    p.add_argument("--baud", type=at_least(1), default=115200,
                   help="serial baud rate (default 115200)")
    p.add_argument("--no-ack", action="store_true",
                   help="do not let the device prune what was collected")
    p.add_argument("--no-set-time", action="store_true",
                   help="do not set the device clock when it is unset")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--deadline", type=seconds, default=DEADLINE_S, metavar="SECONDS",
                   help=f"stop after this long, whatever the device does "
                        f"(default {DEADLINE_S:g})")
    p.add_argument("--max-records", type=at_least(1), default=MAX_RECORDS, metavar="N",
                   help=f"at most N records in one run, fewer when the device announces "
                        f"fewer (default {MAX_RECORDS})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Notices (the device woken from its REPL, its own altered-log report, a failed
    # acknowledgement) come through the library's loggers, on stderr: the --json
    # summary on stdout stays one JSON document.
    with progress.bar("collect", unit="entries") as bar:
        def shown(got: int, expected: int, nbytes: int) -> None:
            bar.update(got, max(expected, got), detail=f"{nbytes / 1024:.1f} KiB")

        res = collect_port(args.store, args.port, args.baud, ack=not args.no_ack,
                           set_time=not args.no_set_time, progress=shown,
                           deadline=args.deadline, max_records=args.max_records)
    if args.json:
        print(json.dumps(res.to_json()))
    else:
        print(f"{res.device_id} ({res.label}): {res.new_entries} new entries accepted, "
              f"up to seq {res.upto_seq}; "
              f"{'acknowledged' if res.acked else 'not acknowledged'}; "
              f"{res.bytes_in} bytes in {res.seconds:.2f} s")
    return 0
