"""`hashtrail deploy` against a virtual device: identify the board before writing, copy,
prune stale modules (its own, and the flat layout of earlier releases, never another
package's), verify on device, restart and wait for the application's HELLO."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.device.boards import load_board
from hashtrail.device.deploy import stale_files
from hashtrail.device.imagefs import file_hashes, firmware_files, read_image
from hashtrail.sim import VirtualDevice
from hashtrail.sim.provision import wait_ready

pytestmark = pytest.mark.e2e


def _mpremote(port: str, *args: str) -> str:
    # (a hang guard, not a figure checked: mpremote enters the raw REPL in three phases
    # of up to 10 s each, and stop 38's CI, at four workers on two cores, ran past 30 s
    # on the first exec here, as tests/e2e/test_sim.py's mpremote once did)
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_deploy_copies_verifies_and_keeps_data(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualDevice(tmp_path, "dev0") as dev:
        wait_ready(dev, timeout=20)  # mpremote's 0x03 while the VM starts is a byte
        # A stale module of the firmware, the flat /lib modules of an earlier release,
        # another package's files, a changed file, and device data that must survive.
        _mpremote(dev.port, "exec",
                  "import os\n"
                  "open('/lib/hashtrail/stale.mpy','wb').write(b'old')\n"
                  "for n in ('devlog.mpy', 'cbor.mpy', 'p256_table.bin', 'app.py'):\n"
                  " open('/lib/' + n,'wb').write(b'old')\n"
                  "open('/lib/otherpkg.mpy','wb').write(b'theirs')\n"
                  "open('/main.py','w').write('print(1)')\n"
                  "try:\n os.mkdir('/ht')\nexcept OSError:\n pass\n"
                  "open('/ht/keepme','w').write('data')")
        assert main(["deploy", "--board", "unix", "--port", dev.port, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        files = firmware_files(load_board("unix"))
        assert report["files"] == file_hashes(files)
        listing = _mpremote(dev.port, "ls", ":/lib/hashtrail")
        assert "stale.mpy" not in listing and "link.mpy" in listing
        on_lib = _mpremote(dev.port, "exec", "import os; print(sorted(os.listdir('/lib')))")
        assert on_lib.strip() == "['hashtrail', 'otherpkg.mpy']"
        assert _mpremote(dev.port, "exec", "print(open('/ht/keepme').read())").strip() == "data"
        dev.power_cut()
    on_flash = read_image(dev.image_path.read_bytes(), 4096)
    assert {p: on_flash[p] for p in files} == files
    assert on_flash["/ht/keepme"] == b"data"
    assert on_flash["/lib/otherpkg.mpy"] == b"theirs"


def test_deploy_to_a_port_without_a_board_is_a_clear_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    # no such port: bad input (issue 15), refused before anything is compiled or opened
    assert main(["deploy", "--board", "unix", "--port", "/dev/null/nothing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashtrail: error: /dev/null/nothing: ") and "serial port" in err
    assert "Traceback" not in err


def _firmware_on_flash(dev: VirtualDevice) -> dict[str, bytes]:
    """Every file of the powered-off device outside /ht (its data): the firmware."""
    files = read_image(dev.image_path.read_bytes(), dev.board.block_size)
    return {p: d for p, d in files.items() if not p.startswith("/ht/")}


def test_deploy_restarts_the_app_and_prints_its_version_and_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualDevice(tmp_path, "dev0") as dev:
        # The app is stopped (mpremote leaves the REPL): deploy must start it again.
        _mpremote(dev.port, "exec", "print(1)")
        assert main(["deploy", "--board", "unix", "--port", dev.port]) == 0
        out = capsys.readouterr().out
        # No wait here: the app answered deploy's HELLO, so it answers ours at once.
        info = wait_ready(dev, timeout=5)
        assert f"hashtrail {info.fw} running on {dev.port}: device {info.device_id}" in out
        assert main(["deploy", "--board", "unix", "--port", dev.port, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["fw"], report["device_id"]) == (info.fw, info.device_id)
        assert report["device"]["platform"] in ("linux", "darwin") and not report["forced"]


def test_deploy_onto_the_wrong_board_is_refused_before_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = VirtualDevice(tmp_path, "dev0")
    dev.start()
    try:
        before = wait_ready(dev)
        # Issue 18: this copied the ESP32 firmware and exited 0; the app never started.
        assert main(["deploy", "--board", "esp32", "--port", dev.port]) == 2
        err = capsys.readouterr().err
        line = err.splitlines()[0]
        assert line.startswith("hashtrail: error: refusing to deploy: --board esp32 expects")
        assert "mcu ESP32" in line
        assert "sys.platform 'linux'" in line or "sys.platform 'darwin'" in line
        assert "fits --board unix" in err and "nothing was written" in err
        after = wait_ready(dev)  # restarted as it was: same device, its app answers
        assert after.device_id == before.device_id
    finally:
        dev.stop()
    assert _firmware_on_flash(dev) == firmware_files(load_board("unix"))


def test_deploy_whose_app_cannot_start_shows_the_device_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualDevice(tmp_path, "dev0") as dev:
        # --force writes the ESP32 firmware anyway; under the unix port it cannot start.
        assert main(["deploy", "--board", "esp32", "--port", dev.port, "--force"]) == 1
        err = capsys.readouterr().err
        assert "firmware written to" in err and "the application did not start" in err
        assert "| hashtrail: cannot start: AttributeError: " in err
        assert "Traceback (most recent call last)" in err  # the device's, shown as its own
        assert "\nTraceback" not in err  # no host traceback
    assert _firmware_on_flash(dev) == firmware_files(load_board("esp32"))


def test_stale_files_are_the_firmwares_own_never_another_packages() -> None:
    files = {"/lib/hashtrail/app.mpy": b"", "/main.py": b""}
    # A board that never had the flat layout keeps its own `cbor` in /lib.
    assert stale_files(["cbor.py", "hashtrail"], ["app.mpy", "old.mpy"], files) == [
        "/lib/hashtrail/old.mpy"]
    # The flat layout of earlier releases (its devlog is there) goes, by its known names.
    assert stale_files(["cbor.mpy", "devlog.mpy", "mine.py", "p256_table.bin", "hashtrail"],
                       [], files) == ["/lib/cbor.mpy", "/lib/devlog.mpy", "/lib/p256_table.bin"]
