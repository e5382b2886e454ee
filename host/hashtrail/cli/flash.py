"""`hashtrail flash`: write the board's pinned MicroPython image with esptool.

Refuses an image whose SHA-256 is not the one pinned in boards/NAME.json
(micropython.sha256; when none is pinned, only with --allow-unpinned). esptool then
checks the chip on the port is the board's chip and writes at the board's offset.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def announce(plan: FlashPlan) -> None:
        print(f"flashing {plan.image} (sha256 {plan.sha256}) to {plan.chip} on {plan.port} "
              f"at {plan.offset}")

    flash(args.board, args.port, args.image, args.baud, args.allow_unpinned, announce)
    return 0
