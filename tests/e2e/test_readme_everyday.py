"""The README's everyday commands run as printed after the two set-up commands, against a
virtual device instead of a board.

Each shell block of "Everyday use" (and the mip blocks under "Three ways to install the
firmware") is taken from README.md as it is and run by bash, line by line, in the
environment the README tells the user to activate (`. .venv/bin/activate`). Only the
placeholders are filled in: the board's serial port becomes the virtual device's
pseudo-terminal, `esp32` the virtual board `unix`, DEVICE_ID the device's id, the
example sequence number one the device has logged, and the two keys the user is told to
copy ($SITE_A_KEY, $LEDGER_KEY) come from the commands that print them. The second
collector's bundle (site-b.jsonl) is made by the same store's export under another name.

`hashtrail flash` is the one line not run: it talks to the ESP32's ROM bootloader,
which a virtual device does not have (tests/host/test_image_flash.py covers the flash
path up to esptool, and a real board with --port).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.collector.store import Store
from hashtrail.device.boards import load_board
from hashtrail.device.link import open_serial
from hashtrail.sim import VirtualDevice
from hashtrail.sim.provision import make_device

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ACTIVATE = Path(sys.executable).parent / "activate"
PORT = "/dev/ttyUSB0"
NOT_RUN = ("hashtrail flash ",)


def _section(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]


def _commands(block: str) -> list[str]:
    """The block's commands: each line that starts a command, with its trailing comment
    and any comment lines below it (bash ignores both)."""
    cmds: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("#") and cmds:
            cmds[-1] += "\n" + line
        else:
            cmds.append(line)
    return cmds


def _bash(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = f'set -e\n. "{ACTIVATE}"\n{cmd}\n'
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _user_env() -> dict[str, str]:
    """The user's shell: only what activating the environment gives (no PYTHONPATH)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _ok(p: subprocess.CompletedProcess[str], cmd: str) -> str:
    assert p.returncode == 0, f"{cmd}\nexit {p.returncode}\n{p.stdout[-3000:]}{p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, f"{cmd}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture
def device(tmp_path: Path) -> Iterator[VirtualDevice]:
    dev = make_device(tmp_path / "devices", "board", 0.2, load_board("unix"))
    try:
        yield dev
    finally:
        dev.stop()


def test_the_readme_says_how_to_get_hashtrail_on_path() -> None:
    text = _section("## Everyday use")
    assert ". .venv/bin/activate" in text
    assert ACTIVATE.exists(), "the test suite runs inside the project's virtual environment"


def test_everyday_block_runs_as_printed(tmp_path: Path, device: VirtualDevice) -> None:
    (block,) = re.findall(r"```sh\n(.*?)```", _section("## Everyday use").split(
        "**Three ways", 1)[0], re.S)
    work = tmp_path / "work"
    work.mkdir()
    env = _user_env()
    skipped, ran = [], []
    device_id = ""
    for cmd in _commands(block):
        if cmd.startswith(NOT_RUN):
            skipped.append(cmd)
            continue
        line = (cmd.replace(PORT, device.port).replace("--board esp32", "--board unix"))
        if "DEVICE_ID" in line:
            assert device_id, "DEVICE_ID is used before enroll printed it"
            with Store.open(work / "collector.db") as st:
                last = st.anchor(device_id)
            assert last is not None and last.seq >= 2
            line = line.replace("DEVICE_ID", device_id).replace("--seq 42", "--seq 2")
        if "site-a.jsonl site-b.jsonl" in line:       # the second site's bundle
            _ok(_bash('hashtrail export --store collector.db --out site-b.jsonl '
                      '--name "site B"', work, env), "site B export")
        out = _ok(_bash(line, work, env), line)
        ran.append(cmd)
        if line.startswith("hashtrail enroll"):
            device_id = _enrolled_id(work)
            assert device_id in out
        elif "--show-key" in line:
            env["SITE_A_KEY"] = out.strip().splitlines()[-1].split()[-1]
        elif line.startswith("hashtrail ledger init"):
            env["LEDGER_KEY"] = re.search(r"verifier key: (\S+)", out)[1]  # type: ignore[index]
    assert [c.split()[1] for c in skipped] == ["flash"], skipped
    assert (work / "proof.json").stat().st_size > 0
    assert len(ran) >= 12, ran


def _enrolled_id(work: Path) -> str:
    with Store.open(work / "collector.db") as st:
        (enr,) = st.enrollments()
        return enr.device_id


def test_mip_blocks_run_as_printed(device: VirtualDevice) -> None:
    section = _section("## Everyday use").split("**Three ways", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    mip = [b for b in blocks if "mip_index.py" in b or "mpremote" in b]
    assert len(mip) == 2, blocks
    env = _user_env()
    for block in mip:
        for cmd in _commands(block):
            line = (cmd.replace(PORT, device.port).replace("esp32", "unix"))
            _ok(_bash(line, ROOT, env), line)      # "run from this folder"
    with open_serial(device.port) as link:
        link.timeout = 2.0
        assert link.hello_waking(None).device_id
