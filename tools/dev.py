#!/usr/bin/env python3
"""The two set-up commands of the README, runnable with nothing but Python 3.11 and git.

Why a script and not a Makefile: a fresh machine may lack make, and the virtual
environment must be created, filled from the package registry and reused on the
next run without the user knowing any of it. It is installed with the exact versions
in constraints.txt, and rebuilt when pyproject.toml or constraints.txt changes (a stamp
holds their hash).

    python3 tools/dev.py demo    # the main job: the demo on virtual devices
    python3 tools/dev.py test    # the whole test suite (what .ci/run calls)
    python3 tools/dev.py hashtrail ARGS...   # any CLI command inside the env
    python3 tools/dev.py times JUNIT.xml...  # tests/file_times.json from runs' junit
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("HASHTRAIL_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _stamp() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_env() -> None:
    """Create or refresh the project's virtual environment from pyproject.toml."""
    stamp_file = VENV / ".hashtrail-stamp"
    if stamp_file.exists() and stamp_file.read_text() == _stamp():
        return
    if not (BIN / "python").exists():
        print(f"[dev] creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("[dev] installing hashtrail and its pinned dependencies", flush=True)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"],
        check=True,
    )
    stamp_file.write_text(_stamp())


def _workers(rest: list[str]) -> list[str]:
    """One pytest worker per core plus one, at most 4, each taking whole files (a
    file's fixtures are built once). Why more workers than cores: most of the suite
    waits on virtual devices, brokers and databases rather than computing. Measured on
    a 2-core machine (quiet, same tree): the e2e and firmware tests kept 48% of two
    cores busy at one worker per core; the whole suite took 795 s at 2 workers, 638 s
    at 3 and 570 s at 4 (1.68 cores busy), with the same tests passing there. Not 4 on
    two cores: the first CI run at 4 lost two virtual-device tests to 30 s waits
    (stop 38: a device that logged nothing for 30 s, an mpremote exec that never
    came back), where 20 runs at 2 had passed; neither failed in 32 reruns of the two
    beside each other nor in the e2e and firmware tests at 4 workers with two cores
    kept busy. At most 4, so timing-bound tests do not starve on a big machine.
    Options naming workers themselves (-n, -p no:xdist) win."""
    if any(a == "-n" or a.startswith(("-n", "--numprocesses")) or a == "no:xdist"
           for a in rest):
        return []
    # (xdist would hand out the files by their number of tests; tests/conftest.py
    # orders them by their time instead: file_times)
    return ["-n", str(min((os.cpu_count() or 1) + 1, 4)), "--dist", "loadfile",
            "--no-loadscope-reorder"]


TIMES = ROOT / "tests" / "file_times.json"


def file_times(junit: list[Path]) -> dict[str, float]:
    """Seconds per test file (path from the root), averaged over the runs' junit XML
    (pytest --junitxml). tests/conftest.py hands the files to the workers longest
    first, so that no long file starts last, and the files that wait on virtual
    devices run beside the ones that compute."""
    total: dict[str, float] = {}
    for path in junit:
        for case in ET.parse(path).iter("testcase"):
            parts = case.get("classname", "").split(".")
            last = max((i for i, p in enumerate(parts) if p.startswith("test_")), default=-1)
            if last < 0:
                continue
            name = "/".join(parts[:last + 1]) + ".py"
            total[name] = total.get(name, 0.0) + float(case.get("time", 0)) / len(junit)
    return {k: round(v, 1) for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    if verb == "times":
        TIMES.write_text(json.dumps(file_times([Path(p) for p in rest]), indent=0) + "\n")
        print(f"[dev] wrote {TIMES.relative_to(ROOT)}")
        return 0
    ensure_env()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if verb == "test":
        cmd = [str(BIN / "python"), "-m", "pytest", *_workers(rest), *rest]
    elif verb == "demo":
        cmd = [str(BIN / "hashtrail"), "demo", *rest]
    elif verb == "hashtrail":
        cmd = [str(BIN / "hashtrail"), *rest]
    else:
        print(f"unknown command {verb!r}; use demo, test, hashtrail or times", file=sys.stderr)
        return 2
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
