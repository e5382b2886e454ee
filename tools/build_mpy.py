#!/usr/bin/env python3
"""Compile every firmware module with mpy-cross, the way a board loads them, and print
each module's `.mpy` size (the compiler itself is hashtrail.device.mpybuild).

    python tools/build_mpy.py [--board esp32] [--out build/mpy/esp32] [--json]

"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hashtrail.device.mpybuild import (  # noqa: F401 (the tests and tools use these names)
    DATA_GLOBS,
    HOST_ONLY,
    SCRIPTS,
    board_arch,
    build,
    firmware_sources,
    mpy_cross,
)
from hashtrail.errors import HashtrailError
from hashtrail.paths import FIRMWARE  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--board", default="esp32", help="board definition in boards/ (default esp32)")
    ap.add_argument("--out", type=Path, help="output folder (default build/mpy/BOARD)")
    ap.add_argument("-O", dest="opt", type=int, default=0, help="mpy-cross optimisation level")
    ap.add_argument("--json", action="store_true", help="print sizes as JSON")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "build" / "mpy" / args.board
    arch = board_arch(args.board)
    try:
        results = build(out, arch, args.opt)
    except HashtrailError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = sum(size for _, size in results)
    if args.json:
        print(json.dumps({"board": args.board, "arch": arch, "files": dict(results),
                          "total": total}, indent=2))
    else:
        for name, size in results:
            print(f"{size:8d}  {name}")
        print(f"{total:8d}  total ({args.board}, arch={arch or 'bytecode'}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
