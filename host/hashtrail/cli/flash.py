"""`hashtrail flash`: write the board's pinned MicroPython image with esptool.

Refuses an image whose SHA-256 is not the one pinned in boards/NAME.json
(micropython.sha256; when none is pinned, only with --allow-unpinned). esptool then
checks the chip on the port is the board's chip and writes at the board's offset.
esptool's own output, its progress bars included, goes to stderr (-q: errors only,
-v: esptool --verbose); stdout carries the plan line, or with --json the plan once
the image is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hashtrail.cli import logs
from hashtrail.cli.args import at_least
from hashtrail.device.flash import FlashPlan, flash


def register(sub: Any) -> None:
    p = sub.add_parser("flash", help="flash the pinned MicroPython image (esptool)",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help="board definition (boards/NAME.json)")
    p.add_argument("--port", required=True, help="serial port of the board")
    p.add_argument("--image", required=True, type=Path, help="MicroPython .bin to write")
    p.add_argument("--baud", type=at_least(1), default=None, help="flash baud rate (board default)")
    p.add_argument("--allow-unpinned", action="store_true",
                   help="flash even though the board pins no image hash")
    p.add_argument("--json", action="store_true",
                   help="print what was written (image, sha256, chip, port, offset) as "
                        "JSON once esptool is done")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def announce(plan: FlashPlan) -> None:
        if not args.json:
            print(f"flashing {plan.image} (sha256 {plan.sha256}) to {plan.chip} on "
                  f"{plan.port} at {plan.offset}", flush=True)

    plan = flash(args.board, args.port, args.image, args.baud, args.allow_unpinned, announce,
                 verbosity=logs.esptool_verbosity())
    if args.json:
        print(json.dumps(plan_json(args.board, plan), indent=1))
    return 0


def plan_json(board: str, plan: FlashPlan) -> dict[str, object]:
    """`flash --json`: what was written where (esptool's arguments left out)."""
    return {"board": board, "image": str(plan.image), "sha256": plan.sha256,
            "chip": plan.chip, "port": plan.port, "offset": plan.offset}
