"""`hashtrail demo --serve`: after the demo (real firmware on virtual devices), its ledger
stays served with the fleet view, at the URL it prints, until Ctrl-C.

The fleet the demo's ledger shows is what `hashtrail verify --json` says of that file,
over HTTP and, where Chromium is installed (tests/e2e/browserkit.py), in the browser's
fleet table too; Ctrl-C stops the server with exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browserkit import CHROMIUM, Page, chromium

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_serve_shows_what_verify_says_until_ctrl_c(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "host")}
    proc = subprocess.Popen([sys.executable, "-m", "hashtrail.cli", "demo", "--dir", str(d),
                             "--serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if line.startswith("serving the demo's ledger at "):
                url = line.split(" at ", 1)[1].split(": fleet view", 1)[0]
                break
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        want = json.loads(subprocess.run(
            [sys.executable, "-m", "hashtrail.cli", "verify", "--ledger", str(d / "ledger.db"),
             "--json"], capture_output=True, text=True, env=env, timeout=60).stdout)
        with urllib.request.urlopen(url + "api/fleet", timeout=30) as r:
            fleet = json.loads(r.read())
        assert want["ok"] and fleet["ok"] and fleet["size"] == want["size"] > 0
        rows = {x["id"]: x for x in fleet["devices"]}
        assert sorted(x["label"] for x in rows.values()) == ["dev0", "dev1", "dev2"]
        for dev in want["devices"]:
            assert {k: rows[dev["device_id"]][k] for k in dev} == dev
        assert any(dev["pending"] for dev in want["devices"])   # the caught tampering
        if CHROMIUM.exists() or os.environ.get("CI") == "true":
            with chromium() as b:
                p = Page(b)
                p.page.goto(url)
                p.page.wait_for_selector("#fleet tbody tr")
                shown = p.page.eval_on_selector_all(
                    "#fleet tbody tr", "trs => trs.map(t => [t.dataset.device, "
                    "t.querySelector('[data-col=entries]').textContent, "
                    "t.querySelector('[data-col=pending]').textContent, "
                    "t.querySelector('.status-text').textContent])")
                assert sorted(shown) == sorted(
                    [dev["device_id"], str(dev["entries"]), str(dev["pending"]),
                     dev["status"]] for dev in want["devices"])
                assert p.errors == []
                p.close()
        assert proc.poll() is None                  # still serving
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]
        assert "stopped serving" in out and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
