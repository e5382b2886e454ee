"""`hashtrail deploy` against a virtual device: copy, prune stale modules, verify on device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hashtrail.boards import load_board
from hashtrail.cli import main
from hashtrail.imagefs import file_hashes, firmware_files, read_image
from hashtrail.sim import VirtualDevice

pytestmark = pytest.mark.e2e


def _mpremote(port: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_deploy_copies_verifies_and_keeps_data(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualDevice(tmp_path, "dev0") as dev:
        # A stale module, a changed file, and device data that must survive.
        _mpremote(dev.port, "exec",
                  "import os\n"
                  "open('/lib/stale.mpy','wb').write(b'old')\n"
                  "open('/main.py','w').write('print(1)')\n"
                  "try:\n os.mkdir('/ht')\nexcept OSError:\n pass\n"
                  "open('/ht/keepme','w').write('data')")
        assert main(["deploy", "--board", "unix", "--port", dev.port, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        files = firmware_files(load_board("unix"))
        assert report["files"] == file_hashes(files)
        listing = _mpremote(dev.port, "ls", ":/lib")
        assert "stale.mpy" not in listing and "link.mpy" in listing
        assert _mpremote(dev.port, "exec", "print(open('/ht/keepme').read())").strip() == "data"
        dev.power_cut()
    on_flash = read_image(dev.image_path.read_bytes(), 4096)
    assert {p: on_flash[p] for p in files} == files
    assert on_flash["/ht/keepme"] == b"data"


def test_deploy_to_a_port_without_a_board_is_a_clear_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--board", "unix", "--port", "/dev/null/nothing"]) == 1
    err = capsys.readouterr().err
    assert "no MicroPython raw REPL" in err and "Traceback" not in err
