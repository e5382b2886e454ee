"""`hashtrail deploy`: compile the firmware for a board and copy it with mpremote.

First asks the device what it is (sys.platform, sys.implementation._machine, os.uname()
over the raw REPL) and refuses, with exit 2 and nothing written, a device that does not
fit the board definition's `identify` section (--force writes anyway). Then compiles with
mpy-cross for the board's architecture, copies `/boot.py`, `/main.py`, `/lib/hashtrail/*.mpy`
and `/board.json` over the raw REPL, removes stale firmware modules (in /lib/hashtrail, and
the flat /lib modules of earlier releases), checks every file's SHA-256 on the device,
soft-resets the board and waits for the application to answer HELLO: it
prints the firmware version and device id, or, when the application does not start, the
device's own lines (exit 1). Device data under /ht (key, log) is left alone.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hashtrail.cli import logs, progress
from hashtrail.cli.args import release_key, seconds
from hashtrail.device.deploy import deploy


def register(sub: Any) -> None:
    p = sub.add_parser("deploy", help="compile the firmware and copy it to a board (mpremote)",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help="board definition (boards/NAME.json)")
    p.add_argument("--port", required=True, help="serial port (or a virtual device's pty)")
    p.add_argument("--force", action="store_true",
                   help="write even when the device does not identify as --board")
    p.add_argument("--wait", type=seconds, default=60.0, metavar="SECONDS",
                   help="how long the started application may take to answer (default 60)")
    p.add_argument("--release-key", type=release_key, action="append", default=[],
                   metavar="PUBKEY", help="pin this release key on the device (repeatable): "
                   "firmware updates must be signed with it")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the steps are hashtrail.device.deploy's INFO lines; with --json only the JSON
    # (and warnings), unless -v asks for more
    with logs.steps_hidden("hashtrail.device.deploy", args.json), \
            progress.bar("deploy", unit="files") as bar:
        res = deploy(args.board, args.port, bar.update, force=args.force, wait_s=args.wait,
                     release_keys=args.release_key)
    info = res.info
    if args.json:
        print(json.dumps({"board": args.board, "port": args.port, "forced": res.forced,
                          "device": res.facts.to_json(), "fw": info.fw,
                          "device_id": info.device_id, "device_board": info.board,
                          "files": res.files}, indent=2))
    else:
        print(f"deployed {len(res.files)} files to {args.port}; all SHA-256 verified on "
              "the device")
        print(f"hashtrail {info.fw} running on {args.port}: device {info.device_id} "
              f"(board {info.board})")
    return 0
