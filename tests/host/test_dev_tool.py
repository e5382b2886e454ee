"""tools/dev.py's test command: the worker options the README promises."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_tool", ROOT / "tools" / "dev.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_says_what_the_test_command_does() -> None:
    readme = (ROOT / "README.md").read_text()
    assert ("a pytest worker per core plus one\n(at most 4, each taking whole test files)"
            in readme)
    assert "`-n 0`\nruns the suite in one process" in readme


@pytest.mark.parametrize("cpus,want", [(1, "2"), (2, "3"), (3, "4"), (16, "4"),
                                       (None, "2")])
def test_a_worker_per_core_plus_one_at_most_four_files_whole(monkeypatch: pytest.MonkeyPatch,
                                                       cpus: int | None, want: str) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert _dev()._workers(["tests/host"]) == ["-n", want, "--dist", "loadfile"]


@pytest.mark.parametrize("given", [["-n", "0"], ["-n0"], ["--numprocesses=3"],
                                   ["-p", "no:xdist"]])
def test_options_naming_workers_win(given: list[str]) -> None:
    assert _dev()._workers(given) == []
