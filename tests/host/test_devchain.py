"""tools/devchain.py writes readings by hand (Device.readings): the bytes must be those
of the general path (Device.entry, canonical CBOR by cbor2), or every ledger test would
run on entries the format does not describe."""

from __future__ import annotations

import copy

import pytest
from hashtrail.formats import entry as en
from ledgerkit import Device


def _by_entry(d: Device, n: int) -> None:
    if not d.entries:
        d.key_created()
    for i in range(n):
        d.entry(en.KIND_READING, [{en.SENML_N: "temp", en.SENML_U: "Cel",
                                   en.SENML_V: 20 + (i % 10) / 4}])


@pytest.mark.parametrize(("start", "t", "boot", "fw", "signed"), [
    (2, 1_700_000_000, 1, "0.1.0", False),
    (20, 0, 23, "0.1.0", False),                            # seq and t across 24
    (250, 2 ** 32 - 300, 24, "1.2.3-with-a-long-suffix", False),   # 256; t past 2^32
    (65_530, 2 ** 16 - 65_535, 255, "", False),              # seq past 2^16
    (2, -20, 0, "0.1.0", False),                            # t from below 0 to above
    (3, 1_700_000_000, 256, "0.2.0", True),                 # RFC 6979 per-entry sigs
])
def test_readings_are_the_bytes_entry_writes(start: int, t: int, boot: int, fw: str,
                                             signed: bool) -> None:
    d = Device(7, per_entry_sig=signed, deterministic=signed, t=t, boot=boot, fw=fw)
    d.readings(1)
    # (entries below `start` stand in for a long chain: only their count is read)
    d.entries += [d.entries[-1]] * (start - len(d.entries))
    start = len(d.entries)
    other = copy.deepcopy(d)
    d.readings(30)
    _by_entry(other, 30)
    assert d.entries[start:] == other.entries[start:]
    assert d.head == other.head
    assert len(d.entries) == start + 30
