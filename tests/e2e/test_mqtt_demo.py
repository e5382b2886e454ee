"""`hashtrail demo --mqtt`: the whole demo with both collectors collecting through the
local Mosquitto instead of the ptys. Two collectors on one broker feed bundles that
reconcile into one ledger like serial ones; the keyless flash rewrite is still caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from hashtrail.collector.store import Store
from hashtrail.demo import run_demo
from hashtrail.ledger.ledger_db import Ledger
from mqtt_broker import require_shared

pytestmark = pytest.mark.e2e


def test_demo_over_mqtt(tmp_path: Path) -> None:
    url = require_shared()
    d = tmp_path / "demo"
    rep = run_demo(d, devices=3, mqtt=url)
    assert rep.ok, rep.to_json()
    assert rep.tamper is not None and rep.tamper.caught
    assert len(rep.collections) >= 8 and all(c.new_entries >= 0 for c in rep.collections)
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
    with Ledger.open(d / "ledger.db") as led:
        assert led.size == distinct == rep.entries_union
