"""`hashtrail image`: one flashable file with MicroPython and the firmware filesystem.

The MicroPython image goes at the board's offset, and a littlefs partition holding
the compiled firmware (`/boot.py`, `/main.py`, `/lib/hashtrail/*.mpy`, `/board.json`,
laid out exactly as a virtual device's flash) at the board's vfs offset. Flash the result at
the MicroPython offset, e.g. `esptool --chip esp32 write-flash 0x1000 OUT.bin`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.device import espflash
from hashtrail.device.boards import load_board
from hashtrail.device.imagefs import build_image, firmware_files
from hashtrail.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("image", help="build one flashable file: MicroPython + firmware fs",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help="board definition (boards/NAME.json)")
    p.add_argument("--micropython", required=True, type=Path, metavar="FILE",
                   help="the MicroPython .bin for this board (from micropython.org)")
    p.add_argument("--out", required=True, type=Path, help="output file")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def make_image(board_name: str, micropython: Path, out: Path) -> dict[str, Any]:
    board = load_board(board_name)
    userfile.check_input(micropython, "a MicroPython image (.bin) for this board",
                         max_bytes=None)
    userfile.check_output(out, "the image file to write")
    vfs = board.raw["flash"].get("vfs_offset")
    if board.flash_offset is None or vfs is None:
        raise ConfigError(f"board {board.name!r} is not flashed from an image",
                          hint="the virtual board runs from `hashtrail sim`")
    room = int(vfs, 0) - board.flash_offset
    if micropython.stat().st_size > room:
        raise ConfigError(f"{micropython.name} ({micropython.stat().st_size} bytes) overlaps "
                          f"the filesystem at {vfs} (room: {room} bytes)")
    files = firmware_files(board)
    with tempfile.TemporaryDirectory(prefix="hashtrail-image-") as tmp:
        fs = Path(tmp) / "fs.bin"
        fs.write_bytes(build_image(files, board.vfs_size, board.block_size))
        espflash.run(espflash.merge_args(board, micropython, fs, out))
    return {"board": board.name, "out": str(out), "flash_at": hex(board.flash_offset),
            "vfs_offset": vfs, "files": sorted(files), "sha256": espflash.sha256_file(out),
            "micropython_sha256": espflash.sha256_file(micropython)}


def run(args: argparse.Namespace) -> int:
    info = make_image(args.board, args.micropython, args.out)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['out']}: MicroPython + {len(info['files'])} firmware files; "
              f"flash at {info['flash_at']} (sha256 {info['sha256']})")
    return 0
