"""Many reconciles at once, some killed, over devices that span many chunks: the
entries a run carries between a device's chunks (reconcile._Carry) end where a serial
build puts them, on both backends.

Why: the carry keeps a device's held entries out of `pending` until the run moves on
or ends, so another reconcile of the same ledger does not see them meanwhile, and a
run killed in between loses them (its bundle, not recorded as seen, brings them
again). The other tests of the carry put one other reconcile at one chosen point;
here several race at seeded random points, over devices that sign rarely (a
checkpoint only at a window's end, windows without one, one device never), sign
every entry (policy 1), have a hole another bundle fills, a copy stripped of its
signatures, a checkpoint that comes alone, a fork (two signed entries for one seq in
one bundle), a long unsigned span written to `pending` while the run goes on
(reconcile._Spill: SPILL_CHUNKS is 2 here), bundles that interleave their devices
(chunks of several devices in turn), and children killed (SIGKILL) between chunks,
inside a chunk's transaction or inside the flush of a carry, then rerun. The ledger
must then be what reconciling the same bundles one after another makes: per device the
same accepted (seq, hash), the same held rows, the same fork evidence; each leaf once;
`verify` OK.

Reconciles run as forked processes (multiprocessing "fork"), so they inherit the
small CHUNK of this test process: every device spans several chunks.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hashtrail.collector.bundle import Bundle
from hashtrail.collector.store import RawEntry
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from hashtrail.ledger.reconcile_files import reconcile_files
from ledgerkit import Device, bundle, save, trust

CHUNK = 23
SEEDS = tuple(range(1, 6))
# interleavings: 3 lost a carried signature (an unsigned copy raced in) before the
# first fix in _Run.flush; 41, 63, 147 and 150 (found among seeds 1..160) left the
# "hole" device's chain held whole: the entry filling its hole was held by another
# run after this run's last chunk of the device, before its flush, and nobody walked
# the two together (the flush's second fix)
TURN_SEEDS = (1, 2, 3, 4, 5, 6, 41, 63, 147, 150)
LONG = 12 * CHUNK     # the "long" device's entries


def _devices() -> dict[str, Device]:
    def dev(secret: int, n: int, per_entry: bool = False) -> Device:
        d = Device(secret, per_entry_sig=per_entry)
        d.readings(n - 1)
        return d
    return {
        "rare": dev(9001, 160),          # policy 0, checkpoints at some windows' ends
        "never": dev(9002, 120),         # policy 0, no checkpoint anywhere: all held
        "every": dev(9003, 110, True),   # policy 1
        "often": dev(9004, 150),         # policy 0, windows of random sizes
        "hole": dev(9005, 140),          # policy 0: one bundle lacks 70, another fills it
        "fork": dev(9006, 120, True),    # policy 1: a second signed entry 30, one bundle
        "stripped": dev(9007, 130, True),  # policy 1, a hole, and an unsigned copy
        "alone": dev(9008, 100),         # policy 0: its checkpoint comes in its own bundle
        "long": dev(9009, LONG),         # policy 0: spans that spill, signed in two bundles
    }


def _stripped(d: Device) -> Device:
    u = copy.copy(d)
    u.entries = [(s, body, None) for s, body, _ in d.entries]
    return u


def _interleaved(b: Bundle, rng: random.Random) -> Bundle:
    """`b` with its devices' entries interleaved at random (each device's in order):
    a streamed bundle then goes in chunks of several devices in turn."""
    runs: dict[str, list[tuple[str, RawEntry]]] = {}
    for did, r in b.entries:
        runs.setdefault(did, []).append((did, r))
    out: list[tuple[str, RawEntry]] = []
    queues = [q[::-1] for q in runs.values()]
    while queues:
        q = rng.choice(queues)
        for _ in range(rng.randint(1, 2 * CHUNK)):
            if q:
                out.append(q.pop())
        queues = [q for q in queues if q]
    b.entries = out
    return b


def _bundles(tmp: Path, rng: random.Random) -> list[Path]:
    """Five collectors' bundles over overlapping windows of the devices."""
    ds = _devices()
    n = {k: len(d.entries) for k, d in ds.items()}
    out: list[Bundle] = []
    for i in range(5):
        devs, ranges, cps = [], {}, []
        for name in ("rare", "never", "every", "often"):
            d = ds[name]
            if rng.random() < 0.25:
                continue
            lo = rng.randrange(0, n[name] // 2)
            hi = rng.randrange(lo + 1, n[name] + 1)
            if i == 0:                   # one bundle has each whole: the union covers
                lo, hi = 0, n[name]
            devs.append(d)
            ranges[d.id_hex] = (lo, hi)
            if name in ("rare", "often") and rng.random() < (0.3 if name == "rare" else 0.7):
                cps.append((d, d.checkpoint(seq=hi - 1)))
        out.append(bundle(devs, ranges, cps, name=f"c{i}"))
    hole, fork, strip, alone = ds["hole"], ds["fork"], ds["stripped"], ds["alone"]
    # the hole: bundle 1 has all of it but entry 70 and its checkpoint; bundle 3 fills it
    b = out[1]
    extra = bundle([hole, strip, alone], cps=[(hole, hole.checkpoint())], name="x")
    b.enrollments += extra.enrollments
    b.checkpoints += extra.checkpoints
    b.entries += [(did, r) for did, r in extra.entries
                  if not (did == hole.id_hex and r.seq == 70)
                  and not (did == strip.id_hex and r.seq == 60)]
    filler = bundle([hole, strip], ranges={hole.id_hex: (60, 80), strip.id_hex: (55, 65)},
                    name="y")
    out[3].enrollments += filler.enrollments
    out[3].entries += filler.entries
    # the copy stripped of its signatures, from anyone (bundle 2)
    copy_ = bundle([_stripped(strip)], ranges={strip.id_hex: (50, 110)}, name="z")
    out[2].enrollments += copy_.enrollments
    out[2].entries += copy_.entries
    # the fork: bundle 4 has the whole chain, then the twin's signed entry 30, last;
    # the others have entries below 30 only (so entry 30 is always decided in bundle 4)
    twin = fork.fork(30)
    twin.readings(1)
    fb = bundle([fork], name="f")
    out[4].enrollments += fb.enrollments
    out[4].entries += fb.entries
    for i in (0, 2):
        lo = bundle([fork], ranges={fork.id_hex: (0, 20 + 5 * i)}, name="f2")
        out[i].enrollments += lo.enrollments
        out[i].entries += lo.entries
    # the long spans (in bundles not interleaved: the seeded draws stay as they were):
    # bundle 1 all of it, signed at 200 (a spilled span accepted, the rest spilled and
    # held), bundle 3 from 150 on, signed at the end
    long_ = ds["long"]
    for i, lo, at in ((1, 0, 200), (3, 150, LONG - 1)):
        lb = bundle([long_], ranges={long_.id_hex: (lo, LONG)},
                    cps=[(long_, long_.checkpoint(seq=at))], name="l")
        out[i].enrollments += lb.enrollments
        out[i].entries += lb.entries
        out[i].checkpoints += lb.checkpoints
    # the checkpoint of `alone`, alone (bundle 0), over its entry 80
    out[0].enrollments += bundle([alone], name="a").enrollments
    out[0].checkpoints += bundle([alone], cps=[(alone, alone.checkpoint(seq=80))],
                                 name="a").checkpoints
    paths = []
    for i, b in enumerate(out):
        if i % 2 == 0:
            b = _interleaved(b, rng)
        if i == 4:
            b.entries.append((fork.id_hex, RawEntry(*twin.entries[30])))
        paths.append(save(b, tmp / f"b{i}.jsonl"))
    return paths


def _child(target: str, key: Path, paths: list[str], kill: tuple[int, str] | None,
           seed: int, go: Any) -> None:
    """A collector's `hashtrail reconcile` of `paths`, started with the others (`go`),
    pausing now and then between chunks (so that the others' transactions come in
    between), killed (SIGKILL) at chunk number kill[0]: before it ("between"), inside
    its transaction after its entries were written ("inside"), or inside the flush of
    a carry ("flush")."""
    rng = random.Random(seed)
    at, mode = kill if kill is not None else (-1, "")
    seen = [0]
    armed = [False]
    chunk, take, flush = rec._Run.chunk, rec._take, rec._Run.flush

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def chunk_(self: rec._Run, *a: Any, **k: Any) -> None:
        seen[0] += 1
        if self.carry is not None and self.carry.did != a[0]:
            time.sleep(rng.random() / 200)     # (widen the window before a flush)
        if seen[0] == at:
            if mode == "between":
                die()
            armed[0] = True
        chunk(self, *a, **k)
        if rng.random() < 0.3:
            time.sleep(rng.random() / 500)

    def take_(*a: Any, **k: Any) -> None:
        take(*a, **k)
        if armed[0] and mode == "inside" and a[4]:
            die()

    def flush_(self: rec._Run, *a: Any, **k: Any) -> None:
        c = self.carry
        flush(self, *a, **k)
        if armed[0] and mode == "flush" and c is not None and c.cands:
            die()

    rec._Run.chunk, rec._take, rec._Run.flush = chunk_, take_, flush_  # type: ignore[method-assign,assignment]
    go.wait(30)
    reconcile_files(target, paths, key_file=key)


def _run_all(jobs: list[tuple[list[str], tuple[int, str] | None]], target: str,
             key: Path, seed: int) -> list[int | None]:
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    procs = [ctx.Process(target=_child, args=(target, key, paths, kill, seed * 100 + i, go))
             for i, (paths, kill) in enumerate(jobs)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]


def _state(led: Ledger) -> tuple[Any, ...]:
    per: dict[str, list[tuple[int, bytes]]] = {}
    leaves = []
    for i, did, seq, h, _body, _sig in led.storage.scan_entries():
        per.setdefault(did, []).append((seq, bytes(h)))
        leaves.append(int(i))
    assert sorted(leaves) == list(range(led.size))          # each leaf once
    for did, es in per.items():
        assert [s for s, _ in es] == list(range(len(es))), did
    held = sorted((r[0], int(r[1]), bytes(r[2]), r[4] is not None)
                  for r in led.storage.scan_pending())
    evidence = sorted((r[0], int(r[1]), bytes(r[2])) for r in led.storage.scan_evidence())
    return per, held, evidence


def _same(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    """`got` is the serial build's state `want`; first per device (accepted, held)."""
    def summary(st: tuple[Any, ...]) -> dict[str, tuple[int, int]]:
        per, held, _ = st
        return {d[:8]: (len(per.get(d, ())), sum(1 for h in held if h[0] == d))
                for d in sorted({*per, *(h[0] for h in held)})}
    assert summary(got) == summary(want)
    assert got == want


def _serial_build(tmp: Path, rng: random.Random, pool: bool,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Any]:
    """Small chunks (and, with `pool`, worker processes from the first few signatures,
    in batches of 5) for this test; the seeded bundles, and the state of a ledger built
    from them one after the other: what every racing build must end as."""
    monkeypatch.setattr(rec, "CHUNK", CHUNK)
    monkeypatch.setattr(rec, "SPILL_CHUNKS", 2)
    monkeypatch.setattr(rec, "FLOAT_CHUNKS", 2)
    if pool:
        monkeypatch.setattr(rec, "POOL_MIN", 4)
        monkeypatch.setattr(rec, "BATCH", 5)
        monkeypatch.setattr(rec, "COLD_MIN", 0)
    paths = [str(p) for p in _bundles(tmp, rng)]
    serial_path = tmp / "serial.db"
    with trust(Ledger.create(serial_path, "t/serial", key_file=tmp / "serial.key")):
        pass
    reconcile_files(serial_path, paths, key_file=tmp / "serial.key")
    with Ledger.open(serial_path) as serial:
        state = _state(serial)
    # (what the spill must give whatever the interleaving: all of the long device)
    assert len(state[0][Device(9009).id_hex]) == LONG
    return paths, state


def _verified(led: Ledger) -> None:
    """`verify`: no problem anywhere, and the one alarm is the fork's device (forked)."""
    report = verify_ledger(led)
    assert report.problems == [], report.problems
    fork = Device(9006).id_hex
    for d in report.devices:
        assert d.problems == [], (d.device_id, d.problems)
        assert d.ok or (d.device_id == fork and d.status == "forked"), d


@pytest.mark.parametrize(("seed", "pool"), [(s, False) for s in SEEDS]
                         + [(1, True), (2, True)])   # (worker start-up costs: two)
def test_racing_killed_reconciles_end_as_a_serial_build(
        seed: int, pool: bool, tmp_path: Path, ledger_at: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`pool`: per-entry signatures checked in worker processes (chain.verify_pool),
    a chunk walked a few entries at a time in one transaction (reconcile "Worker
    processes": later batches use the carry without the pending count check)."""
    rng = random.Random(seed)
    paths, want = _serial_build(tmp_path, rng, pool, monkeypatch)
    per, held, evidence = want
    # the cases are there: entries held, a fork kept as evidence, a device accepted in
    # part, devices of many chunks
    assert held and len(evidence) == 1 and max(len(v) for v in per.values()) > 5 * CHUNK

    target, key = ledger_at("l"), tmp_path / "l.key"
    with trust(Ledger.create(target, "t/stress", key_file=key)):
        pass
    # five collectors, one bundle each (so no bundle is reconciled twice, which would
    # mend what a race broke), three of them killed, then rerun
    victims = rng.sample(range(5), 3)
    jobs: list[tuple[list[str], tuple[int, str] | None]] = [
        ([p], (rng.randint(2, 25), ("between", "inside", "flush")[victims.index(i)])
         if i in victims else None) for i, p in enumerate(paths)]
    codes = _run_all(jobs, target, key, seed)
    assert all(c == 0 for i, c in enumerate(codes) if i not in victims), codes
    killed = [i for i, c in enumerate(codes) if c == -signal.SIGKILL]
    assert killed, codes
    with Ledger.open(target) as led:
        _verified(led)                               # consistent right after the kills
    codes = _run_all([(jobs[i][0], None) for i in victims], target, key, seed + 50)
    assert codes == [0] * len(victims)
    with Ledger.open(target) as led:
        _same(_state(led), want)
        _verified(led)


class _Crash(RuntimeError):
    """A run stopped where it stands (its open transaction rolls back)."""


class _Turns:
    """Reconciles in threads that take turns at chunk boundaries, in an order drawn
    from a seeded generator: one runs at a time, from one turn point to the next, so
    an interleaving is reproduced exactly by its seed, and any of them can be reached
    (the races of the forked test above, at points it may not hit). Turn points are
    outside transactions: before each chunk, and after it (where a device's last chunk
    is committed and its carry not written yet)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cv = threading.Condition()
        self.waiting: set[int] = set()
        self.live: set[int] = set()
        self.turn: int | None = None
        self.pace: list[float] = []
        self.me = threading.local()

    def point(self) -> None:
        me = getattr(self.me, "i", None)
        if me is None:
            return
        with self.cv:
            self.waiting.add(me)
            self.turn = None
            self.cv.notify_all()
            while self.turn != me:
                self.cv.wait()
            self.waiting.discard(me)

    def run(self, jobs: list[Callable[[], None]]) -> list[BaseException | None]:
        errors: list[BaseException | None] = [None] * len(jobs)

        def body(i: int) -> None:
            self.me.i = i
            try:
                self.point()
                jobs[i]()
            except BaseException as e:       # (a crash is what some jobs do)
                errors[i] = e
            finally:
                with self.cv:
                    self.live.discard(i)
                    self.turn = None
                    self.cv.notify_all()

        # each its own pace, from one to a hundred turns to another's one: a run may
        # go from start to end between two chunks of another, or chunk by chunk with it
        self.pace = [100 ** self.rng.random() for _ in jobs]
        threads = [threading.Thread(target=body, args=(i,)) for i in range(len(jobs))]
        self.live = set(range(len(jobs)))
        for t in threads:
            t.start()
        with self.cv:
            while self.live:
                # every live thread at a turn point: give one the turn
                self.cv.wait_for(lambda: self.turn is None and self.waiting == self.live,
                                 timeout=60)
                if not self.live:
                    break
                assert self.waiting == self.live, "a reconcile stalled between turns"
                ready = sorted(self.waiting)
                self.turn = self.rng.choices(ready, [self.pace[i] for i in ready])[0]
                self.cv.notify_all()
                self.cv.wait_for(lambda: self.turn is None, timeout=60)
        for t in threads:
            t.join(60)
        return errors


@pytest.mark.parametrize(("seed", "pool"), [(s, False) for s in TURN_SEEDS]
                         + [(s, True) for s in TURN_SEEDS[2:4]])
def test_interleaved_reconciles_end_as_a_serial_build(
        seed: int, pool: bool, tmp_path: Path, ledger_at: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bundles, one reconcile each, interleaved chunk by chunk in a seeded
    order, two of them crashed (an exception inside a chunk's transaction, or between
    two chunks) and rerun, interleaved again: the serial build's ledger. `pool`: as
    in the forked test."""
    rng = random.Random(seed)
    paths, want = _serial_build(tmp_path, rng, pool, monkeypatch)
    target, key = ledger_at("l"), tmp_path / "l.key"
    with trust(Ledger.create(target, "t/turns", key_file=key)):
        pass
    turns = _Turns(random.Random(seed * 7))
    crash_at: dict[int, tuple[int, str]] = {
        v: (rng.randint(2, 40), rng.choice(["between", "inside"]))
        for v in rng.sample(range(5), 2)}
    steps: dict[int, int] = {}
    chunk, take = rec._Run.chunk, rec._take

    def chunk_(self: rec._Run, *a: Any, **k: Any) -> None:
        turns.point()
        i = getattr(turns.me, "i", None)
        steps[i] = n = steps.get(i, 0) + 1  # type: ignore[index]
        at, how = crash_at.get(i, (-1, ""))  # type: ignore[arg-type]
        if n == at and how == "between":
            raise _Crash("between two chunks")
        turns.me.armed = n >= at and how == "inside"
        chunk(self, *a, **k)
        turns.point()

    def take_(*a: Any, **k: Any) -> None:
        take(*a, **k)
        if getattr(turns.me, "armed", False) and a[4]:
            raise _Crash("inside a chunk's transaction")

    monkeypatch.setattr(rec._Run, "chunk", chunk_)
    monkeypatch.setattr(rec, "_take", take_)

    def job(path: str) -> Callable[[], None]:
        return lambda: reconcile_files(target, [path], key_file=key) and None

    errors = turns.run([job(p) for p in paths])
    crashed = [i for i, e in enumerate(errors) if isinstance(e, _Crash)]
    assert all(e is None or isinstance(e, _Crash) for e in errors), errors
    crash_at.clear()
    errors = turns.run([job(paths[i]) for i in crashed])
    assert errors == [None] * len(crashed)
    with Ledger.open(target) as led:
        _same(_state(led), want)
        _verified(led)


def _killed_after(target: str, key: Path, path: str, chunks: int) -> None:
    """Reconcile `path`, SIGKILLed right after its chunk number `chunks` committed."""
    chunk = rec._Run.chunk
    seen = [0]

    def chunk_(self: rec._Run, *a: Any, **k: Any) -> None:
        chunk(self, *a, **k)
        seen[0] += 1
        if seen[0] == chunks:
            os.kill(os.getpid(), signal.SIGKILL)

    rec._Run.chunk = chunk_  # type: ignore[method-assign]
    reconcile_files(target, [path], key_file=key)


@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("signed_at", [None, 2 * CHUNK + 5])
def test_a_run_killed_while_it_carries_loses_nothing(
        signed_at: int | None, spill: bool, tmp_path: Path,
        ledger_at: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after 4 of a device's 6 chunks, its held entries only in memory (not
    in `pending`; spilled, those of the chunks before in `pending`: reconcile._Spill):
    the bundle is not recorded as seen, so the rerun reads it again and the ledger is
    what a clean run makes; nothing was lost."""
    monkeypatch.setattr(rec, "CHUNK", CHUNK)
    monkeypatch.setattr(rec, "SPILL_CHUNKS", 2 if spill else 10 ** 6)
    monkeypatch.setattr(rec, "FLOAT_CHUNKS", 2 if spill else 10 ** 6)
    n = 6 * CHUNK
    d = Device(9101)
    d.readings(n - 1)
    cps = [(d, d.checkpoint())] + ([] if signed_at is None else
                                   [(d, d.checkpoint(seq=signed_at))])
    path = str(save(bundle([d], cps=cps), tmp_path / "b.jsonl"))
    clean = tmp_path / "clean.db"
    with trust(Ledger.create(clean, "t/clean", key_file=tmp_path / "clean.key")):
        pass
    reconcile_files(clean, [path], key_file=tmp_path / "clean.key")
    with Ledger.open(clean) as led:
        want = _state(led)
    assert len(want[0][d.id_hex]) == n and want[1] == []
    target, key = ledger_at("l"), tmp_path / "l.key"
    with trust(Ledger.create(target, "t/killed", key_file=key)):
        pass
    p = multiprocessing.get_context("fork").Process(target=_killed_after,
                                                   args=(target, key, path, 4))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    with Ledger.open(target) as led:
        dev = led.storage.device(d.id_hex)
        assert dev is not None
        # accepted: what the checkpoint at signed_at covered; the rest only in memory
        assert dev.tip_seq == (-1 if signed_at is None else signed_at)
        held = sorted(int(row[1]) for row in led.storage.scan_pending())
        # (spilled: chunks 1-2 and 3-4; signed at 2 * CHUNK + 5, nothing spills after it)
        assert held == (list(range(4 * CHUNK)) if spill and signed_at is None else [])
        assert led.storage.count_bundles() == 0
        _verified(led)
    reconcile_files(target, [path], key_file=key)
    with Ledger.open(target) as led:
        _same(_state(led), want)
        assert led.storage.count_bundles() == 1
        _verified(led)
