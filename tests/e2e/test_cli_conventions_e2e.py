"""Conventions on a real (virtual) device: `collect` draws a Rich bar when stderr is a
terminal (a real pseudo-terminal here), nothing when it is a pipe or with -q, and the
store comes from HASHTRAIL_STORE when --store is not given."""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.device.boards import load_board
from hashtrail.sim import VirtualDevice, provision

pytestmark = pytest.mark.e2e

HOST = str(Path(__file__).resolve().parents[2] / "host")
BOARD = dataclasses.replace(load_board("unix"), heap_budget=160 * 1024)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[VirtualDevice]:
    d = provision.make_device(tmp_path, "bar", 0.02, BOARD, ready_timeout=20.0)
    try:
        yield d
    finally:
        d.stop()


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": HOST, "TERM": "xterm-256color", "COLUMNS": "120",
            **extra}


def _on_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str, bytes]:
    """`hashtrail argv` with stderr on a pseudo-terminal: (exit, stdout, terminal bytes)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hashtrail.cli", *argv],
                            stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            seen += data
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait(timeout=60)
    os.close(master)
    return code, out, bytes(seen)


def test_collect_bar_on_a_terminal_only_and_store_from_the_environment(
        tmp_path: Path, dev: VirtualDevice) -> None:
    env = _env(HASHTRAIL_STORE=str(tmp_path / "c.db"))
    p = subprocess.run([sys.executable, "-m", "hashtrail.cli", "enroll", "--port", dev.port,
                        "--label", "bar"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("enrolled "), p.stderr
    assert (tmp_path / "c.db").is_file()           # made where the variable said
    time.sleep(1.0)                                 # entries to collect
    code, out, tty = _on_pty(["collect", "--port", dev.port, "--no-ack"], env)
    assert code == 0, tty
    assert " new entries accepted" in out
    assert b"collect" in tty and b"entries" in tty and b"KiB" in tty, tty
    assert b"\x1b[" in tty
    # -q on the terminal: no bar
    code, out, tty = _on_pty(["collect", "--port", dev.port, "--no-ack", "-q", "--json"], env)
    assert code == 0 and tty == b"" and json.loads(out)["device_id"], tty
    # stderr a pipe: nothing but the command's lines (none for a clean collection)
    p = subprocess.run([sys.executable, "-m", "hashtrail.cli", "collect", "--port", dev.port,
                        "--no-ack"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_deploy_steps_and_bar(tmp_path: Path) -> None:
    """deploy's step lines (now hashtrail.device.deploy's INFO lines) read as before on a
    pipe; --json keeps them off stderr; -q drops them; a terminal gets a files bar."""
    from hashtrail.sim import VirtualDevice

    env = _env()
    cmd = [sys.executable, "-m", "hashtrail.cli", "deploy", "--board", "unix", "--port"]
    with VirtualDevice(tmp_path, "dep") as d:
        p = subprocess.run([*cmd, d.port], capture_output=True, text=True, env=env,
                           timeout=180)
        assert p.returncode == 0, p.stderr
        lines = p.stderr.splitlines()
        assert lines[-1] == "all SHA-256 verified on the device; soft reset", p.stderr
        assert all(x.startswith(("copy /", "remove /")) for x in lines[:-1]) and len(
            lines) > 5, p.stderr
        copied = sum(x.startswith("copy /") for x in lines)
        assert p.stdout.startswith(f"deployed {copied} files to {d.port}")
        p = subprocess.run([*cmd, d.port, "--json"], capture_output=True, text=True,
                           env=env, timeout=180)
        assert p.returncode == 0 and p.stderr == "" and json.loads(p.stdout)["files"]
        p = subprocess.run([*cmd, d.port, "-q"], capture_output=True, text=True, env=env,
                           timeout=180)
        assert p.returncode == 0 and p.stderr == "" and p.stdout.startswith("deployed ")
        code, out, tty = _on_pty([*cmd[3:], d.port, "--json"], env)
        assert code == 0 and json.loads(out)["files"], tty
        assert b"deploy" in tty and b"files" in tty and b"\x1b[" in tty, tty
