"""chunk_reader.chunks cuts a streamed bundle as the entry-by-entry rule does.

Why: the chunks decide the leaf order (each is accepted in turn), and `chunks` takes a
device's run of lines (as the bundle reader gives them, BundleFile.runs) in slices
instead of one entry at a time; the ledger root must be
byte-identical to what the rule below gives, for any order of devices and entries."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import pytest
from hashtrail.collector.store import RawEntry
from hashtrail.ledger.chunk_reader import chunks, runs_of


def _reference(items: Iterable[tuple[str, RawEntry]], whole: bool, chunk: int
               ) -> Iterator[tuple[str, list[RawEntry]]]:
    """The rule, one entry at a time (as `chunks` was written before)."""
    buf: dict[str, list[RawEntry]] = {}
    n = 0
    for did, r in items:
        lst = buf.setdefault(did, [])
        lst.append(r)
        n += 1
        if whole:
            continue
        if len(lst) >= chunk:
            n -= len(lst)
            yield did, buf.pop(did)
        elif n >= chunk:
            for d in sorted(buf):
                yield d, buf[d]
            buf, n = {}, 0
    for d in sorted(buf):
        lst = buf[d]
        for i in range(0, len(lst), chunk):
            yield d, lst[i:i + chunk]


@pytest.mark.parametrize("seed", range(40))
def test_chunks_are_the_entry_by_entry_rule(seed: int) -> None:
    rnd = random.Random(seed)
    chunk = rnd.choice([1, 2, 3, 5, 8, 13])
    devs = [f"{i:032x}" for i in range(rnd.randrange(1, 6))]
    items: list[tuple[str, RawEntry]] = []
    while len(items) < rnd.randrange(0, 120):
        d = rnd.choice(devs)
        items += [(d, RawEntry(len(items) + k, b"x", None))
                  for k in range(rnd.choice([1, 1, 2, chunk - 1, chunk, chunk + 1,
                                             3 * chunk + 2]))]
    for whole in (False, True):
        want = list(_reference(items, whole, chunk))
        got = list(chunks(runs_of(iter(items), chunk), whole, chunk))
        assert got == want, (whole, chunk)
        # runs as the bundle reader gives them: a device's consecutive lines split
        # anywhere into lists (a run ends at a block's end, a line read alone...)
        got = list(chunks(iter(_split(rnd, items)), whole, chunk))
        assert got == want, (whole, chunk)


def _split(rnd: random.Random, items: list[tuple[str, RawEntry]]
           ) -> list[tuple[str, list[RawEntry]]]:
    runs: list[tuple[str, list[RawEntry]]] = []
    for i, (did, r) in enumerate(items):
        if runs and runs[-1][0] == did and rnd.random() < 0.7 and i:
            runs[-1][1].append(r)
        else:
            runs.append((did, [r]))
    return runs
