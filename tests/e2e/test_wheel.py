"""The installed package works like the checkout (issue 11, packaging).

A wheel built with `python -m build` is installed into a new virtual environment in a
folder with no source tree around it; from there `hashtrail demo` runs to RESULT: OK
and `hashtrail sim` brings up a device that answers over its pseudo-terminal. This is
what catches firmware, board files or the virtual board's ROM missing from the wheel,
or any code still finding them relative to the repository.

The wheel and the environment are built once for the module (about a minute: pip
installs the dependencies from the package registry, or from its cache).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


class Installed:
    def __init__(self, wheel: Path, venv: Path, home: Path) -> None:
        self.wheel = wheel
        self.bin = venv / "bin"
        self.home = home

    def env(self) -> dict[str, str]:
        """The environment of a user who installed the wheel: no PYTHONPATH into the
        checkout, the venv first on PATH, caches in the user's own folder."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "HASHTRAIL_CACHE", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["HOME"] = str(self.home)
        env.pop("XDG_CACHE_HOME", None)
        return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    # No PYTHONPATH into the checkout: pip would take host/'s egg-info for an installed
    # hashtrail and skip installing the wheel.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, cwd=base, env=clean)
    wheel = next(dist.glob("hashtrail-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"),
                    f"{wheel}[sim]"], check=True, capture_output=True, env=clean, cwd=base)
    home = base / "home"
    home.mkdir()
    return Installed(wheel, venv, home)


def test_wheel_carries_firmware_boards_and_rom(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    firmware = {n for n in names if n.startswith("hashtrail/_data/firmware/")}
    assert "hashtrail/_data/firmware/main.py" in firmware
    for src in (ROOT / "firmware").rglob("*"):
        if src.is_file() and "__pycache__" not in src.parts:
            rel = src.relative_to(ROOT / "firmware").as_posix()
            assert f"hashtrail/_data/firmware/{rel}" in firmware, rel
    for board in (ROOT / "boards").glob("*.json"):
        assert f"hashtrail/_data/boards/{board.name}" in names
    assert "hashtrail/sim/rom/rom.py" in names
    # the fleet view's pages, scripts and vendored uPlot: it works with no internet
    static = ROOT / "host" / "hashtrail" / "web" / "static"
    for src in static.rglob("*"):
        if src.is_file():
            assert f"hashtrail/web/static/{src.relative_to(static).as_posix()}" in names, src
    assert "hashtrail/web/static/vendor/uplot/uPlot.iife.min.js" in names


def test_installed_demo_runs_away_from_the_source_tree(installed: Installed) -> None:
    work = installed.home / "demo"
    work.mkdir()
    p = subprocess.run(["hashtrail", "demo", "--dir", str(work / "run")], cwd=work,
                       env=installed.env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "RESULT: OK" in p.stdout
    assert "Traceback" not in p.stderr
    assert str(ROOT) not in p.stdout + p.stderr


def test_installed_package_finds_its_data_inside_itself(installed: Installed) -> None:
    p = subprocess.run(
        [str(installed.bin / "python"), "-c",
         "from hashtrail import paths; print(paths.FIRMWARE); print(paths.BOARDS); "
         "print(paths.cache_dir('devrun'))"],
        cwd=installed.home, env=installed.env(), capture_output=True, text=True, check=True)
    firmware, boards, cache = (Path(x) for x in p.stdout.split())
    venv = installed.bin.parent
    assert firmware.is_relative_to(venv) and (firmware / "main.py").is_file()
    assert boards.is_relative_to(venv) and (boards / "unix.json").is_file()
    assert cache == installed.home / ".cache" / "hashtrail" / "devrun"


def test_installed_sim_device_answers(installed: Installed) -> None:
    work = installed.home / "sim"
    work.mkdir()
    p = subprocess.Popen(["hashtrail", "sim", "--devices", "1", "--dir", str(work / "devs"),
                          "--fresh"], cwd=work, env=installed.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        row = p.stdout.readline().rstrip("\n").split("\t")
        assert row[0] == "dev0", row
        did = row[2]
        assert re.fullmatch(r"[0-9a-f]{32}", did), row
        hello = subprocess.run(
            ["hashtrail", "enroll", "--port", row[1], "--store", str(work / "store.db"),
             "--label", "dev0"], cwd=work, env=installed.env(), capture_output=True,
            text=True, timeout=120)
        assert hello.returncode == 0, hello.stdout + hello.stderr
        assert did in hello.stdout
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


def test_installed_version_is_the_package_version(installed: Installed) -> None:
    sys.path.insert(0, str(ROOT / "host"))
    try:
        from hashtrail import __version__
    finally:
        sys.path.remove(str(ROOT / "host"))
    p = subprocess.run(["hashtrail", "--version"], env=installed.env(), capture_output=True,
                       text=True, check=True)
    assert p.stdout.strip() == f"hashtrail {__version__}"
    assert installed.wheel.name == f"hashtrail-{__version__}-py3-none-any.whl"
    # the README's install line names this very file
    assert f"pip install '{installed.wheel.name}[sim]'" in (ROOT / "README.md").read_text()
