"""A short soak (tools/soak.py): two virtual devices for about half a minute under
collections by two collectors (both ACK), soft/hard resets, power cuts and reconciles. The ledger
must verify, hold every entry exactly once and agree with the devices' flash images;
the app's heap stays within the board budget. `python tools/soak.py --minutes 10` is
the long run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import soak

pytestmark = pytest.mark.e2e


def test_short_soak_loses_and_duplicates_nothing() -> None:
    s = soak.run(minutes=0.4, devices=2, interval=0.1, seed=7)
    assert not s.findings, soak.summary(s)
    assert s.collections >= 10 and s.reconciles >= 2, soak.summary(s)
    assert s.soft_resets + s.hard_resets + s.power_cuts >= 3, soak.summary(s)
    assert s.ledger_entries >= 200 and s.image_entries_checked > 0, soak.summary(s)
    # both collectors ACK and both keep up: the device prunes only when it needs space
    assert min(s.collections_by) >= 3 and min(s.held_by) > 0, soak.summary(s)
    assert s.collect_refused_pruned == 0, soak.summary(s)
    assert sum(s.contributed) == s.ledger_entries, soak.summary(s)
    assert s.heap_samples == 0 or 0 < s.max_heap_used <= soak.BOARD.heap_budget
