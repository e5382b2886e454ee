"""`hashtrail demo` as a newcomer reads it (issue 15 item 6): every command it prints runs
as printed, it says when it removes its folder, its step times are each step's own, one
REFUSED line, and "1 virtual device" in the singular."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DEMO = [sys.executable, "-m", "hashtrail.cli", "demo"]
HASHTRAIL = f"{sys.executable} -m hashtrail.cli"


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([*DEMO, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def test_every_printed_command_runs_as_printed(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    out = _demo("--dir", str(d)).stdout
    cmds = [ln.strip()[2:] for ln in out.splitlines() if ln.strip().startswith("$ ")]
    kinds = [c.split()[1:3] for c in cmds]
    assert ["verify", "--ledger"] in kinds
    assert ["ledger", "prove"] in kinds and ["ledger", "verify-proof"] in kinds
    assert all(c.startswith("hashtrail ") for c in cmds)
    for c in cmds:
        assert "..." not in c                       # no shortened id or key
        if c.split()[1] in ("verify", "ledger") and "verify-proof" not in c:
            assert "--ledger " in c, c
        p = subprocess.run(["bash", "-c", HASHTRAIL + c.removeprefix("hashtrail")],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert p.returncode == 0, (c, p.stdout[-2000:], p.stderr[-2000:])
        assert "Traceback" not in p.stderr
        if c.startswith("hashtrail verify "):
            # the demo's own ledger, after the caught tampering: clean, one expected anomaly
            assert "PROBLEMS" not in p.stdout and "expected anomaly" in p.stdout
            assert p.stdout.rstrip().splitlines()[-1].startswith("verify: OK")


def test_step_times_refused_line_and_temporary_folder() -> None:
    p = _demo("--devices", "1")
    out, err = p.stdout, p.stderr
    assert "1 virtual device," in out and "1 virtual devices" not in out
    # a step heading carries no clock; each step ends with its own duration, and the
    # durations add up to no more than the total
    headings = [ln for ln in out.splitlines() if re.match(r"\[\d+/10\]", ln)]
    assert len(headings) == 10 and not any(re.search(r"\d s\)$", h) for h in headings)
    took = [float(x) for x in re.findall(r"\(step \d+ took (\d+\.\d) s\)", out)]
    total = float(re.search(r"^\s+time\s+(\d+\.\d) s$", out, re.M).group(1))  # type: ignore[union-attr]
    assert len(took) == 10 and sum(took) <= total + 0.1 * len(took)
    # the refusal is said once; its findings follow, each once
    refused = [ln for ln in out.splitlines() if "REFUSED" in ln]
    assert len(refused) == 1 and "findings" in refused[0]
    found = [ln.strip() for ln in out.splitlines() if "entry_bad_sig" in ln
             and "REFUSED" not in ln and "A refuses" not in ln]
    assert len(found) == len(set(found)) > 0
    m = re.search(r"removed the temporary folder (\S+) ", err)
    assert m is not None and not Path(m.group(1)).exists()
