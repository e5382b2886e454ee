"""Attacks and faults on a device's flash (its littlefs image), caught end to end.

Each test boots its own copy of the golden device's image (tests/threats/conftest.py),
damaged with littlefs-python while the device is off, and collects it with the real
collector into a copy of the store that already accepted entries 0..N. Every verdict
names the device, the seq and the reason code, and nothing accepted before the attack
is lost. The host verifier's view of the same image (what `hashtrail verify-log` says)
is checked too.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from hashtrail.errors import VerificationError
from hashtrail.sim import VirtualDevice
from littlefs import LittleFS
from threatkit import (
    DEVICE_CFG,
    SLOW,
    Golden,
    accepted_seqs,
    anchor_seq,
    collect_from,
    find_entry,
    fix_crc,
    log_files,
    read_seg,
    record_spans,
    segments,
    verify_image,
    write_seg,
)


def _refused(dev: VirtualDevice, store: Path) -> str:
    with pytest.raises(VerificationError) as e:
        collect_from(dev, store)
    return str(e.value)


def _nothing_lost(g: Golden, store: Path) -> None:
    """The collector still holds exactly 0..N, and nothing after the attack got in."""
    assert anchor_seq(store, g.device_id) == g.anchor
    assert accepted_seqs(store, g.device_id) == list(range(g.anchor + 1))


def _codes(g: Golden, image: Path) -> set[tuple[str, int | None]]:
    rep = verify_image(image, g.pub)
    assert all(f.device_id == g.device_id for f in rep.findings)
    return {(f.code, f.seq) for f in rep.findings}


def _target(g: Golden) -> int:
    """An uncollected entry in the middle of a segment, well before the head."""
    return g.anchor + 3


def test_edited_entry_with_fixed_crc_breaks_the_chain(golden: Golden, tmp_path: Path,
                                                      devices: list[VirtualDevice]) -> None:
    s = _target(golden)

    def edit(fs: LittleFS) -> None:
        name, data, off, size = find_entry(fs, s)
        data[off + size - 5] ^= 0x01  # last body byte: a reading's value
        fix_crc(data, off, size)  # the record layer is satisfied: only the chain can tell
        write_seg(fs, name, bytes(data))

    dev = golden.boot(tmp_path, edit=edit, cfg=SLOW)
    devices.append(dev)
    assert ("link_mismatch", s + 1) in _codes(golden, dev.image_path)
    store = golden.store_copy(tmp_path)
    err = _refused(dev, store)
    assert f"device {golden.device_id}" in err and f"seq {s + 1}: link_mismatch" in err, err
    _nothing_lost(golden, store)


def test_plain_byte_edit_is_caught_as_corruption(golden: Golden, tmp_path: Path,
                                                 devices: list[VirtualDevice]) -> None:
    s = _target(golden)

    def edit(fs: LittleFS) -> None:
        name, data, off, size = find_entry(fs, s)
        data[off + size - 5] ^= 0x01  # CRC left as it was
        write_seg(fs, name, bytes(data))

    dev = golden.boot(tmp_path, edit=edit, cfg=SLOW)
    devices.append(dev)
    codes = _codes(golden, dev.image_path)
    assert ("record_bad_crc", s) in codes, codes
    store = golden.store_copy(tmp_path)
    err = _refused(dev, store)
    assert f"seq {s + 1}: gap" in err, err  # the device skips the damaged record
    _nothing_lost(golden, store)


def test_missing_segment_file_is_a_gap(golden: Golden, tmp_path: Path,
                                       devices: list[VirtualDevice]) -> None:
    gone: list[int] = []

    def edit(fs: LittleFS) -> None:
        names = segments(fs)
        # the first segment that starts after the anchor and is not the last one
        name = next(n for n in names[:-1] if int(n[:10]) > golden.anchor)
        gone.append(int(name[:10]))
        fs.remove(f"/ht/log/{name}")

    dev = golden.boot(tmp_path, edit=edit, cfg=SLOW)
    devices.append(dev)
    first = gone[0]
    nxt = min(int(n[:10]) for n in log_files(dev.image_path) if int(n[:10]) > first)
    assert ("gap", nxt) in _codes(golden, dev.image_path)
    store = golden.store_copy(tmp_path)
    err = _refused(dev, store)
    assert f"seq {nxt}: gap: entries {first}..{nxt - 1} missing" in err, err
    _nothing_lost(golden, store)


def _swap_or_dup(s: int, dup: bool):  # type: ignore[no-untyped-def]
    def edit(fs: LittleFS) -> None:
        name, data, off, size = find_entry(fs, s)
        spans = record_spans(bytes(data))
        i = next(k for k, sp in enumerate(spans) if sp[2] == off)
        _, s2, off2, size2 = spans[i + 1]
        assert s2 == s + 1
        a, b = bytes(data[off:off + size]), bytes(data[off2:off2 + size2])
        new = (a + a + b) if dup else (b + a)
        write_seg(fs, name, bytes(data[:off]) + new + bytes(data[off2 + size2:]))
    return edit


def test_reordered_entries_are_reported(golden: Golden, tmp_path: Path,
                                        devices: list[VirtualDevice]) -> None:
    s = _target(golden)
    dev = golden.boot(tmp_path, edit=_swap_or_dup(s, dup=False), cfg=SLOW)
    devices.append(dev)
    codes = _codes(golden, dev.image_path)
    assert {("gap", s + 1), ("reordered", s)} <= codes, codes
    store = golden.store_copy(tmp_path)
    err = _refused(dev, store)
    assert f"seq {s + 1}: gap" in err and f"seq {s}: reordered" in err, err
    _nothing_lost(golden, store)


def test_duplicated_entry_is_reported(golden: Golden, tmp_path: Path,
                                      devices: list[VirtualDevice]) -> None:
    s = _target(golden)
    dev = golden.boot(tmp_path, edit=_swap_or_dup(s, dup=True), cfg=SLOW)
    devices.append(dev)
    assert ("duplicate", s) in _codes(golden, dev.image_path)
    store = golden.store_copy(tmp_path)
    err = _refused(dev, store)
    assert f"seq {s}: duplicate" in err, err
    _nothing_lost(golden, store)
