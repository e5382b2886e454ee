"""Per-entry signatures checked in worker processes (chain.verify_pool) decide exactly what
the threads decide, and the workers never outlive their parent.

Reconcile with a pool and without it must leave the same ledger and say the same
findings, whatever is wrong with a bundle and in whichever batch it falls: batches and
the pool's thresholds are made small here (monkeypatch) so a few hundred entries cross
several of them.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hashtrail.chain import verify_pool
from hashtrail.chain.verify_pool import PoolError, VerifyPool
from hashtrail.collector.bundle import Bundle
from hashtrail.collector.store import RawEntry
from hashtrail.formats.keys import DeviceKey
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.ledger_db import Ledger
from ledgerkit import Device, bundle, trust

N = 650


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifyPool]:
    with VerifyPool(2) as p:
        p.start()             # (a pool not running is started only from COLD_MIN entries)
        yield p


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "BATCH", 100)
    monkeypatch.setattr(rec, "POOL_MIN", 50)
    monkeypatch.setattr(rec, "CHUNK", 300)


def _device(secret: int = 777) -> Device:
    d = Device(secret, per_entry_sig=True)
    d.readings(N - 1)
    return d


def _with(d: Device, seq: int, *, body: bytes | None = None, sig: Any = ...) -> Device:
    """A copy of d's entries with the entry at `seq` given another body or signature."""
    c = Device(d.secret, True, policy=d.policy)
    c.entries = list(d.entries)
    s, b, g = c.entries[seq]
    c.entries[seq] = (s, b if body is None else body, g if sig is ... else sig)
    return c


def _flip(sig: bytes | None) -> bytes:
    assert sig is not None
    return sig[:-1] + bytes([sig[-1] ^ 1])


def _bad(d: Device, seq: int) -> Device:
    return _with(d, seq, sig=_flip(d.entries[seq][2]))


def _state(led: Ledger) -> tuple[Any, ...]:
    db = led.storage
    return (led.size, led.root() if led.size else None, sorted(db.scan_entries()),
            sorted(db.scan_pending()), sorted(db.scan_evidence()),
            [tuple(d)[:9] for d in db.scan_devices()])


def _run(tmp: Path, name: str, bundles: list[Bundle], **kw: Any) -> tuple[Any, ...]:
    led = trust(Ledger.create(tmp / f"{name}.db", "test/pool", key_file=tmp / f"{name}.key"))
    with led:
        results = []
        for b in bundles:
            r = rec.reconcile(led, b, **kw)
            results.append((r.accepted, r.duplicates, r.pending, r.forks, r.checkpoints,
                            r.findings))
        return tuple(results), _state(led)


def _short(b: Bundle, i: int) -> list[Bundle]:
    """b with entry i's signature one byte short (a bundle file cannot carry one: a
    caller of reconcile can)."""
    did, r = b.entries[i]
    assert r.sig is not None
    b.entries[i] = (did, RawEntry(r.seq, r.body, r.sig[:63]))
    return [b]


