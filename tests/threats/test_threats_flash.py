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
from collections.abc import Callable
from pathlib import Path

import pytest
from hashtrail.errors import VerificationError
from hashtrail.formats.records import LOG_DIR, MAGIC_ENTRY
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
    start,
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


def _damaged(g: Golden, tmp: Path, devices: list[VirtualDevice],
             edit: Callable[[LittleFS], None] | None = None,
             image: Path | None = None) -> VirtualDevice:
    """A powered-off, rarely sampling copy of the golden image (or `image`) damaged by
    `edit`: inspect its image, then `_boot_and_refuse` it."""
    dev = g.prepare(tmp, image=image, edit=edit, cfg=SLOW)
    devices.append(dev)
    return dev


def _boot_and_refuse(g: Golden, tmp: Path, dev: VirtualDevice) -> str:
    """Boot the damaged copy and collect it into a copy of the store that holds 0..N:
    the refusal's message, once the store is checked to have lost nothing."""
    start(dev)
    store = g.store_copy(tmp)
    err = _refused(dev, store)
    _nothing_lost(g, store)
    return err


def _codes(g: Golden, image: Path) -> set[tuple[str, int | None]]:
    rep = verify_image(image, g.pub)
    assert all(f.device_id == g.device_id for f in rep.findings)
    return {(f.code, f.seq) for f in rep.findings}


def _target(g: Golden) -> int:
    """An uncollected entry in the middle of a segment, well before the head.

    Where segments break depends on how fast the golden device ran (checkpoints share
    the segments), so the entry is looked up on the image: neither the first nor the
    last record of its segment (a damaged last record reads as a torn tail), and
    followed there by entry s + 1 (the swap and duplicate attacks need both).
    """
    for _, data in sorted(log_files(g.image).items()):
        spans = record_spans(data)
        for i in range(1, len(spans) - 2):
            magic, s, _, _ = spans[i]
            nmagic, ns, _, _ = spans[i + 1]
            if (magic == nmagic == MAGIC_ENTRY and ns == s + 1
                    and g.anchor + 2 <= s <= g.last - 4):
                return s
    raise AssertionError(f"no mid-segment entry after {g.anchor} on the golden image")


def test_edited_entry_with_fixed_crc_breaks_the_chain(golden: Golden, tmp_path: Path,
                                                      devices: list[VirtualDevice]) -> None:
    s = _target(golden)

    def edit(fs: LittleFS) -> None:
        name, data, off, size = find_entry(fs, s)
        data[off + size - 5] ^= 0x01  # last body byte: a reading's value
        fix_crc(data, off, size)  # the record layer is satisfied: only the chain can tell
        write_seg(fs, name, bytes(data))

    dev = _damaged(golden, tmp_path, devices, edit=edit)
    assert ("link_mismatch", s + 1) in _codes(golden, dev.image_path)
    err = _boot_and_refuse(golden, tmp_path, dev)
    assert f"device {golden.device_id}" in err and f"seq {s + 1}: link_mismatch" in err, err


def test_plain_byte_edit_is_caught_as_corruption(golden: Golden, tmp_path: Path,
                                                 devices: list[VirtualDevice]) -> None:
    s = _target(golden)

    def edit(fs: LittleFS) -> None:
        name, data, off, size = find_entry(fs, s)
        data[off + size - 5] ^= 0x01  # CRC left as it was
        write_seg(fs, name, bytes(data))

    dev = _damaged(golden, tmp_path, devices, edit=edit)
    codes = _codes(golden, dev.image_path)
    assert ("record_bad_crc", s) in codes, codes
    err = _boot_and_refuse(golden, tmp_path, dev)
    assert f"seq {s + 1}: gap" in err, err  # the device skips the damaged record


def test_missing_segment_file_is_a_gap(golden: Golden, tmp_path: Path,
                                       devices: list[VirtualDevice]) -> None:
    gone: list[int] = []

    def edit(fs: LittleFS) -> None:
        names = segments(fs)
        # the first segment that starts after the anchor and is not the last one
        name = next(n for n in names[:-1] if int(n[:10]) > golden.anchor)
        gone.append(int(name[:10]))
        fs.remove(f"{LOG_DIR}/{name}")

    dev = _damaged(golden, tmp_path, devices, edit=edit)
    first = gone[0]
    nxt = min(int(n[:10]) for n in log_files(dev.image_path) if int(n[:10]) > first)
    assert ("gap", nxt) in _codes(golden, dev.image_path)
    err = _boot_and_refuse(golden, tmp_path, dev)
    assert f"seq {nxt}: gap: entries {first}..{nxt - 1} missing" in err, err


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
    dev = _damaged(golden, tmp_path, devices, edit=_swap_or_dup(s, dup=False))
    codes = _codes(golden, dev.image_path)
    assert {("gap", s + 1), ("reordered", s)} <= codes, codes
    err = _boot_and_refuse(golden, tmp_path, dev)
    assert f"seq {s + 1}: gap" in err and f"seq {s}: reordered" in err, err


