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
    assert ("a pytest worker per core plus one\n(at most 4, each taking whole test files, "
            "the longest first by `tests/file_times.json`)" in readme)
    assert "`-n 0`\nruns the suite in one process" in readme


@pytest.mark.parametrize("cpus,want", [(1, "2"), (2, "3"), (3, "4"), (16, "4"),
                                       (None, "2")])
def test_a_worker_per_core_plus_one_at_most_four_files_whole(monkeypatch: pytest.MonkeyPatch,
                                                       cpus: int | None, want: str) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert _dev()._workers(["tests/host"]) == ["-n", want, "--dist", "loadfile",
                                               "--no-loadscope-reorder"]


@pytest.mark.parametrize("given", [["-n", "0"], ["-n0"], ["--numprocesses=3"],
                                   ["-p", "no:xdist"]])
def test_options_naming_workers_win(given: list[str]) -> None:
    assert _dev()._workers(given) == []


def test_times_are_per_file_averaged_over_runs(tmp_path: Path) -> None:
    runs = []
    for i, (a, b) in enumerate([(1.0, 4.0), (3.0, 0.0)]):
        run = tmp_path / f"run{i}.xml"
        run.write_text(
            '<testsuites><testsuite name="pytest">'
            f'<testcase classname="tests.host.test_a" name="x" time="{a}"/>'
            f'<testcase classname="tests.host.test_a.TestThing" name="y" time="{a}"/>'
            f'<testcase classname="tests.e2e.test_b" name="z[1]" time="{b}"/>'
            '<testcase classname="" name="collect" time="9"/>'
            '</testsuite></testsuites>')
        runs.append(run)
    assert _dev().file_times(runs) == {"tests/host/test_a.py": 4.0, "tests/e2e/test_b.py": 2.0}


def test_the_suite_runs_its_longest_files_first() -> None:
    """The worker option that keeps the order conftest gives, and the order it gives."""
    import json
    import subprocess
    import sys
    times = json.loads((ROOT / "tests" / "file_times.json").read_text())
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "tests/host/test_dev_tool.py",
                          "tests/host/test_reconcile_spill.py", "tests/host/test_merkle.py"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    files = list(dict.fromkeys(line.split("::")[0] for line in out.stdout.splitlines()
                               if "::" in line))
    assert files == sorted(files, key=lambda f: -times.get(f, -1.0))
    assert files[0] == "tests/host/test_reconcile_spill.py"
