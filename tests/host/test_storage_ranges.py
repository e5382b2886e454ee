"""Range reads of the tree and the leaves (storage `nodes`, `leaf_entries`), on both
backends: what tiles are read with (one query per tile instead of 256), so they must
give exactly what the one-row reads give, in index order, and leave out what is not
stored rather than pad or wrap."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hashtrail.ledger.ledger_db import STORED_LOWEST, Ledger, LedgerError
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust


def test_range_reads_match_single_reads(ledger_at: Callable[[str], str]) -> None:
    d1, d2 = Device(31, per_entry_sig=True), Device(32)
    d1.readings(150)
    d2.readings(199)
    with trust(Ledger.create(ledger_at("l"), "test.example/ranges")) as led:
        reconcile(led, bundle([d1, d2], cps=[(d2, d2.checkpoint())]))
        size = led.size
        assert size == 351
        for level in range(10):
            count = size >> level
            for lo, hi in [
                (0, count - 1),
                (1, count - 2),
                (count // 2, count // 2),
                (max(0, count - 3), count + 5),
            ]:
                if lo > hi:
                    continue
                want = [led.node(level, i) for i in range(lo, min(hi, count - 1) + 1)]
                if level < STORED_LOWEST:     # leaf hashes and level 1: from the entries
                    assert led.storage.nodes(level, lo, hi) == []
                    if hi < count:
                        assert led.nodes(level, lo, hi) == want, (level, lo, hi)
                else:
                    assert led.storage.nodes(level, lo, hi) == want, (level, lo, hi)
                    if hi < count:
                        assert led.nodes(level, lo, hi) == want, (level, lo, hi)
        assert led.storage.nodes(2, size // 4, size + 300) == []
        assert led.leaves(0, size - 1) == [led.leaf(i) for i in range(size)]
        assert led.leaves(7, 7) == [led.leaf(7)]
        assert led.storage.leaf_entries(size, size + 10) == []
        with pytest.raises(LedgerError):
            led.nodes(0, size - 2, size)  # one short: the ledger says so
        with pytest.raises(LedgerError):
            led.leaves(size - 1, size)