def _cases() -> dict[str, Callable[[], list[Bundle]]]:
    d = _device()

    def one(dev: Device) -> list[Bundle]:
        return [bundle([dev], cps=[(d, d.checkpoint())])]

    return {
        "clean": lambda: one(d),
        "bad signature in the third batch": lambda: one(_bad(d, 233)),
        "bad signature first and last": lambda: one(_bad(_bad(d, 1), N - 1)),
        "short signature": lambda: _short(one(d)[0], 120),
        "zero signature": lambda: one(_with(d, 140, sig=bytes(64))),
        "stripped signature": lambda: one(_with(d, 410, sig=None)),
        "edited entry, signature kept": lambda: one(
            _with(d, 500, body=d.entries[500][1][:-1] + b"\x00")),
        "signed garbage": lambda: one(_with(d, 50, body=b"\xa0")),
        "wrong seq": lambda: one(_with(d, 77, body=d.entries[78][1], sig=d.entries[78][2])),
        "a hole, then filled": lambda: [
            bundle([d], ranges={d.id_hex: (0, 180)}),
            bundle([d], ranges={d.id_hex: (260, N)}),
            bundle([d], ranges={d.id_hex: (170, 270)}, cps=[(d, d.checkpoint())])],
        "twice, overlapping": lambda: [bundle([d], ranges={d.id_hex: (0, 400)}),
                                       bundle([d], ranges={d.id_hex: (100, N)})],
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_pool_decides_what_threads_decide(case: str, tmp_path: Path, pool: VerifyPool,
                                          small: None) -> None:
    bundles = _cases()[case]()
    threads = _run(tmp_path, "threads", bundles)
    pooled = _run(tmp_path, "pooled", bundles, pool=pool)
    assert pooled == threads
    if case == "clean":
        assert threads[0][0][0] == N and not threads[0][0][5]
    else:
        assert threads[0][0][5] or len(bundles) > 1


def test_pool_is_used(tmp_path: Path, pool: VerifyPool, small: None,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """(The comparison above would pass with the pool never asked.)"""
    asked = []
    submit = pool.submit

    def spy(pub: bytes, bodies: Any, sigs: Any) -> verify_pool.Verdicts:
        asked.append(len(bodies))
        return submit(pub, bodies, sigs)

    monkeypatch.setattr(pool, "submit", spy)
    monkeypatch.setattr(rec, "_check_entries", None)       # threads: not a fallback here
    d = _device()
    _run(tmp_path, "p", [bundle([d], cps=[(d, d.checkpoint())])], pool=pool)
    assert sum(asked) == N and max(asked) == 100


def test_a_refused_signature_is_never_accepted_by_the_pool(tmp_path: Path, pool: VerifyPool,
                                                          small: None) -> None:
    d = _device()
    bad = _bad(d, 233)
    (res,), _ = _run(tmp_path, "p", [bundle([bad], cps=[(d, d.checkpoint())])], pool=pool)
    assert res[0] == 233
    assert rec.Finding(d.id_hex, 233, "entry refused: per-entry signature does not verify") \
        in res[5]


def test_worker_verdicts_are_devicekey_signed(pool: VerifyPool) -> None:
    d = _device()
    key = DeviceKey(d.pub)
    bodies = [b for _, b, _ in d.entries[:40]]
    sigs: list[bytes | None] = [s for _, _, s in d.entries[:40]]
    sigs[3], sigs[4], sigs[5], sigs[6] = None, bytes(64), b"\x01" * 65, _flip(sigs[7])
    sigs[8] = b"\xff" * 64                        # r, s >= n
    hashes, ok = pool.submit(d.pub, bodies, sigs).result()
    assert hashes == [hashlib.sha256(b).digest() for b in bodies]
    assert list(ok) == [int(s is None or key.signed(h, s))
                        for h, s in zip(hashes, sigs, strict=True)]
    assert [i for i, v in enumerate(ok) if not v] == [4, 5, 6, 8]


def test_answers_read_out_of_order_and_dropped(pool: VerifyPool) -> None:
    d = _device()
    bodies = [b for _, b, _ in d.entries]
    sigs = [s for _, _, s in d.entries]
    vs = [pool.submit(d.pub, bodies[i:i + 50], sigs[i:i + 50]) for i in range(0, 300, 50)]
    vs[1].discard()
    assert vs[3].result()[0][0] == hashlib.sha256(bodies[150]).digest()
    assert vs[0].result()[1] == b"\x01" * 50
    vs[4].discard()
    later = pool.submit(d.pub, bodies[:5], sigs[:5])
    assert later.result()[0] == [hashlib.sha256(b).digest() for b in bodies[:5]]
    assert vs[5].result()[0][-1] == hashlib.sha256(bodies[299]).digest()
    vs[2].discard()


def _stop(pid: int) -> None:
    """SIGSTOP the process and wait until it is stopped: a stop is delivered on the way
    back from the kernel, so a worker woken in its read could still take a task after
    kill() returned (CI saw the batch wait for it under load)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop")


def test_a_free_worker_takes_the_work_a_busy_one_cannot(pool: VerifyPool) -> None:
    """Tasks go to whichever worker is free, not a fixed slice to each: with one
    worker stopped (SIGSTOP: as busy as a worker can be), the other answers the whole
    batch. Cut one slice per worker, the batch would wait for the stopped one, as a
    batch waited for the worker sharing its CPU with reconcile (docs/LEDGER.md
    "Per-entry signatures in worker processes")."""
    d = _device()
    bodies = [b for _, b, _ in d.entries]
    sigs = [s for _, _, s in d.entries]
    slow = pool._workers[1].proc.pid
    _stop(slow)
    try:
        got: list[tuple[list[bytes], bytes]] = []
        t = threading.Thread(target=lambda: got.append(
            pool.submit(d.pub, bodies, sigs).result()), daemon=True)
        t.start()
        t.join(30)
        assert got, "the batch waited for the stopped worker"
        assert got[0] == ([hashlib.sha256(b).digest() for b in bodies], b"\x01" * N)
    finally:
        os.kill(slow, signal.SIGCONT)


def test_a_worker_that_dies_holding_a_task_fails_the_wait(tmp_path: Path) -> None:
    """The other worker is alive (stopped here), so the socket never reads end-of-file:
    the wait looks at the workers every half second and says which one died, instead
    of waiting forever for an answer nobody will send."""
    d = _device()
    bodies = [b for _, b, _ in d.entries]
    sigs = [s for _, _, s in d.entries]
    with VerifyPool(2) as p:
        p.start()
        idle, busy = (w.proc for w in p._workers)
        os.kill(idle.pid, signal.SIGSTOP)
        try:
            v = p.submit(d.pub, bodies, sigs)
            busy.kill()
            busy.wait()
            got: list[BaseException] = []

            def wait() -> None:
                try:
                    v.result()
                except PoolError as e:
                    got.append(e)

            t = threading.Thread(target=wait, daemon=True)
            t.start()
            t.join(20)
            assert got, "the wait did not notice the dead worker"
            assert f"verify worker {busy.pid} stopped" in str(got[0])
        finally:
            os.kill(idle.pid, signal.SIGCONT)


def test_tasks_are_cut_by_size_too(pool: VerifyPool) -> None:
    """Entries of up to 65,535 bytes (bundle.MAX_ENTRY) travel, a few to a task."""
    key = Device(4242, per_entry_sig=True)
    bodies = [bytes([i]) * 65_535 for i in range(5)] + [b"small"] * 200
    hashes, ok = pool.submit(key.pub, bodies, [None] * len(bodies)).result()
    assert hashes == [hashlib.sha256(b).digest() for b in bodies]
    assert ok == b"\x01" * len(bodies)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        # a child of a killed parent is reparented and reaped by init; a zombie of ours
        # (the test's own child) counts as gone once its status says so
        if not any(_alive(p) and not _zombie(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


_PARENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hashtrail.chain.verify_pool import VerifyPool
    from hashtrail.ledger import reconcile as rec
    from hashtrail.ledger.ledger_db import Ledger
    from ledgerkit import Device, bundle, trust
    rec.POOL_MIN, rec.BATCH = 50, 100
    d = Device(99, per_entry_sig=True)
    d.readings(1999)
    b = bundle([d])
    tmp = Path(sys.argv[1])
    try:
        with VerifyPool(2) as pool:
            pool.start()
            print(" ".join(str(w.proc.pid) for w in pool._workers), flush=True)
            for k in range(10**6):         # reconciles until stopped
                led = trust(Ledger.create(tmp / f"{k}.db", "t/o", key_file=tmp / f"{k}.k"))
                with led:
                    assert rec.reconcile(led, b, pool=pool).accepted == 2000
                if k == 0:
                    print("reconciling", flush=True)
    except KeyboardInterrupt:
        print("closed" if not pool.running else "left running", flush=True)
        sys.exit(130)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_workers_do_not_outlive_their_parent(how: str, tmp_path: Path) -> None:
    """A reconcile killed -9 mid-run leaves no worker behind (they read end-of-file
    and exit); a Ctrl-C reaches the parent only (the workers are in their own process
    group) and ends its reconcile with KeyboardInterrupt, which closes them."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path)],
                         stdout=subprocess.PIPE, env=env, text=True)
    assert p.stdout is not None
    pids = [int(x) for x in p.stdout.readline().split()]
    assert p.stdout.readline() == "reconciling\n"
    assert len(pids) == 2 and all(_alive(x) for x in pids)
    assert all(os.getpgid(x) == x for x in pids)          # not in the parent's group
    assert all(os.getsid(x) == os.getsid(p.pid) for x in pids)   # but in its session
    try:
        if how == "SIGKILL":
            p.kill()
            assert p.wait(10) == -signal.SIGKILL
        else:
            p.send_signal(signal.SIGINT)
            assert p.stdout.readline() == "closed\n"
            assert p.wait(10) == 130
        assert _gone(pids)
    finally:              # a failing run leaves nothing behind either
        p.kill()
        for x in pids:
            if _alive(x) and not _zombie(x):
                os.kill(x, signal.SIGKILL)


def test_a_pool_starts_only_for_a_large_bundle(tmp_path: Path, small: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting workers costs more than checking a small bundle on threads (COLD_MIN)."""
    d = _device()
    b = bundle([d], cps=[(d, d.checkpoint())])
    plain = Device(778)                        # checkpoints only: nothing to verify
    plain.readings(N - 1)
    unsigned = bundle([plain], cps=[(plain, plain.checkpoint())])
    with VerifyPool(2) as p:
        _run(tmp_path, "small", [b], pool=p)
        assert not p.running
        monkeypatch.setattr(rec, "COLD_MIN", N)
        (res,), _ = _run(tmp_path, "unsigned", [unsigned], pool=p)
        assert res[0] == N and not p.running
        _run(tmp_path, "large", [b], pool=p)
        assert p.running


def test_a_pool_that_cannot_start_leaves_the_work_to_threads(
        tmp_path: Path, small: None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    d = _bad(_device(), 233)
    bundles = [bundle([d], cps=[(d, d.checkpoint())])]
    threads = _run(tmp_path, "threads", bundles, workers=1)
    monkeypatch.setattr(rec, "COLD_MIN", N)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    with VerifyPool(2) as p:
        assert _run(tmp_path, "pooled", bundles, pool=p) == threads
        assert not p.running
    assert "cannot start a verify worker" in caplog.text


def test_a_system_without_the_task_socket_leaves_the_work_to_threads(
        tmp_path: Path, small: None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Where AF_UNIX has no SOCK_SEQPACKET (the workers' shared task socket), the pool
    cannot start: reconcile says so once and checks on threads, no traceback."""
    d = _bad(_device(), 233)
    bundles = [bundle([d], cps=[(d, d.checkpoint())])]
    threads = _run(tmp_path, "threads", bundles, workers=1)
    monkeypatch.setattr(rec, "COLD_MIN", N)

    def refused(*_: object) -> None:
        raise OSError(93, "Protocol not supported")

    monkeypatch.setattr(verify_pool.socket, "socketpair", refused)
    with VerifyPool(2) as p:
        assert _run(tmp_path, "pooled", bundles, pool=p) == threads
        assert not p.running
    assert "cannot start a verify worker (no task socket" in caplog.text


def test_a_worker_that_dies_fails_the_batch(tmp_path: Path, small: None) -> None:
    d = _device()
    b = bundle([d], cps=[(d, d.checkpoint())])
    with VerifyPool(2) as p:
        p.start()
        p._workers[1].proc.kill()
        p._workers[1].proc.wait()
        led = trust(Ledger.create(tmp_path / "l.db", "test/pool", key_file=tmp_path / "k"))
        with led, pytest.raises(PoolError):
            rec.reconcile(led, b, pool=p)
        with Ledger.open(tmp_path / "l.db") as led:
            assert led.size == 0                  # the chunk's transaction rolled back
