"""The issue's attack 1 end to end: a keyless flash rewrite of a device that signs every
entry, then `hashtrail collect` through the real CLI against the real firmware.

The device's /board.json asks for per-entry signatures (log.sign_entries), so its entry
0 declares policy 1. After a first collection (the store keeps that policy), the device
is switched off and an entry after the collector's anchor is edited on its littlefs
image: the later prev links and every CRC recomputed, the signatures from the edit on
removed (no key, so they cannot be made again), the checkpoint records over the old
heads removed. Switched on, the device continues the rewritten chain and, asked for a
fresh checkpoint, signs the head it holds (the firmware before issue 10 signs whatever
head it has; a firmware that checks its log at boot reports the alteration in a
log-altered entry instead). Either way the collector refuses, names device, seq and
reason, accepts nothing past its anchor and keeps what it received as evidence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from hashtrail.cli import main as cli
from hashtrail.collector.store import Store
from hashtrail.device import imagefs
from hashtrail.device.boards import load_board
from hashtrail.formats.entry import KEY_BODY, KEY_KIND, KEY_PREV, KIND_READING, SENML_V
from hashtrail.formats.records import MAGIC_ENTRY, format_record, record_fields, spans
from hashtrail.sim import VirtualDevice, provision
from hashtrail.sim.tamper import read_seg, segments, write_seg
from littlefs import LittleFS

pytestmark = pytest.mark.e2e

HEAP = 160 * 1024            # as tests/e2e/test_collect_e2e.py (the virtual board's ROM)
BOARD = dataclasses.replace(load_board("unix"), heap_budget=HEAP)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[VirtualDevice]:
    files = imagefs.firmware_files(BOARD)
    cfg = json.loads(files[imagefs.BOARD_FILE])
    cfg["sample_interval_s"] = 0.05
    cfg.setdefault("log", {})["sign_entries"] = True
    files[imagefs.BOARD_FILE] = json.dumps(cfg).encode()
    dev = VirtualDevice(tmp_path, "signer", board=BOARD)
    dev.dir.mkdir(parents=True, exist_ok=True)
    dev.image_path.write_bytes(imagefs.build_image(files, BOARD.vfs_size, BOARD.block_size))
    dev.start()
    try:
        provision.wait_ready(dev, timeout=20.0)
        yield dev
    finally:
        dev.stop()


def _records(data: bytes) -> list[tuple[int, int, bytes, bytes | None]]:
    """(magic, seq, body, sig) of every record of one segment file."""
    return [record_fields(data[r.offset:r.offset + r.size]) for r in spans(data)]


def _rewrite(fs: LittleFS, after: int) -> int:
    """Edit the first reading after seq `after`, relink and re-CRC everything later,
    drop the signatures and checkpoints from there on; returns the edited seq."""
    edited = -1
    prev = b""
    for name in segments(fs):
        recs = _records(read_seg(fs, name))
        out = bytearray()
        for magic, seq, body, sig in recs:
            if magic == MAGIC_ENTRY and seq > after:
                m = cbor2.loads(body)
                if edited < 0 and m[KEY_KIND] == KIND_READING:
                    m[KEY_BODY][0][SENML_V] = 99.5
                    edited = seq
                elif edited >= 0:
                    m[KEY_PREV] = prev
                if edited >= 0:
                    body, sig = cbor2.dumps(m, canonical=True), None
            elif magic != MAGIC_ENTRY and edited >= 0:
                continue                                       # a checkpoint over old heads
            if magic == MAGIC_ENTRY:
                prev = hashlib.sha256(body).digest()
            out += format_record(magic, seq, body, sig)
        write_seg(fs, name, bytes(out))
    assert edited > after
    return edited


def test_flash_rewrite_of_a_per_entry_signing_device_is_refused(
        tmp_path: Path, device: VirtualDevice, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "c.db"
    assert cli(["enroll", "--port", device.port, "--store", str(store), "--label", "s"]) == 0
    time.sleep(1.0)
    capsys.readouterr()
    assert cli(["collect", "--port", device.port, "--store", str(store), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    did, anchor = first["device_id"], first["upto_seq"]
    with Store.open(store) as st:
        assert st.policy(did) == 1                   # from the device's entry 0
        accepted = len(st.accepted_records(did))
    time.sleep(1.0)                                  # entries after the anchor
    device.stop()
    edited: list[int] = []
    imagefs.edit_image(device.image_path, BOARD.block_size,
                       lambda fs: edited.append(_rewrite(fs, anchor)))
    device.start()
    provision.wait_ready(device, timeout=20.0)
    assert cli(["collect", "--port", device.port, "--store", str(store)]) == 1
    err = capsys.readouterr().err
    (seq,) = edited
    assert did in err and (f"seq {seq}: entry_unsigned" in err
                           or "log_altered" in err), err
    with Store.open(store) as st:
        assert st.anchor(did) is not None and st.anchor(did).seq == anchor  # type: ignore[union-attr]
        assert len(st.accepted_records(did)) == accepted
        assert any(r.seq == seq for r in st.quarantined(did))   # kept as evidence
