"""The boot after a keyless flash rewrite, with MQTT configured, within the heap budget:
the demo's tamper step (`hashtrail demo --mqtt`, step 9) as one virtual device.

Why: that boot is the heaviest the firmware makes. The boot check finds the edited
entry, loads bootfind (boot-only, but the names every loaded module brings stay
interned as qstrs for good) and appends the log-altered entry; then the app loads the
MQTT client. With 15 qstrs more than any other boot, MicroPython had to grow its qstr
pool while loading the MQTT client, one 7 KB block (the sim's 64-bit words) in a heap
the boot check had left in small holes: MemoryError, "cannot start", the device silent
at the REPL (the demo failed with "did not answer within 30 s"; in CI mostly, where the
heap layout differed with timing). The firmware now brings fewer names (umqtt_simple
without the last will, mqttlink's constants as const()), so that boot fits the pools
made before the log boots.

The device here runs with BELOW_BUDGET bytes less than the board's budget: a boot that
needs a late qstr pool again, or grows otherwise, fails here before it fails the demo.
Measured on the tampered images of five runs (boot bisected, heap in the firmware's
budget): 101.7-114.5 KB before this change, 88.4-91.4 KB after; a boot of an unaltered
log 88.9 KB. The budget is 100 KB.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hashtrail import demo
from hashtrail.device import imagefs
from hashtrail.device.boards import load_board
from hashtrail.device.link import LinkError
from hashtrail.device.mqtt_link import parse_url
from hashtrail.sim import VirtualDevice, provision
from mqtt_broker import require_shared

pytestmark = pytest.mark.e2e

BELOW_BUDGET = 6 * 1024


def test_altered_boot_with_mqtt_starts_below_the_budget(tmp_path: Path) -> None:
    url = parse_url(require_shared())
    board = load_board("unix")
    board = dataclasses.replace(board, heap_budget=board.heap_budget - BELOW_BUDGET)
    dev = VirtualDevice(tmp_path, "victim", board=board)
    dev.image_path.write_bytes(demo.demo_image(mqtt={"host": url.host, "port": url.port}))
    dev.start()
    try:
        demo.hello(dev)
        seq = None
        for more in (6, 10, 16, 24):  # a reading no device checkpoint covers yet
            demo.wait_for_entries(dev, more)
            demo.quiet_power_cut(dev)
            seq = demo.rewrite_target(dev.image_path, board.block_size, -1)
            if seq is not None:
                break
            dev.start()
        assert seq is not None
        edit = demo.rewrite_flash(dev.image_path, board.block_size, seq)
        assert edit.crc_valid and edit.links_valid
        dev.start()
        info = demo.hello(dev)   # the error carries the device's console (a MemoryError)
        assert info.altered is not None and info.altered.first_seq == seq
        assert "cannot start" not in dev.console(4096)
    finally:
        dev.stop()


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
