"""`verify_ledger` decides the same with per-entry signatures checked in worker processes
(chain.verify_pool), on threads, or by the chain walk itself, row by row.

The ledger holds four host-made devices (policy 1; policy 1 again; policy 0 with
checkpoints; policy 0 whose entries are also signed), reconciled on one thread. Each
case edits rows of a fresh copy by SQL (a bad, zero, short or stripped signature, an
edited body, a stored hash that does not match, a gap, a body or signature that is not
bytes) and verifies it three ways: the walk computing every hash and verdict itself
(what verify did before the blocks: the reference), the blocks checked on threads, and
the blocks checked by a pool. BLOCK is made small, so a few hundred entries cross
several blocks and the edits land in the middle of one: the reports must be equal, and
a bad signature must be named at its own seq.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hashtrail.chain import verify_pool
from hashtrail.chain.verify_pool import VerifyPool
from hashtrail.formats import keys
from hashtrail.ledger import ledger_verify as lv
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.ledger_db import Ledger
from ledgerkit import Device, bundle, trust


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifyPool]:
    with VerifyPool(2) as p:
        p.start()
        yield p


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lv, "BLOCK", 64)
    monkeypatch.setattr(keys, "_PER_THREAD_MIN", 8)     # a block of 64 on threads too


def _devices() -> dict[str, Device]:
    a = Device(901, per_entry_sig=True)         # policy 1
    a.readings(399)
    c = Device(902, per_entry_sig=True)         # policy 1
    c.readings(249)
    b = Device(903)                             # policy 0: checkpoints only
    d = Device(904, per_entry_sig=True, policy=0)   # policy 0, every entry signed too
    return {"a": a, "b": b, "c": c, "d": d}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The clean ledger, and the device ids by name."""
    devs = _devices()
    b, d = devs["b"], devs["d"]
    cps = []
    for _ in range(3):
        b.readings(100)
        cps.append((b, b.checkpoint()))
    d.readings(199)
    cps.append((d, d.checkpoint(seq=120)))
    path = tmp_path_factory.mktemp("vlp") / "clean.db"
    with trust(Ledger.create(path, "test/verify-pool", key_file=path.with_suffix(".key"))
               ) as led:
        r = rec.reconcile(led, bundle(list(devs.values()), cps=cps), workers=1)
        assert r.findings == [] and r.pending == 0
    return path, {k: v.id_hex for k, v in devs.items()}


Edit = Callable[[sqlite3.Connection, dict[str, str]], None]


def _sig(name: str, seq: int, how: str) -> Edit:
    def edit(db: sqlite3.Connection, ids: dict[str, str]) -> None:
        (sig,) = db.execute("SELECT sig FROM entries WHERE device_id=? AND seq=?",
                            (ids[name], seq)).fetchone()
        new = {"flip": None if sig is None else sig[:-1] + bytes([sig[-1] ^ 1]),
               "zero": bytes(64), "short": None if sig is None else sig[:63],
               "strip": None, "text": "not a signature"}[how]
        db.execute("UPDATE entries SET sig=? WHERE device_id=? AND seq=?",
                   (new, ids[name], seq))
    return edit


def _sql(sql: str, name: str, seq: int) -> Edit:
    def edit(db: sqlite3.Connection, ids: dict[str, str]) -> None:
        db.execute(sql, (ids[name], seq))
    return edit


def _body(name: str, seq: int) -> Edit:
    """The body changed by one bit, its hash and signature kept."""
    def edit(db: sqlite3.Connection, ids: dict[str, str]) -> None:
        (body,) = db.execute("SELECT body FROM entries WHERE device_id=? AND seq=?",
                             (ids[name], seq)).fetchone()
        db.execute("UPDATE entries SET body=? WHERE device_id=? AND seq=?",
                   (body[:-1] + bytes([body[-1] ^ 1]), ids[name], seq))
    return edit


