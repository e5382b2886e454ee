#!/usr/bin/env python3
"""Build a local mip package index of the firmware, compiled to .mpy for one board.

Why: `mpremote mip install firmware/package.json` copies .py sources, which a board
compiles in RAM at import: about 130 KB of heap, more than the generic ESP32 (100 KB)
or the ESP32-C3 have. From this index mip installs compiled .mpy instead, which loads
in the same heap as `hashtrail deploy`:

    python tools/mip_index.py --board esp32 --out build/mip/esp32
    mpremote connect /dev/ttyUSB0 mip install --index build/mip/esp32 hashtrail
    # or serve the folder over http: mip install --index http://HOST:8000 hashtrail

Layout (what mpremote's mip client requests, mpremote/mip.py, and micropython-lib's
on-device mip reads alike; micropython.org/pi/v2 has the same shape):

    package/<mpy>/hashtrail/latest.json       {"hashes": [[dest, short], ...],
    package/<mpy>/hashtrail/<version>.json     "deps": [], "version": ...}
    file/<short[:2]>/<short>                  the file's bytes

<mpy> is the .mpy format version (`sys.implementation._mpy & 0xFF` on the board, 6
for MicroPython 1.22 and later), read from the compiled files' header; short is the
first 8 hex digits of the file's SHA-256 (mip skips a file whose installed hash starts
with it). The files are firmware/package.json's list, with each module compiled by
hashtrail.device.mpybuild for the board's architecture (`dest` becomes NAME.mpy) and data
files (p256_table.bin) as they are. main.py, boot.py and board.json are not library
files: copy them with `mpremote cp` as the README says.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from hashtrail.device import mpybuild
from hashtrail.paths import BOARDS, FIRMWARE

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_JSON = FIRMWARE / "package.json"
NAME = "hashtrail"
SHORT_HASH = 8  # hex digits, as micropython-lib's index uses


def _mpy_version(path: Path) -> int:
    head = path.read_bytes()[:2]
    if len(head) != 2 or head[0] != ord("M"):
        raise SystemExit(f"{path.name}: not a .mpy file (header {head!r})")
    return head[1]


def build_index(board: str, out: Path, opt: int = 0) -> dict[str, object]:
    """Write the index for `board` into `out`; returns the package document written."""
    package = json.loads(PACKAGE_JSON.read_text())
    arch = mpybuild.board_arch(board)
    hashes: list[list[str]] = []
    versions: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="mip-build-") as tmp:
        built = Path(tmp)
        mpybuild.build(built, arch, opt)
        for dest, url in package["urls"]:
            src = built / url
            if src.suffix == ".py":
                src = src.with_suffix(".mpy")
                dest = dest[:-3] + ".mpy"
                versions.add(_mpy_version(src))
            if not src.is_file():
                raise SystemExit(f"{url} (firmware/package.json) was not built: {src}")
            short = hashlib.sha256(src.read_bytes()).hexdigest()[:SHORT_HASH]
            target = out / "file" / short[:2] / short
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            hashes.append([dest, short])
    if len(versions) != 1:
        raise SystemExit(f"expected one .mpy version among the modules, got {sorted(versions)}")
    doc: dict[str, object] = {"hashes": hashes, "deps": package.get("deps", []),
                              "version": package["version"]}
    pkg_dir = out / "package" / str(versions.pop()) / NAME
    pkg_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1) + "\n"
    for name in ("latest", package["version"]):
        (pkg_dir / f"{name}.json").write_text(text)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", default="esp32", help="board definition in boards/ (default esp32)")
    ap.add_argument("--out", type=Path, help="index folder (default build/mip/BOARD)")
    ap.add_argument("-O", dest="opt", type=int, default=0, help="mpy-cross optimisation level")
    args = ap.parse_args(argv)
    if not (BOARDS / f"{args.board}.json").is_file():
        known = ", ".join(sorted(p.stem for p in BOARDS.glob("*.json")))
        raise SystemExit(f"unknown board {args.board!r} (boards/: {known})")
    out = args.out or ROOT / "build" / "mip" / args.board
    doc = build_index(args.board, out, args.opt)
    files = doc["hashes"]
    arch = mpybuild.board_arch(args.board) or "bytecode"
    print(f"{len(files) if isinstance(files, list) else 0} files for {args.board} "
          f"(arch={arch}) -> {out}")
    print(f"install: mpremote connect PORT mip install --index {out} {NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
