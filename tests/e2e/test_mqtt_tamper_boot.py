"""What a virtual device printed, shown when it does not answer (sim.provision.wait_ready).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hashtrail import demo
from hashtrail.device import imagefs
from hashtrail.device.boards import load_board
from hashtrail.device.link import LinkError
from hashtrail.sim import VirtualDevice, provision

pytestmark = pytest.mark.e2e


def test_wait_ready_shows_what_a_silent_device_printed(tmp_path: Path) -> None:
    """A device that does not answer: the error carries the end of its console (here the
    app's "cannot start" and traceback), which pyserial would have dropped when the
    host opened the port after the device printed it."""
    board = load_board("unix")
    files = imagefs.firmware_files(board)
    files[imagefs.BOARD_FILE] = b"{not json"
    dev = VirtualDevice(tmp_path, "broken", board=board)
    dev.image_path.write_bytes(imagefs.build_image(files, board.vfs_size, board.block_size))
    dev.start()
    try:
        with pytest.raises(LinkError) as e:
            provision.wait_ready(dev, timeout=3.0)
        text = str(e.value)
        assert "device console since its last boot:\n[broken: boot 1 (power_on)]\n" in text
        # the app's own words, though the REPL has answered every HELLO line since
        assert "hashtrail: cannot start" in text and "Traceback" in text
        assert len(text) < 1200
        with pytest.raises(demo.DemoError, match="hashtrail: cannot start"):
            demo.hello(dev, timeout=1.0)
    finally:
        dev.stop()