# (edits, a problem a device report must start with, or None)
CASES: dict[str, tuple[list[Edit], str | None]] = {
    "clean": ([], None),
    "bad signature mid-block": ([_sig("a", 150, "flip")],
                                "seq 150: per-entry signature does not verify"),
    "bad signature at seq 0": ([_sig("a", 0, "flip")],
                               "seq 0: per-entry signature does not verify"),
    "bad signature, last entry": ([_sig("c", 249, "flip")],
                                  "seq 249: per-entry signature does not verify"),
    "zero signature": ([_sig("a", 200, "zero")],
                       "seq 200: per-entry signature does not verify"),
    "short signature": ([_sig("a", 65, "short")],
                        "seq 65: per-entry signature does not verify"),
    "stripped signature": ([_sig("a", 130, "strip")],
                           "1 entries without their own device signature (entry 0 "
                           "declares every entry signed), first seq 130"),
    "signature of text": ([_sig("c", 70, "text")],       # (not bytes: a TypeError)
                          "seq 70: string argument without an encoding"),
    "bad signature on policy 0": ([_sig("d", 99, "flip")],
                                  "seq 99: per-entry signature does not verify"),
    "edited body": ([_body("c", 100)],
                    "seq 100: stored entry hash does not match the entry bytes"),
    "edited last body": ([_body("a", 399)],
                         "seq 399: stored entry hash does not match the entry bytes"),
    "stored hash that does not match": (
        [_sql("UPDATE entries SET entry_hash=zeroblob(32) WHERE device_id=? AND seq=?",
              "c", 77)], "seq 77: stored entry hash does not match the entry bytes"),
    "a gap": ([_sql("DELETE FROM entries WHERE device_id=? AND seq=?", "a", 190)],
              "seq 191: gap: seq 190 is missing (the next stored entry is seq 191)"),
    "gap on policy 0": ([_sql("DELETE FROM entries WHERE device_id=? AND seq=?", "b", 64)],
                        "seq 65: gap: seq 64 is missing"),
    "body of text": ([_sql("UPDATE entries SET body='x' WHERE device_id=? AND seq=?",
                           "a", 10)], None),
    "problems in three devices": ([_sig("a", 300, "flip"), _sig("c", 5, "zero"),
                                   _sig("d", 150, "flip")],
                                  "seq 300: per-entry signature does not verify"),
}


def _copy(made: tuple[Path, dict[str, str]], tmp: Path, edits: list[Edit],
          name: str = "copy") -> Path:
    src, ids = made
    path = tmp / f"{name}.db"
    with sqlite3.connect(src) as s, sqlite3.connect(path) as dst:
        s.backup(dst)
    db = sqlite3.connect(path)
    with db:
        for e in edits:
            e(db, ids)
    db.close()
    return path


def _verify(path: Path, **kw: Any) -> dict[str, Any]:
    with Ledger.open(path) as led:
        return lv.verify_ledger(led, **kw).as_json()


