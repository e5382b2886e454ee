"""Put hashtrail on a board's flash: `hashtrail flash` (the board's pinned MicroPython
image, written with esptool) and `hashtrail image` (one flashable file holding
MicroPython and the compiled firmware's littlefs partition).

Why checks first: a wrong image or a wrong chip bricks nothing but wastes a flash cycle
and hides the mistake, so the image's SHA-256 must be the one pinned in the board
definition, esptool's `--chip` refuses another chip, and every file the user named is
checked before esptool runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hashtrail import userfile
from hashtrail.device import espflash
from hashtrail.device.boards import load_board
from hashtrail.device.imagefs import build_image, firmware_files
from hashtrail.errors import ConfigError
from hashtrail.formats.manifest import RELEASE_KEYS_PATH, release_keys_file


class FlashPlan(NamedTuple):
    """What `flash` is about to write, and where."""

    image: Path
    sha256: str
    chip: str | None
    port: str
    offset: str         # hex, as esptool is given it
    esptool_args: list[str]


def flash(board_name: str, port: str, image: Path, baud: int | None = None,
          allow_unpinned: bool = False,
          announce: Callable[[FlashPlan], None] | None = None,
          verbosity: str = "normal") -> FlashPlan:
    """Write `image` to the board on `port` at the board's offset, after refusing an
    image that is not the board's pinned build (unless `allow_unpinned` and none is
    pinned). `announce` sees the plan just before esptool runs; `verbosity` is
    esptool's (espflash.run)."""
    board = load_board(board_name)
    userfile.check_port(port)
    digest = espflash.check_pinned(board, image, allow_unpinned)
    cmd = espflash.write_args(board, port, image, baud)
    plan = FlashPlan(image, digest, board.chip, port, cmd[-2], cmd)
    if announce is not None:
        announce(plan)
    espflash.run(cmd, verbosity)
    return plan


def make_image(board_name: str, micropython: Path, out: Path,
               verbosity: str = "normal",
               release_keys: Sequence[bytes] = ()) -> dict[str, Any]:
    """Write `out`: the MicroPython image `micropython` at the board's offset and a
    littlefs partition with the compiled firmware at its vfs offset; returns what was
    written (board, offsets, files, SHA-256 of the result and of the MicroPython image).
    `verbosity` is esptool's (espflash.run)."""
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
    if release_keys:  # pinned: the keys firmware updates must be signed with
        files[RELEASE_KEYS_PATH] = release_keys_file(release_keys)
    with tempfile.TemporaryDirectory(prefix="hashtrail-image-") as tmp:
        fs = Path(tmp) / "fs.bin"
        fs.write_bytes(build_image(files, board.vfs_size, board.block_size))
        espflash.run(espflash.merge_args(board, micropython, fs, out), verbosity)
    return {"board": board.name, "out": str(out), "flash_at": hex(board.flash_offset),
            "vfs_offset": vfs, "files": sorted(files), "sha256": espflash.sha256_file(out),
            "micropython_sha256": espflash.sha256_file(micropython)}
