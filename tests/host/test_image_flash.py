"""`hashtrail image` and `hashtrail flash` without hardware.

The MicroPython .bin here is test input (random bytes behind the 0xE9 image magic),
not a real MicroPython build; what is checked is where hashtrail puts things and that
esptool's own parser accepts every command line hashtrail builds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import click
import pytest
from esptool import cli as esptool_cli
from hashtrail.cli import main
from hashtrail.device import espflash
from hashtrail.device.boards import board_names, load_board
from hashtrail.device.imagefs import firmware_files, read_image
from hashtrail.errors import ConfigError

REAL_BOARDS = [b for b in board_names() if load_board(b).chip]


def esptool_parse(args: list[str]) -> tuple[str, dict[str, object]]:
    """Parse like `esptool ARGS` does, without running: (command, its parameters)."""
    esptool_cli._esp = None  # what EsptoolGroup.__call__ sets before parsing
    ctx = esptool_cli.make_context("esptool", list(args), resilient_parsing=False)
    rest = [*ctx._protected_args, *ctx.args]
    cmd = esptool_cli.get_command(ctx, rest[0])
    assert cmd is not None, rest[0]
    sub = cmd.make_context(rest[0], rest[1:], parent=ctx)
    assert ctx.params["chip"] is not None
    return rest[0], {**ctx.params, **sub.params}


def fake_micropython(path: Path, size: int = 200_000) -> Path:
    path.write_bytes(b"\xe9" + os.urandom(size - 1))
    return path


@pytest.mark.parametrize("board", REAL_BOARDS)
def test_image_holds_micropython_and_exactly_the_firmware(tmp_path: Path, board: str) -> None:
    b = load_board(board)
    mp = fake_micropython(tmp_path / "mp.bin")
    out = tmp_path / "out.bin"
    assert main(["image", "--board", board, "--micropython", str(mp), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[: mp.stat().st_size] == mp.read_bytes()  # flashed at the MicroPython offset
    vfs = int(b.raw["flash"]["vfs_offset"], 0) - int(b.flash_offset or 0)
    fs = read_image(data[vfs: vfs + b.vfs_size], b.block_size)
    assert fs == firmware_files(b)
    assert len(data) == vfs + b.vfs_size


def test_image_refuses_a_micropython_that_overlaps_the_filesystem(tmp_path: Path) -> None:
    mp = fake_micropython(tmp_path / "big.bin", 0x200000)
    rc = main(["image", "--board", "esp32", "--micropython", str(mp),
               "--out", str(tmp_path / "o.bin")])
    assert rc == 2 and not (tmp_path / "o.bin").exists()


@pytest.mark.parametrize("board", REAL_BOARDS)
def test_esptool_accepts_our_command_lines(tmp_path: Path, board: str) -> None:
    b = load_board(board)
    for f in ("mp.bin", "fs.bin"):
        (tmp_path / f).write_bytes(b"\xe9" * 16)
    name, params = esptool_parse(espflash.merge_args(b, tmp_path / "mp.bin",
                                                     tmp_path / "fs.bin", tmp_path / "o.bin"))
    assert name == "merge-bin" and params["chip"] == b.chip
    assert params["target_offset"] == b.flash_offset
    name, params = esptool_parse(espflash.write_args(b, "/dev/ttyUSB7", tmp_path / "mp.bin"))
    assert name == "write-flash" and params["chip"] == b.chip
    assert params["port"] == "/dev/ttyUSB7" and params["baud"] == b.flash_baud
    (addr, _f), = params["addr_filename"]  # type: ignore[misc]
    assert addr == b.flash_offset


def test_esptool_parser_is_strict() -> None:
    # The check above is meaningful only if a wrong command line is refused.
    with pytest.raises(click.UsageError):
        esptool_parse(["--chip", "esp32", "write-flash", "--no-such-option", "0x0", "x"])


def test_flash_refuses_unpinned_and_mismatching_images(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    img = fake_micropython(tmp_path / "mp.bin", 4096)
    b = load_board("esp32")
    assert b.image_sha256 is None  # no image is pinned in this repository yet
    with pytest.raises(ConfigError, match="no pinned"):
        espflash.check_pinned(b, img, allow_unpinned=False)
    assert espflash.check_pinned(b, img, allow_unpinned=True) == hashlib.sha256(
        img.read_bytes()).hexdigest()
    pinned = b.__class__(**{**b.__dict__, "image_sha256": "00" * 32})
    with pytest.raises(ConfigError, match="pins"):
        espflash.check_pinned(pinned, img, allow_unpinned=True)
    assert main(["flash", "--board", "esp32", "--port", "/dev/null", "--image", str(img)]) == 2
    assert "--allow-unpinned" in capsys.readouterr().err


@pytest.mark.device
def test_flash_real_board(request: pytest.FixtureRequest) -> None:
    image = os.environ.get("HASHTRAIL_MICROPYTHON_BIN")
    if not image:
        pytest.skip("set HASHTRAIL_MICROPYTHON_BIN to the board's MicroPython image")
    board = os.environ.get("HASHTRAIL_BOARD", "esp32")
    port = request.config.getoption("--port")
    assert main(["flash", "--board", board, "--port", port, "--image", image,
                 "--allow-unpinned"]) == 0
