"""What the bench tools (tools/bench_*.py) say about the machine a figure was measured
on, so a number in a report can be set against the hardware that produced it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model (Linux /proc/cpuinfo), else whatever `platform` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def host_machine() -> dict[str, Any]:
    """CPU, core count and CPython version: the part every bench report shares."""
    return {"cpu": cpu_name(), "nproc": os.cpu_count(), "python": platform.python_version()}
