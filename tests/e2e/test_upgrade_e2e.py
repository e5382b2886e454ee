"""A collector store and a ledger written by main at 785d63f (tests/fixtures/README.md),
used by today's commands end to end: `enroll` and `collect` a virtual device (real
firmware, real pty) into the old store, `export` it, `reconcile` into the old ledger,
`verify --ledger`. The first command upgrades each file; nothing the old code wrote is
lost on the way (the fixture's devices, leaves and checkpoints stay as they were)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.collector.store import Store
from hashtrail.device.boards import load_board
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.sim import VirtualDevice, provision

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "main-785d63f"
BOARD = dataclasses.replace(load_board("unix"), heap_budget=160 * 1024)  # as test_collect_e2e


@pytest.fixture
def device(tmp_path: Path) -> Iterator[VirtualDevice]:
    dev = provision.make_device(tmp_path, "dev", 0.05, BOARD, ready_timeout=20.0)
    yield dev
    dev.stop()


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_old_store_and_ledger_take_a_new_device_end_to_end(
        tmp_path: Path, device: VirtualDevice, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "old"
    shutil.copytree(FIXTURE, d)
    (d / "ledger.db.key").chmod(0o600)
    store, ledger, bundle = d / "store.db", d / "ledger.db", d / "b.jsonl"
    with Ledger.open(ledger) as led:
        before = (led.size, led.root(), led.devices())
        vkey = led.verifier.to_string()
    with Store.open(store, create=False) as st:
        old_devices = {e.device_id for e in st.enrollments()}
    code, out, err = _cli(capsys, "enroll", "--port", device.port, "--store", store,
                          "--label", "new", "--json")
    assert code == 0, err
    did = json.loads(out)["device_id"]
    time.sleep(1.0)
    code, out, err = _cli(capsys, "collect", "--port", device.port, "--store", store, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["new_entries"] >= 5 and got["from_seq"] == 0
    with Store.open(store, create=False) as st:
        assert {e.device_id for e in st.enrollments()} == old_devices | {did}
        assert st.policy(did) is not None
    code, out, err = _cli(capsys, "export", "--store", store, "--out", bundle)
    assert code == 0, err
    # the store's identity key is the one the old ledger trusts: the new device enrolls
    code, out, err = _cli(capsys, "reconcile", "--ledger", ledger, bundle, "--json")
    rep = json.loads(out)["bundles"][0]
    assert rep["enrolled"] == 1 and rep["accepted"] == got["new_entries"], rep
    assert {f["device_id"] for f in rep["findings"]} <= old_devices, rep
    with Ledger.open(ledger) as led:
        assert led.size == before[0] + got["new_entries"]
        assert led.root(before[0]) == before[1]           # the old tree, a prefix of the new
        old = [x for x in led.devices() if x.device_id != did]
        # the same rows, now with the enrollment signatures the new export carries
        assert [x._replace(enroll_key=None, enroll_sig=None) for x in old] == before[2]
        assert all(x.enroll_sig is not None for x in old)
    code, out, err = _cli(capsys, "verify", "--ledger", ledger, "--verifier-key", vkey,
                          "--json")
    v = json.loads(out)
    assert v["problems"] == [], v["problems"]
    ok = {x["device_id"]: x["ok"] for x in v["devices"]}
    assert ok[did] and sum(ok.values()) == len(ok) - 1, ok       # all but the forked one
