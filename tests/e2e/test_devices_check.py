"""`hashtrail devices check` over real virtual devices: per device board, firmware, id,
enrolled or not, and whether its log verifies, without storing or acknowledging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.collector.store import Store
from hashtrail.demo import quiet_power_cut, rewrite_flash, rewrite_target
from hashtrail.formats.entry import KIND_ACK, parse_entry
from hashtrail.sim.provision import make_device, wait_ready

pytestmark = pytest.mark.e2e


def _store_state(path: Path) -> tuple[object, ...]:
    with Store.open(path, create=False) as st:
        return tuple((e.device_id, st.anchor(e.device_id), len(st.all_records(e.device_id)),
                      len(st.checkpoints(e.device_id))) for e in st.enrollments())


def test_check_two_devices_one_enrolled(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "collector.db"
    a = make_device(tmp_path, "a", 0.25)
    b = make_device(tmp_path, "b", 0.25)
    try:
        assert main(["enroll", "--port", a.port, "--store", str(store), "--label", "room 1"]) == 0
        assert main(["collect", "--port", a.port, "--store", str(store)]) == 0
        ids = {a.port: wait_ready(a).device_id, b.port: wait_ready(b).device_id}
        before = _store_state(store)
        capsys.readouterr()
        assert main(["devices", "check", "--port", a.port, "--port", b.port,
                     "--store", str(store), "--json"]) == 0
        rows = {r["port"]: r for r in json.loads(capsys.readouterr().out)}
        ra, rb = rows[a.port], rows[b.port]
        assert (ra["device_id"], rb["device_id"]) == (ids[a.port], ids[b.port])
        assert (ra["enrolled"], ra["label"], rb["enrolled"]) == (True, "room 1", False)
        for r in (ra, rb):
            assert (r["ok"], r["board"], r["fw"], r["problems"]) == (True, "unix", "0.1.0", [])
        # a is verified from what the store accepted on; b from its entry 0
        assert ra["verified_from"] > 0 and rb["verified_from"] == 0
        assert rb["entries"] >= 1
        assert _store_state(store) == before  # nothing stored, b not enrolled
        assert wait_ready(b).time is None  # no SET_TIME: b's clock was never set
        # No ACK: the device logs each ACK as an entry; after the anchor there is only
        # the one of the collect above.
        anchor = before[0][1]
        assert main(["collect", "--port", a.port, "--store", str(store), "--no-ack"]) == 0
        with Store.open(store, create=False) as st:
            kinds = [parse_entry(e.body).kind
                     for e in st.accepted_records(ids[a.port], anchor.seq + 1)]
        assert kinds.count(KIND_ACK) == 1
        capsys.readouterr()
        assert main(["devices", "check", "--port", a.port, "--port", b.port,
                     "--store", str(store)]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == ["PORT", "BOARD", "FW", "DEVICE", "ENROLLED", "LOG"]
        assert f"{ids[a.port]} yes (room 1)" in table[1] and "verified" in table[1]
        assert f"{ids[b.port]} no" in table[2] and "verified" in table[2]
        # A port with no device fails the check (exit 1), the others still reported.
        assert main(["devices", "check", "--port", a.port, "--port", str(tmp_path / "none"),
                     "--json"]) == 1
        rows = json.loads(capsys.readouterr().out)
        assert rows[0]["ok"] and not rows[1]["ok"]
        assert "no such serial port" in rows[1]["problems"][0]
    finally:
        a.stop()
        b.stop()


def test_check_fails_a_device_whose_log_was_rewritten(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    dev = make_device(tmp_path, "a", 0.25)
    try:
        for _ in range(50):  # a reading no device checkpoint record covers yet
            quiet_power_cut(dev)  # between two appends: whole records on the flash
            target = rewrite_target(dev.image_path, dev.board.block_size, -1)
            if target is not None:
                break
            dev.start()
            wait_ready(dev)
        assert target is not None
        edit = rewrite_flash(dev.image_path, dev.board.block_size, target)
        assert edit.crc_valid and edit.links_valid  # only a signature can tell
        dev.start()
        did = wait_ready(dev).device_id
        capsys.readouterr()
        assert main(["devices", "check", "--port", dev.port, "--json"]) == 1
        (row,) = json.loads(capsys.readouterr().out)
        assert row["device_id"] == did and not row["ok"]
        text = " ".join(row["problems"])
        assert f"reports its log altered from seq {target}" in text
        assert f"seq {target}: entry_bad_sig" in text
    finally:
        dev.stop()
