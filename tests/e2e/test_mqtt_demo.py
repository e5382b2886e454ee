"""`hashtrail demo --mqtt`: the whole demo with both collectors collecting through the
local Mosquitto instead of the ptys. Two collectors on one broker feed bundles that
reconcile into one ledger like serial ones; the keyless flash rewrite is still caught."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hashtrail.collector.store import Store
from hashtrail.ledger.ledger_db import Ledger
from mqtt_broker import require_shared

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _readme_line() -> str:
    """The README's MQTT block: one command, run here as printed (plus --dir and --json,
    so its files and report can be checked)."""
    text = (ROOT / "README.md").read_text()
    body = text.split("## Over Wi-Fi: collecting through an MQTT broker\n", 1)[1]
    (block,) = re.findall(r"```sh\n(.*?)```", body.split("\n## ", 1)[0], re.S)
    (line,) = [ln for ln in block.splitlines() if ln.strip()]
    return line.split("#", 1)[0].strip()


def test_demo_over_mqtt(tmp_path: Path) -> None:
    url = require_shared()
    line = _readme_line()
    assert line == f"hashtrail demo --mqtt {url}", line
    d = tmp_path / "demo"
    activate = Path(sys.executable).parent / "activate"
    p = subprocess.run(["bash", "-c", f'. "{activate}"\n{line} --dir "{d}" --json'],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rep = json.loads(p.stdout)
    assert rep["ok"], rep
    assert rep["tamper"] is not None and rep["tamper"]["caught"]
    assert rep["update"] is None and "no room for an update" in rep["update_skipped"]
    assert len(rep["collections"]) >= 8
    assert all(c["new_entries"] >= 0 for c in rep["collections"])
    # Both collectors filled what the other lacked; the ledger holds each entry once.
    stores = [Store.open(d / f"collector-{x}.db", create=False) for x in "AB"]
    try:
        only = [0, 0]
        distinct = 0
        for e in stores[0].enrollments():
            a, b = ({r.seq for r in s.accepted_records(e.device_id)} for s in stores)
            distinct += len(a | b)
            only[0] += len(a - b)
            only[1] += len(b - a)
    finally:
        for s in stores:
            s.close()
    assert only[0] > 0 and only[1] > 0
    # Step 4's union is what its ledger held. The tamper step's bundle may then bring
    # the victim's device-signed entries from before the edited one, which collector A
    # refused with the rest of that collection (it quarantines the whole run) and the
    # ledger accepts on their own signatures (in 1 of 4 CI runs: one entry).
    t = rep["tamper"]
    with Ledger.open(d / "ledger.db") as led:
        assert distinct == rep["entries_union"] == rep["ledger_size"]
        assert led.size == distinct + t["ledger_tip_after"] - t["ledger_tip_before"]
