"""Bringing up a virtual device for a test, a tool or the demo: an image whose
/board.json samples fast, and a wait until the booted app answers HELLO.

Why here: the e2e tests, the attack suite, tools/soak.py, tools/fuzz.py and the demo
all need the same two steps, and the only difference they make to the firmware (the
sampling interval) is written into the device's own /board.json, never faked around it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hashtrail.device import imagefs
from hashtrail.device.boards import Board, load_board
from hashtrail.device.link import DeviceInfo, LinkError, open_serial
from hashtrail.errors import HashtrailError
from hashtrail.sim.device import VirtualDevice


def sampling_image(board: Board, interval_s: float) -> bytes:
    """A fresh littlefs image of the compiled firmware whose /board.json samples every
    `interval_s` seconds (the only change from the board's own configuration)."""
    files = imagefs.firmware_files(board)
    cfg = json.loads(files[imagefs.BOARD_FILE])
    cfg["sample_interval_s"] = interval_s
    files[imagefs.BOARD_FILE] = json.dumps(cfg).encode()
    return imagefs.build_image(files, board.vfs_size, board.block_size)


def wait_ready(dev: VirtualDevice, timeout: float = 30.0, poll_s: float = 0.2,
               console: int = 800) -> DeviceInfo:
    """HELLO over the device's pty until the app answers (after a boot); its INFO.
    Once `timeout` seconds have passed: a LinkError with the last link error and what
    the device printed since its last boot, at most `console` bytes of it (a "cannot
    start" and its traceback, the REPL: the only clue to why it is silent, and gone
    from the pty once a client opened it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open_serial(dev.port) as link:
                link.timeout = 1.0
                return link.hello()
        except (HashtrailError, OSError) as e:
            if time.monotonic() > deadline:
                raise LinkError(f"{e}\ndevice console since its last boot:\n"
                                f"{dev.console(console).strip()}") from e
            time.sleep(poll_s)


def make_device(directory: Path, name: str, interval_s: float, board: Board | None = None,
                ready_timeout: float = 30.0) -> VirtualDevice:
    """A virtual device on a fresh `sampling_image`, powered on and answering HELLO."""
    dev = VirtualDevice(directory, name, board=board or load_board("unix"))
    dev.dir.mkdir(parents=True, exist_ok=True)
    dev.image_path.write_bytes(sampling_image(dev.board, interval_s))
    dev.start()
    wait_ready(dev, ready_timeout)
    return dev
