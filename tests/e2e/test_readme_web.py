"""The README's "The fleet view in the browser" section holds as written.

The `serve` line runs as printed in a folder holding `ledger.db` (with `--listen
127.0.0.1:0` added: port 8080 may be taken here; that 8080 on 127.0.0.1 is the default
is checked on the parser), and the pages and JSON paths the section names answer. The
`demo --serve` line is the command tests/e2e/test_web_demo.py runs end to end. What the
pages show and how they are kept safe (verify's statuses, plots, zoom, paging,
evidence, the in-page proof check, GET only, text only, CSP) is tested by
test_web_api.py and test_web_browser.py; that uPlot ships in the wheel, by
test_wheel.py."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from hashtrail.cli import build_parser
from webkit import make_fleet_ledger

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## The fleet view in the browser"


def _section() -> str:
    return (ROOT / "README.md").read_text().split(HEADING + "\n", 1)[1].split("\n## ", 1)[0]


def _commands() -> list[list[str]]:
    (block,) = re.findall(r"```sh\n(.*?)```", _section(), re.S)
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_the_commands_are_the_tested_ones() -> None:
    serve, demo = _commands()
    assert serve[:2] == ["hashtrail", "serve"] and demo == ["hashtrail", "demo", "--serve"]
    a = build_parser().parse_args(serve[1:])
    assert a.listen == ("127.0.0.1", 8080) and a.ledger == "ledger.db"
    assert "http://127.0.0.1:8080/" in _section()
    d = build_parser().parse_args(demo[1:])
    assert d.serve and d.listen[0] == "127.0.0.1"
    assert '"--serve"' in (ROOT / "tests" / "e2e" / "test_web_demo.py").read_text()


def test_serve_line_serves_the_pages_and_json_it_names(tmp_path: Path) -> None:
    fl = make_fleet_ledger(tmp_path / "made.db")
    shutil.copy(fl.path, tmp_path / "ledger.db")
    serve = _commands()[0]
    proc = subprocess.Popen([sys.executable, "-m", "hashtrail.cli", *serve[1:], "--listen",
                             "127.0.0.1:0"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"fleet view: (http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        url = m.group(1)
        did, seq = fl.ids["xss"], "5"
        section = _section()
        paths = re.findall(r"`(/[^`]*)`", section)
        assert {"/", "/device/ID", "/ledger", "/api/fleet", "/api/verify",
                "/api/device/ID/readings", "/api/proof/ID/SEQ"} <= set(paths)
        for p in paths:
            if p == "/api/":
                continue
            with urllib.request.urlopen(url + p[1:].replace("ID", did).replace("SEQ", seq),
                                        timeout=30) as r:
                assert r.status == 200, p
                ctype = r.headers["Content-Type"]
                assert ctype.startswith("application/json" if p.startswith("/api/")
                                        else "text/html"), p
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
