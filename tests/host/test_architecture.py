"""The floor plan holds: each layer of the host package imports only the layers below it
(docs/ARCHITECTURE.md), checked with import-linter against the contract in
pyproject.toml.

Three checks: the package keeps the contract; the contract would catch a lower layer
importing a higher one (run on a copy of the package with one such import added, so a
mistyped contract cannot pass silently); and every top-level module or folder of the
package is named in a layer, so a new one cannot escape the check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "host" / "hashtrail"
# Entry points and package data: above every layer, or not code.
OUTSIDE_LAYERS = {"__init__", "__main__", "_data", "py", "__pycache__"}


def _layers() -> list[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in cfg["contracts"] if c["type"] == "layers"]
    return list(contract["layers"])


def _lint(host: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(host))
    return subprocess.run([str(exe)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_no_layer_imports_a_higher_one() -> None:
    p = _lint(ROOT / "host")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "1 kept, 0 broken" in p.stdout


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    copy = tmp_path / "host" / "hashtrail"
    shutil.copytree(PACKAGE, copy, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "_data"))
    keys = copy / "formats" / "keys.py"
    keys.write_text(keys.read_text() + "\n\nfrom hashtrail.ledger import ledger_db  # noqa\n")
    p = _lint(tmp_path / "host")
    assert p.returncode != 0
    assert "hashtrail.formats is not allowed to import hashtrail.ledger" in p.stdout


def test_every_part_of_the_package_is_in_a_layer() -> None:
    named = {m.strip() for layer in _layers() for m in layer.split("|")}
    parts = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    missing = {f"hashtrail.{n}" for n in parts - OUTSIDE_LAYERS} - named
    assert not missing, f"add these to the layers in pyproject.toml: {sorted(missing)}"


def test_the_floor_plan_names_every_module() -> None:
    """docs/ARCHITECTURE.md is where a newcomer looks a module up: each host module in a
    layer folder and each device module must be named there."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    host = [p for p in PACKAGE.glob("*/*.py")
            if p.name not in ("__init__.py", "__main__.py") and "_data" not in p.parts
            and p.parent.name != "cli"]     # cli/: one module per command, named by it
    device = [p for p in (ROOT / "firmware" / "lib" / "hashtrail").glob("*.py")]
    unnamed = [str(p.relative_to(ROOT)) for p in host if f"`{p.name}`" not in doc]
    unnamed += [str(p.relative_to(ROOT)) for p in device if f"`{p.stem}`" not in doc]
    assert not unnamed, f"name these in docs/ARCHITECTURE.md: {unnamed}"
    from hashtrail.cli import COMMANDS
    # the few shared ones (arguments, logging, progress bars) are named in the floor plan
    extra = {p.stem for p in (PACKAGE / "cli").glob("*.py")} - {*COMMANDS, "__init__",
                                                                  "__main__"}
    extra = {m for m in extra if f"`cli/{m}.py`" not in doc}
    assert not extra, f"cli/ modules that are not commands: {sorted(extra)}"
