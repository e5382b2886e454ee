"""esptool behind a small interface: argument lists and one runner.

Why isolated: flashing is esptool's job and language (chip names, offsets, baud
rates); hashtrail only decides *what* goes *where* from the board definition. Each
operation is a plain function returning esptool's command-line arguments, so tests
check them against esptool's own parser; `run()` is the one place esptool executes
(as `python -m esptool`, which prints its own progress bars).
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

from hashtrail import userfile
from hashtrail.device.boards import Board
from hashtrail.errors import ConfigError, HashtrailError


class FlashError(HashtrailError):
    """esptool failed: no board on the port, wrong chip, or a write error."""

    hint = ("check the port and cable, hold BOOT while resetting if the board does not "
            "enter the bootloader; esptool's own message is above")


def _chip(board: Board) -> str:
    if not board.chip or board.flash_offset is None:
        raise ConfigError(f"board {board.name!r} has no chip to flash",
                          hint="the virtual board runs from an image: use `hashtrail sim`")
    return board.chip


def _has_fd(stream: object) -> bool:
    try:
        return isinstance(stream.fileno(), int)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def merge_args(board: Board, micropython: Path, fs_image: Path, out: Path) -> list[str]:
    """`merge-bin`: MicroPython at its offset, the littlefs partition at the vfs offset.

    Flash mode/frequency/size stay `keep`: the MicroPython image's bootloader header
    is copied byte for byte. The output starts at the MicroPython offset.
    """
    chip = _chip(board)
    vfs = board.raw["flash"].get("vfs_offset")
    if vfs is None:
        raise ConfigError(f"board {board.name!r} has no flash.vfs_offset")
    at = hex(int(board.flash_offset or 0))
    return ["--chip", chip, "merge-bin", "--output", str(out), "--format", "raw",
            "--target-offset", at, at, str(micropython), hex(int(vfs, 0)), str(fs_image)]


def write_args(board: Board, port: str, image: Path, baud: int | None = None) -> list[str]:
    """`write-flash` at the board's offset; `--chip` makes esptool refuse another chip."""
    chip = _chip(board)
    return ["--chip", chip, "--port", port, "--baud", str(baud or board.flash_baud or 460800),
            "write-flash", hex(int(board.flash_offset or 0)), str(image)]


def check_pinned(board: Board, image: Path, allow_unpinned: bool) -> str:
    """Refuse an image that is not the board's pinned MicroPython build; returns its hash."""
    userfile.check_input(image, "a MicroPython image (.bin)", max_bytes=None)
    digest = sha256_file(image)
    pin = board.image_sha256
    if pin is None:
        if not allow_unpinned:
            raise ConfigError(
                f"board {board.name!r} has no pinned MicroPython image (sha256 is null); "
                f"{image.name} has sha256 {digest}",
                hint=f"download {board.image or 'the image'} from micropython.org, check it, "
                     f"and set micropython.sha256 in boards/{board.name}.json; or pass "
                     "--allow-unpinned to flash it anyway")
        return digest
    if digest != pin.lower():
        raise ConfigError(
            f"{image.name} has sha256 {digest}, but boards/{board.name}.json pins {pin}",
            hint=f"use the pinned image {board.image}, or update the pin after checking it")
    return digest


VERBOSITY = {"quiet": ["--silent"], "normal": [], "verbose": ["--verbose"]}


def run(args: list[str], verbosity: str = "normal") -> None:
    """Run esptool with `args`; its output (its own Rich progress bars included) goes
    to stderr, so whatever the caller prints on stdout stays its own. `verbosity`:
    quiet (esptool --silent: errors only), normal, or verbose (esptool --verbose)."""
    if importlib.util.find_spec("esptool") is None:
        raise ConfigError("esptool is not installed (flashing needs it)",
                          hint="pip install 'hashtrail[flash]'")
    proc = subprocess.run([sys.executable, "-m", "esptool", *VERBOSITY[verbosity], *args],
                          stdout=sys.stderr.fileno() if _has_fd(sys.stderr) else None)
    if proc.returncode != 0:
        raise FlashError(f"esptool {' '.join(args)} failed (exit {proc.returncode})")