def _walk_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing checked ahead: the walk hashes and checks every row itself."""
    monkeypatch.setattr(lv._Blocks, "_checks",
                        lambda self, d, block, sub: [None] * len(block))


@pytest.mark.parametrize("case", list(CASES))
def test_pool_and_threads_decide_what_the_walk_decides(
        case: str, made: tuple[Path, dict[str, str]], tmp_path: Path, pool: VerifyPool,
        small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    edits, first = CASES[case]
    path = _copy(made, tmp_path, edits)
    pooled = _verify(path, pool=pool)
    threads = _verify(path)                     # (fewer than COLD_MIN: no pool)
    with monkeypatch.context() as m:
        _walk_alone(m)
        walked = _verify(path, workers=1)
    assert pooled == walked
    assert threads == walked
    if first is None:
        assert walked["ok"] == (case == "clean"), walked
        return
    problems = [p for d in walked["devices"] for p in d["problems"]]
    assert any(p.startswith(first) for p in problems), problems
    assert not walked["ok"]


def test_a_bad_signature_mid_block_is_named_at_its_seq(
        made: tuple[Path, dict[str, str]], tmp_path: Path, pool: VerifyPool,
        small: None) -> None:
    """(Without the comparison: the verdict the pool or the threads give is read.)"""
    ids = made[1]
    path = _copy(made, tmp_path, [_sig("a", 150, "flip"), _sig("c", 200, "zero")])
    for kw in ({"pool": pool}, {}, {"workers": 1}):
        rep = _verify(path, **kw)
        devs = {d["device_id"]: d for d in rep["devices"]}
        assert devs[ids["a"]]["problems"] == ["seq 150: per-entry signature does not "
                                              "verify"], kw
        assert devs[ids["a"]]["entries"] == 150
        assert devs[ids["c"]]["problems"] == ["seq 200: per-entry signature does not "
                                              "verify"], kw
        assert f"entries (device {ids['a']}, seq 150): per-entry signature does not " \
               "verify" in rep["problems"]


def test_the_pool_is_used_and_stops_at_a_broken_chain(
        made: tuple[Path, dict[str, str]], tmp_path: Path, pool: VerifyPool,
        small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """(The comparisons above would pass with the pool never asked.) Device a's walk
    stops at seq 150, in its third block: its blocks after the one read ahead are
    never read or sent."""
    asked: list[int] = []
    submit = pool.submit

    def spy(pub: bytes, bodies: Any, sigs: Any) -> verify_pool.Verdicts:
        asked.append(len(bodies))
        return submit(pub, bodies, sigs)

    monkeypatch.setattr(pool, "submit", spy)
    ahead: list[int] = []               # blocks already handed over when one more is
    submit_block = lv._Blocks._submit

    def spy_block(self: lv._Blocks, d: Any, block: Any) -> Any:
        ahead.append(len(self.waiting))
        return submit_block(self, d, block)

    monkeypatch.setattr(lv._Blocks, "_submit", spy_block)
    assert _verify(_copy(made, tmp_path, []), pool=pool)["ok"]
    assert max(ahead) == 1              # one block ahead of the walk, never more
    # a (400), c (250), d (200: mostly signed) go to the workers; b (unsigned) is hashed
    # by the walk's own process, as before
    assert sum(asked) == 850 and max(asked) == 64
    asked.clear()
    rep = _verify(_copy(made, tmp_path, [_sig("a", 150, "flip")], "bad"), pool=pool)
    assert not rep["ok"]
    assert sum(asked) == 4 * 64 + 250 + 200


def test_verify_starts_a_pool_of_its_own_for_a_large_ledger(
        made: tuple[Path, dict[str, str]], tmp_path: Path, small: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[VerifyPool] = []
    start = VerifyPool.start

    def spy(self: VerifyPool) -> None:
        if not self.running:
            started.append(self)
        start(self)

    monkeypatch.setattr(VerifyPool, "start", spy)
    path = _copy(made, tmp_path, [_sig("c", 33, "flip")])
    small_ledger = _verify(path)
    assert started == []                        # 850 signed entries < COLD_MIN
    monkeypatch.setattr(lv, "COLD_MIN", 500)
    assert _verify(path) == small_ledger
    assert len(started) == 1 and not started[0].running     # and stopped at the end
    assert _verify(path, workers=1) == small_ledger and len(started) == 1


def test_a_pool_that_cannot_start_leaves_the_work_to_threads(
        made: tuple[Path, dict[str, str]], tmp_path: Path, small: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: VerifyPool) -> None:
        raise verify_pool.PoolError("cannot start a verify worker (test)")

    monkeypatch.setattr(VerifyPool, "start", refuse)
    monkeypatch.setattr(lv, "COLD_MIN", 500)
    path = _copy(made, tmp_path, [_sig("a", 150, "flip")])
    with monkeypatch.context() as m:
        _walk_alone(m)
        walked = _verify(path, workers=1)
    assert _verify(path) == walked


def test_a_worker_that_dies_stops_verify_with_a_clear_error(
        made: tuple[Path, dict[str, str]], tmp_path: Path, small: None) -> None:
    path = _copy(made, tmp_path, [])
    with VerifyPool(2) as p:
        p.start()
        p._workers[1].proc.kill()
        p._workers[1].proc.wait()
        with pytest.raises(verify_pool.PoolError) as e:
            _verify(path, pool=p)
    assert "stopped" in str(e.value) and "not verified" in e.value.hint


def test_an_interrupted_verify_leaves_no_worker(
        made: tuple[Path, dict[str, str]], tmp_path: Path, small: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of the walk: verify's own pool is closed on the way out."""
    started: list[VerifyPool] = []
    procs: list[Any] = []
    start = VerifyPool.start

    def spy(self: VerifyPool) -> None:
        if not self.running:
            started.append(self)
        start(self)
        procs.extend(w.proc for w in self._workers if w.proc not in procs)

    calls = 0
    parse = lv.parse_entry

    def interrupted(b: bytes) -> Any:
        nonlocal calls
        calls += 1
        if calls == 300:
            raise KeyboardInterrupt
        return parse(b)

    monkeypatch.setattr(VerifyPool, "start", spy)
    monkeypatch.setattr(lv, "COLD_MIN", 500)
    monkeypatch.setattr(lv, "parse_entry", interrupted)
    path = _copy(made, tmp_path, [])
    with pytest.raises(KeyboardInterrupt):
        _verify(path)
    assert len(started) == 1 and not started[0].running
    assert len(procs) == 2 and all(x.poll() is not None for x in procs)
