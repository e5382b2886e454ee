"""Brokers for the MQTT end-to-end tests: the machine's Mosquitto, or a private one.

Why real brokers: what the tests check (QoS 1 redelivery, a broker going away under a
device and a collector, topics shared with strangers) is the broker's behaviour as
much as ours. The shared broker on 127.0.0.1:1883 serves the plain cases; a test that
stops its broker starts a private `mosquitto -p PORT` so it never disturbs others.
A missing broker fails under CI (CI=true: .ci/run starts one) and skips elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SHARED = ("127.0.0.1", 1883)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(msg: str) -> None:
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def require_shared() -> str:
    """The shared broker's URL, or fail (CI) / skip with one line."""
    if not answers(*SHARED):
        _missing(f"no MQTT broker on {SHARED[0]}:{SHARED[1]}; start one: mosquitto -d")
    return f"mqtt://{SHARED[0]}:{SHARED[1]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    """`mosquitto -c CONF` on its own port, in the foreground, as our child: stop() and
    start() again on the same port is a broker restart nobody else sees."""

    def __init__(self, directory: Path) -> None:
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            _missing("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = str(exe)
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\nset_tcp_nodelay true\n")
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PrivateBroker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        stop = time.monotonic() + 10
        while not answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > stop:
                raise RuntimeError(f"private mosquitto did not start: "
                                   f"{self.log.read_text()[-500:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
