"""The device filesystem as a file: build and read littlefs images of the firmware.

Why one module: a virtual device's flash, `hashtrail image` for a real board and the
tests must all lay the firmware out identically (`/boot.py`, `/main.py`,
`/lib/hashtrail/*.mpy`, `/board.json`), or the virtual board would test something no
board ever runs.

The littlefs geometry matches MicroPython's `vfs.VfsLfs2` (ESP32 port and unix port):
the board's block size and block count, names up to 255 bytes, and on-disk format
version 2.0, which every MicroPython release since littlefs v2 can mount (a newer
writer defaults to 2.1, which older boards refuse). Read and program sizes are not
stored in the superblock; 32 bytes mirrors VfsLfs2's defaults.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from littlefs import LittleFS

from hashtrail.device import mpybuild
from hashtrail.device.boards import Board
from hashtrail.errors import ConfigError, FormatError
from hashtrail.paths import BOARDS, require_tree

LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_NAME_MAX = 255
LFS_DISK_VERSION = 0x00020000
BOARD_FILE = "/board.json"


def compile_firmware(board: Board, out: Path) -> None:
    """Compile firmware/ into `out` with mpy-cross for the board's native arch."""
    require_tree()
    try:
        mpybuild.build(out, board.mpy_arch)
    except mpybuild.CompileError as e:
        raise mpybuild.CompileError(f"firmware does not compile for {board.name}: {e}") from e


def firmware_files(board: Board) -> dict[str, bytes]:
    """Every file the board's filesystem holds, by absolute device path, in a stable order.

    The compiled firmware plus `/board.json` (the board definition, read by
    firmware/lib/hashtrail/boardcfg.py at boot).
    """
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="hashtrail-fw-") as tmp:
        out = Path(tmp)
        compile_firmware(board, out)
        for p in sorted(out.rglob("*")):
            if p.is_file():
                files["/" + p.relative_to(out).as_posix()] = p.read_bytes()
    files[BOARD_FILE] = (BOARDS / f"{board.name}.json").read_bytes()
    return files


def file_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    """SHA-256 (hex) of each file, as `deploy` checks them on the device."""
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


def _new_fs(block_size: int, block_count: int, mount: bool = True,
            disk_version: int = LFS_DISK_VERSION) -> LittleFS:
    return LittleFS(block_size=block_size, block_count=block_count, read_size=LFS_READ_SIZE,
                    prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD,
                    name_max=LFS_NAME_MAX, disk_version=disk_version, mount=mount)


def build_image(files: Mapping[str, bytes], size: int, block_size: int) -> bytes:
    """A formatted littlefs image of `size` bytes holding exactly `files`."""
    if size % block_size:
        raise ConfigError(f"filesystem size {size} is not a multiple of block size {block_size}")
    fs = _new_fs(block_size, size // block_size)
    for path, data in files.items():
        parent = path.rsplit("/", 1)[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)
    fs.unmount()
    return bytes(fs.context.buffer)


def mount_image(image: bytes, block_size: int) -> LittleFS:
    """A littlefs-python filesystem mounted on a copy of `image` (the caller unmounts it
    and takes the edited bytes from `fs.context.buffer`)."""
    if not image or len(image) % block_size:
        raise FormatError(f"a littlefs image must be whole {block_size}-byte blocks "
                          f"(got {len(image)} bytes)")
    # disk_version 0 = the newest this littlefs knows: a board's littlefs may have
    # upgraded the image to 2.1 on its first write, and 2.1 reads 2.0 images too.
    fs = _new_fs(block_size, len(image) // block_size, mount=False, disk_version=0)
    fs.context.buffer[:] = image
    try:
        fs.mount()
    except Exception as e:  # littlefs raises LittleFSError with a negative lfs error code
        raise FormatError(f"not a littlefs image: {e}") from e
    return fs


def edit_image(path: Path, block_size: int, edit: Callable[[LittleFS], None]) -> None:
    """Let `edit` change the littlefs image in the file `path` (a powered-off device's
    flash) with littlefs-python, then write the result back: how tests, the soak and
    the demo do flash surgery."""
    fs = mount_image(path.read_bytes(), block_size)
    edit(fs)
    fs.unmount()
    path.write_bytes(bytes(fs.context.buffer))


def read_image(image: bytes, block_size: int) -> dict[str, bytes]:
    """Every regular file in a littlefs image, by absolute path (for checks and tests)."""
    fs = mount_image(image, block_size)
    out: dict[str, bytes] = {}
    for root, _dirs, names in fs.walk("/"):
        for name in names:
            path = (root.rstrip("/") + "/" + name) if root != "/" else "/" + name
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    fs.unmount()
    return dict(sorted(out.items()))
