"""The README's "Serving the ledger" block runs as printed: publish, serve, verify-proof
--url, mirror, against a real ledger built by reconcile. Placeholders filled in: DEVICE_ID, the
key from `ledger init` ($LEDGER_KEY) and the port (a free one: `serve` is started with
port 0 and the URL it prints replaces 127.0.0.1:8080). The served line runs in the
background like `&` would, and the next line waits for its "serving ... at" line as the
README says to."""

from __future__ import annotations

import functools
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust

pytest.importorskip("aiohttp")

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Serving the ledger"
PRELUDE = f'set -e\nhashtrail() {{ "{sys.executable}" -m hashtrail.cli "$@"; }}\n'


def _block() -> str:
    body = (ROOT / "README.md").read_text().split(HEADING + "\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", body, re.S)
    return block


def _commands(block: str) -> list[str]:
    """One string per command: continuation lines (`\\`) and comment lines below it
    joined to it, as bash reads them."""
    cmds: list[str] = []
    cont = False
    for line in block.splitlines():
        if cont or (line.lstrip().startswith("#") and cmds):
            cmds[-1] += "\n" + line
        else:
            cmds.append(line)
        cont = line.split("#", 1)[0].rstrip().endswith("\\")
    return cmds


def _bash(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["bash", "-c", PRELUDE + cmd], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "Traceback" not in p.stderr, (cmd, p.stdout, p.stderr)
    return p


def test_readme_serving_block_runs_as_printed(tmp_path: Path) -> None:
    d = Device(4242, per_entry_sig=True)
    d.readings(20)
    with trust(Ledger.create(tmp_path / "ledger.db", "example.com/hashtrail")) as led:
        reconcile(led, bundle([d]))
        vkey = led.verifier.to_string()
    env = dict(os.environ, LEDGER_KEY=vkey,
               PYTHONPATH=os.pathsep.join([str(ROOT / "host"), os.environ.get("PYTHONPATH",
                                                                                 "")]))
    cmds = [c.replace("DEVICE_ID", d.id_hex) for c in _commands(_block())]
    assert [c.split()[:3] for c in cmds] == [["hashtrail", "ledger", "publish"],
                                             ["hashtrail", "serve", "--ledger"],
                                             ["hashtrail", "ledger", "verify-proof"],
                                             ["hashtrail", "mirror", "http://127.0.0.1:8080/"]]
    publish, serve, verify, mirror = cmds
    _bash(publish, tmp_path, env)
    assert (tmp_path / "site" / "checkpoint").is_file()
    assert serve.split("#", 1)[0].rstrip().endswith("&")
    line = serve.split("#", 1)[0].rstrip().removesuffix("&").replace(":8080", ":0")
    srv = subprocess.Popen(["bash", "-c", PRELUDE + line.strip()], cwd=tmp_path,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        assert srv.stdout is not None
        ready = srv.stdout.readline()
        m = re.search(r"serving .* at (http://127\.0\.0\.1:\d+/)", ready)
        assert m, ready
        out = _bash(verify.replace("http://127.0.0.1:8080/", m.group(1)), tmp_path, env)
        assert f"inclusion OK: device {d.id_hex} seq 3 " in out.stdout
        out = _bash(mirror.replace("http://127.0.0.1:8080/", m.group(1)), tmp_path, env)
        assert "tree size 0 -> 21" in out.stdout and "21 device words checked" in out.stdout
        assert (tmp_path / "replica" / "checkpoint").read_bytes() == \
            (tmp_path / "site" / "checkpoint").read_bytes()
    finally:
        os.killpg(srv.pid, signal.SIGINT)
        srv.wait(10)
    # the published folder behind a plain static server answers the same command
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "site"))
    static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=static.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{static.server_address[1]}/"
        out = _bash(verify.replace("http://127.0.0.1:8080/", url), tmp_path, env)
        assert f"inclusion OK: device {d.id_hex} seq 3 " in out.stdout
    finally:
        static.shutdown()
        static.server_close()
