"""`hashtrail deploy`: compile the firmware for a board and copy it with mpremote.

Compiles with mpy-cross for the board's architecture, copies `/boot.py`, `/main.py`,
`/lib/*.mpy` and `/board.json` over the raw REPL, removes stale /lib modules, checks
every file's SHA-256 on the device, then soft-resets the board so main.py starts.
Device data under /ht (key, log) is left alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..deploy import deploy


def register(sub: Any) -> None:
    p = sub.add_parser("deploy", help="compile the firmware and copy it to a board (mpremote)",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help="board definition (boards/NAME.json)")
    p.add_argument("--port", required=True, help="serial port (or a virtual device's pty)")
    p.add_argument("--json", action="store_true", help="print the verified hashes as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr)

    hashes = deploy(args.board, args.port, progress)
    if args.json:
        print(json.dumps({"board": args.board, "port": args.port, "files": hashes}, indent=2))
    else:
        print(f"deployed {len(hashes)} files to {args.port}; all SHA-256 verified on the device")
    return 0