def test_duplicated_entry_is_reported(golden: Golden, tmp_path: Path,
                                      devices: list[VirtualDevice]) -> None:
    s = _target(golden)
    dev = _damaged(golden, tmp_path, devices, edit=_swap_or_dup(s, dup=True))
    assert ("duplicate", s) in _codes(golden, dev.image_path)
    err = _boot_and_refuse(golden, tmp_path, dev)
    assert f"seq {s}: duplicate" in err, err


def test_torn_tail_is_cut_at_boot_and_nothing_complete_is_lost(
        golden: Golden, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    def edit(fs: LittleFS) -> None:
        last = segments(fs)[-1]
        data = read_seg(fs, last)
        _, _, off, size = record_spans(data)[-1]
        write_seg(fs, last, data + data[off:off + size // 2])  # half a record appended

    dev = _damaged(golden, tmp_path, devices, edit=edit)
    codes = _codes(golden, dev.image_path)
    assert [c for c, _ in codes] == ["record_torn_tail"], codes
    start(dev)
    store = golden.store_copy(tmp_path)
    res = collect_from(dev, store)  # the device cut the torn record when it booted
    assert res.upto_seq is not None and res.upto_seq > golden.last
    assert accepted_seqs(store, golden.device_id) == list(range(res.upto_seq + 1))
    dev.power_cut()
    assert verify_image(dev.image_path, golden.pub).ok


def _truncate_after(seq: int):  # type: ignore[no-untyped-def]
    """Delete every segment that starts after `seq` (a tail cut on segment boundaries)."""
    def edit(fs: LittleFS) -> None:
        for name in segments(fs):
            if int(name[:10]) > seq:
                fs.remove(f"{LOG_DIR}/{name}")
    return edit


def _segment_start_at_or_before(g: Golden, seq: int) -> int:
    return max(int(n[:10]) for n in log_files(g.image) if int(n[:10]) <= seq)


def test_tail_truncated_below_the_last_seen_checkpoint_is_refused(
        golden: Golden, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    # last entry kept; the three entries the device writes after it (below) must still
    # sit below the anchor, so the cut is a segment start at least 3 below it
    cut = _segment_start_at_or_before(golden, golden.anchor - 3) - 1
    dev = _damaged(golden, tmp_path, devices, edit=_truncate_after(cut))
    assert verify_image(dev.image_path, golden.pub).ok  # the truncated log alone looks fine
    err = _boot_and_refuse(golden, tmp_path, dev)
    # boot entry cut+1, first reading cut+2, time-set entry cut+3: behind the host's head
    assert (f"fresh checkpoint signs seq {cut + 3}, but this collector holds "
            f"{golden.anchor}") in err, err


def test_tail_truncated_after_the_last_seen_checkpoint_is_not_detectable(
        golden: Golden, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """A limitation, proven: entries no host has seen a checkpoint for can vanish."""
    cut = _segment_start_at_or_before(golden, golden.last) - 1
    assert cut > golden.anchor
    dev = golden.boot(tmp_path, edit=_truncate_after(cut), cfg=SLOW)
    devices.append(dev)
    store = golden.store_copy(tmp_path)
    res = collect_from(dev, store)
    assert res.upto_seq == cut + 3  # boot, reading, time-set now sit where others were
    assert accepted_seqs(store, golden.device_id) == list(range(cut + 4))


def test_rolled_back_flash_image_is_refused(golden: Golden, tmp_path: Path,
                                           devices: list[VirtualDevice]) -> None:
    dev = _damaged(golden, tmp_path, devices, image=golden.early)
    err = _boot_and_refuse(golden, tmp_path, dev)
    e = golden.early_last
    assert (f"fresh checkpoint signs seq {e + 3}, but this collector holds "
            f"{golden.anchor}" in err and "rolled back" in err), err


def test_power_cuts_while_appending_keep_the_log_intact(
        golden: Golden, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    fast = dict(DEVICE_CFG, sample_interval_s=0.02)
    dev = golden.boot(tmp_path, cfg=fast)
    devices.append(dev)
    before = log_files(golden.image)
    rng = random.Random(5)
    for _ in range(5):  # kill -9 at random points while it appends every 20 ms
        time.sleep(rng.uniform(0.3, 0.9))
        dev.power_cut()
        dev.start()
    time.sleep(0.5)
    dev.power_cut()
    rep = verify_image(dev.image_path, golden.pub)
    assert rep.ok, rep.findings  # no torn record survives a boot; the chain is whole
    after = log_files(dev.image_path)
    for name, old in before.items():  # every entry on flash before the cuts is kept
        assert after[name][:len(old)] == old, name
    dev.start()
    store = golden.store_copy(tmp_path)
    res = collect_from(dev, store)
    assert res.upto_seq is not None and res.upto_seq >= rep.last_seq  # type: ignore[operator]
    assert accepted_seqs(store, golden.device_id) == list(range(res.upto_seq + 1))
