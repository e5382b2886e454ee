"""Test helper: a littlefs image written by the REAL firmware (devlog via
tests/firmware/devhelp.make_image on the MicroPython unix port), and the log records on
it as the host parses them. Shared by the host tests that hold the device's flash
format against the host's parser, verifier and reconcile.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hashtrail.formats.records import Record, RecordProblem, log_segments, parse_segments
from hashtrail.paths import FIRMWARE, ROOT, venv_tool

BLOCK = 4096


def device_image(tmp: Path, sign: bool | None, readings: int = 40) -> tuple[bytes, int, bytes]:
    """Run devlog on the unix port: (flash image, last seq, chain head) as it reports them.
    sign: the board's log.sign_entries, or None for the firmware's default."""
    img = tmp / "flash.img"
    code = (f"import devhelp; devhelp.make_image({str(img)!r}, readings={readings}, "
            f"sign={sign!r})")
    env = dict(os.environ,
               MICROPYPATH=f"{FIRMWARE / 'lib'}:{ROOT / 'tests' / 'firmware'}")
    proc = subprocess.run([venv_tool("micropython"), "-X", "heapsize=1M", "-c", code],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@IMAGE")]
    assert proc.returncode == 0 and line, proc.stdout + proc.stderr
    _, last, head = line[0].split()
    return img.read_bytes(), int(last), bytes.fromhex(head)


def log_records(files: dict[str, bytes]) -> tuple[list[Record], list[RecordProblem]]:
    """Every record of every log segment (/ht/log/*.seg), segments in name order."""
    return parse_segments(log_segments(files))
