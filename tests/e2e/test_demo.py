"""`hashtrail demo` end to end: its claims re-checked from the files it leaves behind.

The demo's own report is not trusted: the ledger is re-verified from its SQLite file,
the entry counts come from the two collector stores, the tampered entry is found again
on the device's littlefs image, and the proof file goes through `ledger verify-proof`.
The Ctrl-C test checks that no MicroPython process survives an interrupted demo.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hashtrail.boards import load_board
from hashtrail.chainverify import verify_chain
from hashtrail.cli import main as cli
from hashtrail.entry import entry_hash, parse_entry
from hashtrail.imagefs import read_image
from hashtrail.ledger_db import Ledger
from hashtrail.ledger_verify import verify_ledger
from hashtrail.records import MAGIC_ENTRY, Record, parse_records
from hashtrail.store import Store

pytestmark = pytest.mark.e2e

DEMO = [sys.executable, "-m", "hashtrail.cli", "demo"]


def _processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (the demo's device images)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "micropython" in cmd and str(path) in cmd:
            found.append(cmd)
    return found


def _flash_chain(image: Path) -> dict[int, bytes]:
    """seq -> entry bytes of every entry record on a device's littlefs image."""
    files = read_image(image.read_bytes(), load_board("unix").block_size)
    out: dict[int, bytes] = {}
    for name in sorted(f for f in files if f.startswith("/ht/log/")):
        recs, problems = parse_records(files[name], name)
        assert problems == [], problems  # the edit kept every record's CRC valid
        out.update((r.seq, r.body) for r in recs if r.is_entry)
    return out


def test_demo_outcomes_hold_in_its_files(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    t0 = time.monotonic()
    p = subprocess.run([*DEMO, "--dir", str(d), "--json"], capture_output=True, text=True,
                       timeout=120)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    rep = json.loads(p.stdout)
    assert rep["ok"] and elapsed < 60
    assert _processes_using(d) == []

    # Both collectors contributed; the ledger holds each distinct entry exactly once.
    stores = [Store.open(d / f"collector-{x}.db", create=False) for x in "AB"]
    try:
        by_name = {e.label: e for e in stores[0].enrollments()}
        assert sorted(by_name) == ["dev0", "dev1", "dev2"]
        distinct = 0
        only = {0: 0, 1: 0}
        for e in by_name.values():
            sets = [{r.seq for r in s.accepted_records(e.device_id)} for s in stores]
            distinct += len(sets[0] | sets[1])
            only[0] += len(sets[0] - sets[1])
            only[1] += len(sets[1] - sets[0])
        assert only[0] > 0 and only[1] > 0  # each filled what the other lacked
        victim = by_name["dev1"]
        anchor = stores[0].anchor(victim.device_id)
        quarantined = {r.seq: r.body for r in stores[0].quarantined(victim.device_id)}
    finally:
        for s in stores:
            s.close()
    with Ledger.open(d / "ledger.db") as led:
        vkey = led.verifier.to_string()
        assert led.size == distinct == rep["entries_union"]
        vr = verify_ledger(led)
        assert vr.problems == [] and all(x.problems == [] for x in vr.devices)
        tip = led.device(victim.device_id)
        assert tip is not None

    # The tampering: on dev1's flash, entry k+1 does not link to entry k; the collector
    # said so with dev1's id and seq k+1, accepted nothing, and the ledger stops before k.
    # Every entry carries its own signature by default: the first finding is entry k's.
    t = rep["tamper"]
    k = t["edited_seq"]
    assert t["device_id"] == victim.device_id and t["caught"]
    assert (t["caught_code"], t["caught_seq"]) == ("entry_bad_sig", k)
    assert ("link_mismatch", k + 1) in {(f["code"], f["seq"]) for f in t["findings"]}
    # ... and the device itself reported it at boot, before any collector looked.
    assert f"device {victim.device_id} reports its log altered from seq {k} (" in p.stderr
    assert victim.device_id in t["collector_message"] and f"seq {k + 1}" in \
        t["collector_message"]
    flash = _flash_chain(d / "devices" / "dev1.lfs")
    assert parse_entry(flash[k + 1]).prev != entry_hash(flash[k])
    assert parse_entry(flash[k]).prev == entry_hash(flash[k - 1])
    temp = next(r for r in parse_entry(flash[k]).body if r[0] == t["reading"])[2]
    assert temp == t["new_value"] != t["old_value"]
    assert quarantined[k] == flash[k]  # the collector kept the edited bytes as received
    assert anchor is not None and anchor.seq == t["anchor_before"] == t["anchor_after"] < k
    assert tip.tip_seq == t["ledger_tip_after"] < k
    # The chain on flash verifies up to k: the first break is the link after the edit.
    recs = [Record(MAGIC_ENTRY, s, flash[s], None, "flash", 0) for s in sorted(flash)]
    codes = {(f.seq, f.code) for f in verify_chain(victim.pub, recs).findings}
    assert (k + 1, "link_mismatch") in codes
    assert all(seq is not None and seq > k for seq, _ in codes)

    # The proof the demo printed checks with the CLI, offline, against the ledger's key
    # (and only with it: no key given fails closed).
    assert cli(["ledger", "verify-proof", "--verifier-key", vkey, str(d / "proof.json")]) == 0
    assert cli(["ledger", "verify-proof", str(d / "proof.json")]) == 2


def test_ctrl_c_stops_every_device(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    p = subprocess.Popen([*DEMO, "--dir", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("[3/8]"):
                break
        assert len(_processes_using(d)) == 3  # the devices are up
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert _processes_using(d) == []


def test_refuses_a_folder_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ledger.db").write_text("someone's ledger")
    assert cli(["demo", "--dir", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "ledger.db").read_text() == "someone's ledger"
    assert cli(["demo", "--dir", str(tmp_path / "new"), "--devices", "0"]) == 1
