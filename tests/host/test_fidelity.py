"""The firmware only uses what the ESP32 port of MicroPython has, and it cross-compiles.

The unix port runs much more than an ESP32 (os.path, most of CPython's os, ...), so a
test passing on the virtual device proves little about a board. Here every firmware
module's imports and `module.attribute` uses are checked against the ESP32 port's own
stubs (micropython-esp32-stubs, generated from the port's modules):

- a module exists on the port when the ESP32 stubs have `X.pyi` (or its `uX.pyi`
  alias, which the port has only when it has X);
- an attribute exists when that stub (or the stdlib stub it re-exports, for os, sys,
  struct...) defines the name. For re-exported stdlib modules the stub is a superset of
  the port (CPython's names), so those checks are weaker than for machine/esp32/time.

Not checked: imports inside `try: ... except ImportError` (optional features with a
fallback) and attributes guarded by `hasattr(mod, "name")` / `getattr(mod, "name", d)`.
board_unix.py (the virtual board layer) is exempt by design.
"""

from __future__ import annotations

import ast
import json
import sys
from functools import cache
from pathlib import Path

import pytest
from hashtrail.device.boards import board_names
from hashtrail.paths import BOARDS, FIRMWARE, TOOLS

UNIX_ONLY = {"board_unix"}
# Run by MicroPython's build on the build host (CPython), never on a board.
HOST_ONLY = {FIRMWARE / "manifest.py"}
SITE = Path(pytest.__file__).resolve().parent.parent  # site-packages of this venv
STDLIB = SITE / "stdlib"


def firmware_modules() -> list[Path]:
    return sorted(p for p in FIRMWARE.rglob("*.py")
                  if "__pycache__" not in p.parts and p.stem not in UNIX_ONLY
                  and p not in HOST_ONLY)


def own_modules() -> set[str]:
    """Names the firmware's own imports start with: its modules and its package."""
    return ({p.stem for p in FIRMWARE.rglob("*.py")}
            | {p.parent.name for p in FIRMWARE.rglob("__init__.py")})


def _stub_path(name: str, root: Path) -> Path | None:
    for p in (root / f"{name}.pyi", root / name / "__init__.pyi"):
        if p.is_file():
            return p
    return None


def port_stub(module: str) -> Path | None:
    """The ESP32 stub that proves `module` exists on the port, or None."""
    return _stub_path(module, SITE) or _stub_path("u" + module, SITE)


@cache
def stub_names(path: Path) -> frozenset[str]:
    """Names a stub defines at module level, following `from X import *` re-exports."""
    names: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Import):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name == "*" and node.module:
                        src = (_stub_path(node.module, SITE)
                               if node.module not in {path.stem, path.parent.name}
                               else None) or _stub_path(node.module, STDLIB)
                        if src is not None and src != path:
                            names.update(stub_names(src))
                    else:
                        names.add(a.asname or a.name)
            elif isinstance(node, (ast.If, ast.Try)):
                walk(node.body)
                walk(node.orelse)
                if isinstance(node, ast.Try):
                    for h in node.handlers:
                        walk(h.body)

    walk(ast.parse(path.read_text()).body)
    return frozenset(names)


def _optional_imports(tree: ast.Module) -> set[int]:
    """ids of Import nodes inside a try whose handler catches ImportError."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            h.type is None or "ImportError" in ast.unparse(h.type) for h in node.handlers
        ):
            for sub in node.body:
                for n in ast.walk(sub):
                    if isinstance(n, (ast.Import, ast.ImportFrom)):
                        out.add(id(n))
    return out


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    own = own_modules()
    optional = _optional_imports(tree)
    aliases: dict[str, str] = {}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                mod = a.name.split(".")[0]
                if mod in own:
                    continue
                if port_stub(mod) is None:
                    if id(node) not in optional:
                        found.append(f"line {node.lineno}: import {a.name}: not on the ESP32 port")
                    continue
                aliases[a.asname or mod] = mod
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mod = node.module.split(".")[0]
            if mod in own or mod == "__future__":
                continue
            stub = port_stub(mod)
            if stub is None:
                if id(node) not in optional:
                    found.append(f"line {node.lineno}: from {mod}: not on the ESP32 port")
                continue
            for a in node.names:
                if a.name != "*" and a.name not in stub_names(stub) and id(node) not in optional:
                    found.append(f"line {node.lineno}: {mod}.{a.name} not on the ESP32 port")
    guarded = {
        (n.args[0].id, n.args[1].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        and n.func.id in ("hasattr", "getattr") and len(n.args) >= 2
        and isinstance(n.args[0], ast.Name) and isinstance(n.args[1], ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            alias = node.value.id
            if alias in aliases and (alias, node.attr) not in guarded:
                stub = port_stub(aliases[alias])
                assert stub is not None
                if node.attr not in stub_names(stub):
                    found.append(f"line {node.lineno}: {aliases[alias]}.{node.attr} "
                                 "not on the ESP32 port")
    return sorted(set(found))


def test_the_stubs_are_the_esp32_ports() -> None:
    # Guard against checking nothing: the port stubs must be installed and specific.
    assert port_stub("machine") is not None and port_stub("esp32") is not None
    assert "WDT" in stub_names(port_stub("machine"))  # type: ignore[arg-type]
    assert "ticks_ms" in stub_names(port_stub("time"))  # type: ignore[arg-type]
    assert "pack_into" in stub_names(port_stub("struct"))  # type: ignore[arg-type]
    assert port_stub("termios") is None and port_stub("ffi") is None  # unix-only


def test_the_checker_catches_unix_only_uses(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import termios\nimport time\nimport machine\n"
                   "time.no_such_function()\nmachine.WDT(timeout=1)\n"
                   "try:\n    import ffi\nexcept ImportError:\n    ffi = None\n")
    found = problems(bad)
    assert any("termios" in p for p in found)
    assert any("time.no_such_function" in p for p in found)
    assert not any("ffi" in p or "WDT" in p for p in found)


@pytest.mark.parametrize("path", firmware_modules(), ids=lambda p: p.stem)
def test_firmware_uses_only_esp32_port_apis(path: Path) -> None:
    found = problems(path)
    assert not found, f"{path.relative_to(FIRMWARE.parent)}:\n" + "\n".join(found)


ARCHS = sorted({json.loads((BOARDS / f"{b}.json").read_text()).get("mpy_arch") or "bytecode"
                for b in board_names()})


@pytest.mark.parametrize("arch", ARCHS)
def test_firmware_cross_compiles(arch: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(TOOLS))
    try:
        import build_mpy
    finally:
        sys.path.remove(str(TOOLS))
    results = build_mpy.build(tmp_path, None if arch == "bytecode" else arch)
    compiled = {name for name, size in results if name.endswith(".mpy") and size > 0}
    expected = {str(p.relative_to(FIRMWARE).with_suffix(".mpy")) for p in FIRMWARE.rglob("*.py")
                if (p.name not in ("boot.py", "main.py") or p.parent != FIRMWARE)
                and p not in HOST_ONLY}
    assert compiled == expected
