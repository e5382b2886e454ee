"""Host code stays typed (mypy --strict) and ruff-clean: checked in the suite, so CI holds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_host_is_mypy_strict_clean() -> None:
    proc = _run(str(BIN / "mypy"))  # files and strictness come from pyproject.toml
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_clean() -> None:
    proc = _run(str(BIN / "ruff"), "check", "host", "tests", "tools")
    assert proc.returncode == 0, proc.stdout + proc.stderr
