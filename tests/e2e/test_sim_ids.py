"""`hashtrail sim` prints each device's id beside its port (issue 15 item 8), the id the
device itself reports over that port."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hashtrail.device.link import open_serial

pytestmark = pytest.mark.e2e


def test_sim_prints_device_ids_beside_ports(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "hashtrail.cli", "sim", "--devices", "2",
                          "--dir", str(tmp_path), "--fresh"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        lines = [p.stdout.readline() for _ in range(2)]
        rows = [ln.rstrip("\n").split("\t") for ln in lines]
        assert [r[0] for r in rows] == ["dev0", "dev1"], lines
        for _name, port, did, image in rows:
            assert re.fullmatch(r"[0-9a-f]{32}", did), lines
            assert image.endswith(".lfs") or Path(image).exists()
            with open_serial(port) as link:
                link.timeout = 2.0
                assert link.hello().device_id == did
        assert rows[0][2] != rows[1][2]
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
