"""The attack suite's shared history: one golden virtual device, recorded once per session.

Timeline of the golden device (real firmware, real pty, real SQLite):
  boot, first key, readings ........ power cut -> `early` image (last entry E)
  boot again, readings, collect (no ACK, so the device prunes nothing) -> `store`,
      anchored at N (> E): the host has seen a fresh checkpoint for entry N
  readings ........................ power cut -> `image` (last entry M > N)
Every test boots a copy of `image` (or `early`) and damages only its copy; a copy of
`store` is "the collector that has already seen 0..N". Everything under tests/threats
is an end-to-end test (marker e2e).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.collector.collect import collect
from hashtrail.collector.store import Store
from hashtrail.device.link import open_serial
from hashtrail.sim import VirtualDevice
from threatkit import (
    BOARD,
    DEVICE_CFG,
    Golden,
    configure,
    image_records,
    wait_for_seq,
    wait_ready,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def _last_entry(path: Path) -> int:
    recs, probs = image_records(path)
    assert not probs, probs
    return max(r.seq for r in recs if r.is_entry)


# Entries the golden image holds past the anchor (its tail may lose a few unflushed
# ones to the power cut, hence the margin when waiting for them).
_AFTER_ANCHOR = 24


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Golden]:
    d = tmp_path_factory.mktemp("golden")
    dev = VirtualDevice(d, "gold", board=BOARD)
    dev.write_image()
    configure(dev.image_path, DEVICE_CFG)
    try:
        dev.start()
        wait_ready(dev)
        wait_for_seq(dev, 20)
        dev.power_cut()
        early = d / "early.lfs"
        shutil.copyfile(dev.image_path, early)
        early_last = _last_entry(early)
        dev.start()
        wait_ready(dev)
        wait_for_seq(dev, early_last + 22)
        store = d / "golden.db"
        with open_serial(dev.port) as link, Store.open(store) as st:
            info = link.hello()
            st.enroll(info.device_id, info.pub, label="gold", board=info.board, fw=info.fw)
            res = collect(link, st, ack=False)
        assert res.upto_seq is not None
        # Enough after the anchor for the attacks: a whole segment (8 records) past the
        # one holding the anchor, a later one still, and mid-segment entries in them.
        wait_for_seq(dev, res.upto_seq + _AFTER_ANCHOR + 4)
        dev.power_cut()
        image = d / "golden.lfs"
        shutil.copyfile(dev.image_path, image)
    finally:
        dev.stop()
    g = Golden(d, image, early, store, info.device_id, info.pub, early_last,
               res.upto_seq, _last_entry(image))
    assert g.early_last < g.anchor <= g.last - _AFTER_ANCHOR, g
    yield g

