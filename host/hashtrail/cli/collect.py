"""`hashtrail collect`: pull, verify and store everything new from one device
(hashtrail.collector.port.collect_port does the work; this module parses and prints)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from hashtrail.cli.args import at_least, seconds
from hashtrail.collector.collect import DEADLINE_S, MAX_RECORDS
from hashtrail.collector.port import collect_port


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "collect", help="collect new records from an enrolled device into a collector store")
    p.add_argument("--port", required=True, help="serial port (or a virtual device's pty)")
    p.add_argument("--store", required=True,
                   help="collector store file (SQLite), made by `hashtrail enroll`")
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


class _Bar:
    """A plain-text progress bar on stderr, only for collections that take a while."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.shown = False

    def __call__(self, got: int, expected: int, nbytes: int) -> None:
        el = time.monotonic() - self.t0
        if el < 1.0 and not self.shown:
            return
        self.shown = True
        frac = min(1.0, got / expected) if expected else 1.0
        bar = "#" * int(frac * 30)
        rate = nbytes / el if el > 0 else 0.0
        sys.stderr.write(f"\r[{bar:<30}] {got}/{expected} entries  {rate / 1024:.1f} KiB/s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _notice(line: str) -> None:
    # stderr: the --json summary on stdout stays one JSON document.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    bar = _Bar() if sys.stderr.isatty() or not args.json else None
    try:
        res = collect_port(args.store, args.port, args.baud, ack=not args.no_ack,
                           set_time=not args.no_set_time, progress=bar, notice=_notice,
                           deadline=args.deadline, max_records=args.max_records)
    finally:
        if bar is not None:
            bar.done()
    if args.json:
        print(json.dumps(res.to_json()))
    else:
        print(f"{res.device_id} ({res.label}): {res.new_entries} new entries accepted, "
              f"up to seq {res.upto_seq}; "
              f"{'acknowledged' if res.acked else 'not acknowledged'}; "
              f"{res.bytes_in} bytes in {res.seconds:.2f} s")
    return 0
