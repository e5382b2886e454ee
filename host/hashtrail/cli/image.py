"""`hashtrail image`: one flashable file with MicroPython and the firmware filesystem.

The MicroPython image goes at the board's offset, and a littlefs partition holding
the compiled firmware (`/boot.py`, `/main.py`, `/lib/hashtrail/*.mpy`, `/board.json`,
laid out exactly as a virtual device's flash) at the board's vfs offset. Flash the result at
the MicroPython offset, e.g. `esptool --chip esp32 write-flash 0x1000 OUT.bin`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hashtrail.cli import logs
from hashtrail.cli.args import release_key
from hashtrail.device.flash import make_image


def register(sub: Any) -> None:
    p = sub.add_parser("image", help="build one flashable file: MicroPython + firmware fs",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help="board definition (boards/NAME.json)")
    p.add_argument("--micropython", required=True, type=Path, metavar="FILE",
                   help="the MicroPython .bin for this board (from micropython.org)")
    p.add_argument("--out", required=True, type=Path, help="output file")
    p.add_argument("--release-key", type=release_key, action="append", default=[],
                   metavar="PUBKEY", help="pin this release key in the image (repeatable): "
                   "firmware updates must be signed with it")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = make_image(args.board, args.micropython, args.out, release_keys=args.release_key,
                      verbosity=logs.esptool_verbosity())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['out']}: MicroPython + {len(info['files'])} firmware files; "
              f"flash at {info['flash_at']} (sha256 {info['sha256']})")
    return 0
