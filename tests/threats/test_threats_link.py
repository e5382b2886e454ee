"""Attacks between the device and the collector: replays, edits in transit, spoofed ids.

The man in the middle is a Link subclass over the device's real pty: it sees exactly
the bytes the collector would, and rewrites what it wants after the frame layer (so
it has already "fixed" every frame CRC). The device is a copy of the golden one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hashtrail.cli import main as cli
from hashtrail.collector.collect import collect
from hashtrail.collector.store import Store
from hashtrail.device.link import DeviceInfo, Link, SerialStream
from hashtrail.errors import VerificationError
from hashtrail.formats.keys import KEY_PATH
from hashtrail.formats.records import LOG_DIR, MAGIC_ENTRY, record_fields
from hashtrail.sim import VirtualDevice
from threatkit import SLOW, Golden, accepted_seqs, anchor_seq, fix_crc, image_records, start


class MitmLink(Link):
    """A link whose replies pass through the attacker's hands."""

    def __init__(self, port: str, **hooks: Callable[..., Any]) -> None:
        super().__init__(SerialStream(port))
        self.hooks = hooks

    def hello(self) -> DeviceInfo:
        info = super().hello()
        return self.hooks.get("hello", lambda i: i)(info)  # type: ignore[no-any-return]

    def checkpoint(self, nonce: bytes) -> bytes:
        cose = super().checkpoint(nonce)
        return self.hooks.get("checkpoint", lambda c, n: c)(cose, nonce)  # type: ignore[no-any-return]

    def records(self, from_seq: int, **kw: Any) -> Iterator[bytes]:
        edit = self.hooks.get("record", lambda r: r)
        for rec in super().records(from_seq, **kw):
            yield edit(rec)


def _collect(dev: VirtualDevice, store: Path, **hooks: Callable[..., Any]) -> str:
    link = MitmLink(dev.port, **hooks)
    try:
        with Store.open(store) as st, pytest.raises(VerificationError) as e:
            collect(link, st, ack=False)
    finally:
        link.close()
    return str(e.value)


def _nothing_lost(g: Golden, store: Path) -> None:
    assert anchor_seq(store, g.device_id) == g.anchor
    assert accepted_seqs(store, g.device_id) == list(range(g.anchor + 1))


def test_old_checkpoint_replayed_for_a_fresh_nonce(golden: Golden, tmp_path: Path,
                                                  devices: list[VirtualDevice]) -> None:
    dev = golden.boot(tmp_path, cfg=SLOW)
    devices.append(dev)
    with MitmLink(dev.port) as link:  # captured earlier, for someone else's nonce
        old = link.checkpoint(b"an earlier nonce")
    store = golden.store_copy(tmp_path)
    err = _collect(dev, store, checkpoint=lambda cose, nonce: old)
    assert f"device {golden.device_id}: fresh checkpoint:" in err and "nonce" in err, err
    _nothing_lost(golden, store)


def test_nonce_less_checkpoint_from_the_log_replayed(golden: Golden, tmp_path: Path,
                                                    devices: list[VirtualDevice]) -> None:
    recs, _ = image_records(golden.image)
    logged = [r.body for r in recs if not r.is_entry]  # automatic, made with no nonce
    assert logged
    dev = golden.boot(tmp_path, cfg=SLOW)
    devices.append(dev)
    store = golden.store_copy(tmp_path)
    err = _collect(dev, store, checkpoint=lambda cose, nonce: logged[-1])
    assert "fresh checkpoint:" in err and "nonce" in err, err
    _nothing_lost(golden, store)


def test_entry_edited_in_transit_with_crcs_fixed(golden: Golden, tmp_path: Path,
                                                devices: list[VirtualDevice]) -> None:
    s = golden.anchor + 5

    def edit(rec: bytes) -> bytes:
        magic, seq, _, _ = record_fields(rec)
        if magic != MAGIC_ENTRY or seq != s:
            return rec
        data = bytearray(rec)
        data[-5] ^= 0x01
        fix_crc(data, 0, len(data))
        return bytes(data)

    dev = golden.boot(tmp_path, cfg=SLOW)
    devices.append(dev)
    store = golden.store_copy(tmp_path)
    err = _collect(dev, store, record=edit)
    assert f"seq {s + 1}: link_mismatch" in err, err
    _nothing_lost(golden, store)
    with Store.open(store) as st:  # the edited copy is kept in quarantine as evidence
        assert any(r.seq == s for r in st.quarantined(golden.device_id))


def test_device_claiming_an_id_its_key_does_not_give(golden: Golden, tmp_path: Path,
                                                    devices: list[VirtualDevice]) -> None:
    dev = golden.boot(tmp_path, cfg=SLOW)
    devices.append(dev)
    store = golden.store_copy(tmp_path)
    other = "00" * 16
    err = _collect(dev, store, hello=lambda i: dataclasses.replace(i, device_id=other))
    assert f"device claims id {other} but its public key gives {golden.device_id}" in err
    _nothing_lost(golden, store)


def test_wiped_device_with_a_new_key_is_an_unknown_device(
        golden: Golden, tmp_path: Path, devices: list[VirtualDevice],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Log and key deleted: the device makes a new key and is a stranger to the host."""
    def wipe(fs: Any) -> None:
        fs.remove(KEY_PATH)
        for name in fs.listdir(LOG_DIR):
            fs.remove(f"{LOG_DIR}/{name}")
        fs.remove("/ht/state")

    dev = golden.prepare(tmp_path, edit=wipe, cfg=SLOW)
    devices.append(dev)
    start(dev)
    store = golden.store_copy(tmp_path)
    capsys.readouterr()
    assert cli(["collect", "--port", dev.port, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "is not enrolled" in err and golden.device_id not in err, err
    _nothing_lost(golden, store)
