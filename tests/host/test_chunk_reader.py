"""The bundle reader process (ledger.chunk_reader) changes when work is done, never what
is accepted: reconcile with it and without it leaves the same ledger, the same
findings; a reader that stops, a bundle that changes under it, a frame out of
protocol are one clear error; a reader never outlives its reconcile.

The bundles are the stress test's (test_reconcile_carry_stress: devices that sign
rarely, never, every entry; a hole and its filler; a stripped copy; a fork; bundles
with devices interleaved), reconciled in small chunks so that every device spans
several, and the reader is made to run for them (it starts only for files of
READER_MIN_BYTES on a machine with two CPUs).
"""

from __future__ import annotations

import gc
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hashtrail.cli import main
from hashtrail.collector.store import RawEntry
from hashtrail.errors import FormatError
from hashtrail.ledger import chunk_reader as cr
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger import reconcile_files as rf
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from hashtrail.ledger.reconcile_files import reconcile_files
from ledgerkit import trust
from test_reconcile_carry_stress import CHUNK, _bundles, _state

ROOT = Path(__file__).resolve().parents[2]


class _Seen:
    """What the readers of a run sent: chunks prepared by the reader, chunks it left
    to reconcile (per-entry signatures, entries that do not decode)."""

    def __init__(self) -> None:
        self.started = 0
        self.prepared = 0
        self.left = 0


def _reader(monkeypatch: pytest.MonkeyPatch, on: bool) -> _Seen:
    """Small chunks; the reader on for every bundle (`on`) or for none."""
    monkeypatch.setattr(rec, "CHUNK", CHUNK)
    monkeypatch.setattr(rf, "READER_MIN_BYTES", 0 if on else 1 << 62)
    monkeypatch.setattr(rf, "cpu_workers", lambda: 2)
    seen = _Seen()
    start, nxt = cr.ChunkReader.start.__func__, cr.ChunkReader._next  # type: ignore[attr-defined]

    def start_(cls: type[cr.ChunkReader], *a: Any) -> cr.ChunkReader | None:
        seen.started += 1
        return start(cls, *a)

    def next_(self: cr.ChunkReader) -> cr.Prepared | None:
        p = nxt(self)
        if p is not None:
            if p.checked is None:
                seen.left += 1
            else:
                seen.prepared += 1
        return p

    monkeypatch.setattr(cr.ChunkReader, "start", classmethod(start_))
    monkeypatch.setattr(cr.ChunkReader, "_next", next_)
    return seen


def _build(tmp: Path, name: str, paths: list[str], at: str | None = None
           ) -> tuple[Any, list[Any], bytes]:
    led_path, key = at or str(tmp / f"{name}.db"), tmp / f"{name}.key"
    with trust(Ledger.create(led_path, f"t/{name}", key_file=key)):
        pass
    run = reconcile_files(led_path, paths, key_file=key)
    with Ledger.open(led_path) as led:
        assert verify_ledger(led).problems == []
        return _state(led), [b.result for b in run.bundles], led.root()


def _results(results: list[Any]) -> list[Any]:
    return [(r.accepted, r.duplicates, r.pending, r.checkpoints, r.forks, r.enrolled,
             r.findings) for r in results]


@pytest.mark.parametrize(("seed", "pool"), [(1, False), (2, False), (3, True)])
def test_the_reader_changes_nothing_reconcile_decides(
        seed: int, pool: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same entries, leaves (root), held rows, evidence and findings with the reader as
    without; `pool`: the verify workers check the per-entry-signed chunks meanwhile."""
    if pool:
        monkeypatch.setattr(rec, "POOL_MIN", 4)
        monkeypatch.setattr(rec, "BATCH", 5)
        monkeypatch.setattr(rec, "COLD_MIN", 0)
    paths = [str(p) for p in _bundles(tmp_path, random.Random(seed))]
    _reader(monkeypatch, False)
    want_state, want_results, want_root = _build(tmp_path, "without", paths)
    seen = _reader(monkeypatch, True)
    state, results, root = _build(tmp_path, "with", paths)
    assert seen.started == len(paths)
    # the reader prepared most chunks, and left the per-entry-signed ones to reconcile
    assert seen.prepared > seen.left > 0, vars(seen)
    assert state == want_state
    assert root == want_root
    assert _results(results) == _results(want_results)


def test_the_reader_feeds_either_backend_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        ledger_at: Callable[[str], str]) -> None:
    """The same with the reader as without on this backend (SQLite, PostgreSQL)."""
    paths = [str(p) for p in _bundles(tmp_path, random.Random(10))]
    _reader(monkeypatch, False)
    want = _build(tmp_path, "without", paths, ledger_at("without"))
    seen = _reader(monkeypatch, True)
    got = _build(tmp_path, "with", paths, ledger_at("with"))
    assert seen.prepared > 0
    assert got[0] == want[0] and got[2] == want[2]
    assert _results(got[1]) == _results(want[1])


def test_a_reader_killed_mid_run_is_an_error_and_a_rerun_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after a few chunks (its socket's buffers small, so it is still reading):
    ReaderError; the ledger verifies; the same bundles again end as a build that was
    never interrupted."""
    paths = [str(p) for p in _bundles(tmp_path, random.Random(4))]
    _reader(monkeypatch, False)
    want_state, _, want_root = _build(tmp_path, "whole", paths)
    _reader(monkeypatch, True)
    monkeypatch.setattr(cr, "_BUFFER", 8192)
    nxt = cr.ChunkReader._next
    calls = [0]

    def next_(self: cr.ChunkReader) -> cr.Prepared | None:
        calls[0] += 1
        if calls[0] == 3:
            assert self._proc is not None
            self._proc.kill()
        return nxt(self)

    monkeypatch.setattr(cr.ChunkReader, "_next", next_)
    led_path, key = tmp_path / "l.db", tmp_path / "l.key"
    with trust(Ledger.create(led_path, "t/l", key_file=key)):
        pass
    with pytest.raises(cr.ReaderError, match=r"bundle reader stopped \(exit status -9\)"):
        reconcile_files(led_path, paths, key_file=key)
    with Ledger.open(led_path) as led:
        assert 0 < led.size < sum(len(v) for v in want_state[0].values())
        assert verify_ledger(led).problems == []
    monkeypatch.setattr(cr.ChunkReader, "_next", nxt)
    reconcile_files(led_path, paths, key_file=key)
    with Ledger.open(led_path) as led:
        assert _state(led) == want_state
        assert led.root() == want_root


def _spoil(path: Path) -> None:
    """Make the entry line in the middle of a bundle file non-canonical (same lines)."""
    lines = path.read_bytes().splitlines(keepends=True)
    i = next(k for k in range(len(lines) // 2, len(lines)) if b'"type":"entry"' in lines[k])
    lines[i] = lines[i].replace(b'{"body"', b'{ "body"', 1)
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize("on", [False, True])
def test_a_bundle_spoiled_after_its_first_pass_fails_alike(
        on: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second bundle changes after the first pass read it: its second pass refuses
    the line with the same words whether the reader read it or reconcile did."""
    paths = [str(p) for p in _bundles(tmp_path, random.Random(5))][:2]
    _reader(monkeypatch, on)
    scan = rf._scan

    def scan_(f: Any) -> Any:
        got = scan(f)
        if f.path == paths[1]:
            _spoil(Path(f.path))
        return got

    monkeypatch.setattr(rf, "_scan", scan_)
    led_path, key = tmp_path / "l.db", tmp_path / "l.key"
    with trust(Ledger.create(led_path, "t/l", key_file=key)):
        pass
    with pytest.raises(FormatError) as e:
        reconcile_files(led_path, paths, key_file=key)
    assert type(e.value) is FormatError
    assert str(e.value).startswith("bundle line ")
    assert str(e.value).endswith(": not in canonical form")


def test_frames_hold_plain_values_only(tmp_path: Path) -> None:
    """A class named in a frame, a chunk whose parts differ in length, a frame of no
    known kind: ReaderError, nothing taken."""
    mine, theirs = socket.socketpair()
    r = cr.ChunkReader(str(tmp_path / "b"), 5, None, mine)
    with r:
        cr._send(theirs, cr._CHUNK, ("d", [RawEntry(0, b"x", None)], None))
        with pytest.raises(cr.ReaderError, match="unexpected"):
            next(r.prepared())
        cr._send(theirs, cr._CHUNK, ("d", [(0, b"x", None)], [b"h"], [], [b"l"]))
        with pytest.raises(cr.ReaderError, match="differ in length"):
            next(r.prepared())
        cr._send(theirs, b"Z", None)
        with pytest.raises(cr.ReaderError, match="no known kind"):
            next(r.prepared())
        theirs.close()
        with pytest.raises(cr.ReaderError, match="closed its socket"):
            next(r.prepared())


def test_a_fault_in_the_reader_is_said_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader's own exception travels as an error frame: ReaderError with its type
    and words."""
    path = _bundles(tmp_path, random.Random(6))[0]

    def boom(did: str, recs: list[RawEntry]) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cr, "prepare", boom)
    mine, theirs = socket.socketpair()
    # serve() is a reader process's main: it ignores Ctrl-C and turns the cyclic
    # collector off for good. Run here, in the test process, both are put back, or
    # every later test of this process would start its children with Ctrl-C ignored
    # (test_a_reader_never_outlives_its_reconcile[SIGINT] failed so, after this test)
    old, was = signal.getsignal(signal.SIGINT), gc.isenabled()
    try:
        cr.serve(theirs.detach(), str(path), CHUNK)   # (one frame: fits the buffer)
    finally:
        signal.signal(signal.SIGINT, old)
        if was:
            gc.enable()
    with cr.ChunkReader(str(path), CHUNK, None, mine) as r, \
            pytest.raises(cr.ReaderError, match=r"failed reading .*RuntimeError: boom"):
        next(r.prepared())


def test_a_reader_that_cannot_start_leaves_the_file_to_reconcile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """No interpreter to start: one warning, and reconcile reads the file itself."""
    paths = [str(p) for p in _bundles(tmp_path, random.Random(7))][:1]
    _reader(monkeypatch, False)
    want_state, _, _ = _build(tmp_path, "without", paths)
    _reader(monkeypatch, True)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    state, _, _ = _build(tmp_path, "with", paths)
    assert state == want_state
    assert "cannot start a bundle reader" in caplog.text


def _big_bundle(tmp: Path) -> Path:
    """A bundle file past READER_MIN_BYTES, as the scale bench writes them."""
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_reconcile_scale as bench
    big, _ = bench.make_bundles(tmp, 25_000, 2, 1, 100)
    assert big.stat().st_size >= cr.READER_MIN_BYTES
    return big


def _readers_of(path: Path) -> list[int]:
    """Pids of running reader processes over `path`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"chunk_reader import serve" in cmd and str(path).encode() in cmd \
                and state != "Z":
            out.append(int(pid))
    return out


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_a_reader_never_outlives_its_reconcile(how: int, tmp_path: Path) -> None:
    """`hashtrail reconcile` killed (SIGKILL) or interrupted (Ctrl-C) while its reader
    runs: the reader is gone within seconds."""
    big = _big_bundle(tmp_path)
    import bench_reconcile_scale as bench
    led = tmp_path / "l.db"
    bench._new_ledger(led)           # (trusting the bench's collector: entries count)
    p = subprocess.Popen([sys.executable, "-m", "hashtrail", "reconcile", "--ledger",
                          str(led), str(big)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not _readers_of(big):
            assert p.poll() is None and time.monotonic() < deadline, "no reader started"
            time.sleep(0.01)
        p.send_signal(how)
        # (stopped by the signal, not done before it came)
        assert p.wait(30) == (-signal.SIGKILL if how == signal.SIGKILL else 130)
        deadline = time.monotonic() + 10
        while _readers_of(big):
            assert time.monotonic() < deadline, "the reader outlived reconcile"
            time.sleep(0.05)
        assert b"Traceback" not in p.stderr.read()  # type: ignore[union-attr]
    finally:
        p.kill()
        p.wait()


def test_the_cli_says_a_stopped_reader_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The reader killed before it sent anything: one line and its hint, exit 1 (as a
    verify worker that stops: not bad input, a run to repeat), nothing accepted."""
    paths = [str(p) for p in _bundles(tmp_path, random.Random(8))][:1]
    _reader(monkeypatch, True)
    start = cr.ChunkReader.start.__func__  # type: ignore[attr-defined]

    def start_(cls: type[cr.ChunkReader], *a: Any) -> cr.ChunkReader | None:
        r = start(cls, *a)
        assert r is not None and r._proc is not None
        r._proc.kill()
        return r

    monkeypatch.setattr(cr.ChunkReader, "start", classmethod(start_))
    led, key = tmp_path / "l.db", tmp_path / "l.key"
    with trust(Ledger.create(led, "t/l", key_file=key)):
        pass
    capsys.readouterr()
    code = main(["reconcile", "--ledger", str(led), "--key-file", str(key), *paths])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "bundle reader stopped (exit status -9)" in err
    assert "run the command again" in err
    with Ledger.open(led) as after:
        assert after.size == 0


def test_frames_round_trip_a_prepared_chunk() -> None:
    """What the reader prepares is what reconcile gets: records, hashes, entries, leaves."""
    from hashtrail.formats.entry import Entry
    from hashtrail.formats.leaf import leaf_bytes
    from hashtrail.formats.merkle import leaf_hash
    sys.path.insert(0, str(ROOT / "tools"))
    import devchain
    d = devchain.Device(4242)
    d.readings(9)
    recs = [RawEntry(s, b, sig) for s, b, sig in d.entries]
    got = cr.prepare(d.id_hex, recs)
    assert got is not None
    hs, fs, leaves = got
    assert leaves == [leaf_hash(leaf_bytes(d.id_hex, r.seq, r.body)) for r in recs]
    mine, theirs = socket.socketpair()
    with cr.ChunkReader("b", 5, None, mine) as r:
        cr._send(theirs, cr._CHUNK, (d.id_hex, [tuple(x) for x in recs], hs,
                                     [tuple(f) for f in fs], leaves))
        p = next(r.prepared())
    assert p.recs == recs and all(type(x) is RawEntry for x in p.recs)
    assert p.checked is not None and [c[1] for c in p.checked] == fs
    assert all(type(c[1]) is Entry and c[2] is True for c in p.checked)
    assert p.leaves == leaves
    # a chunk with a per-entry signature, or an entry that does not decode: not prepared
    assert cr.prepare(d.id_hex, [*recs[:3], recs[3]._replace(sig=bytes(64))]) is None
    assert cr.prepare(d.id_hex, [*recs[:3], recs[3]._replace(body=b"\xa0")]) is None


def test_a_bad_file_stops_its_reader_too(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass refuses a file (cut short inside a line) while the reader,
    started before it, reads ahead: InputError, nothing merged, no reader left."""
    from hashtrail.errors import InputError
    paths = [str(p) for p in _bundles(tmp_path, random.Random(9))][:1]
    data = Path(paths[0]).read_bytes()
    Path(paths[0]).write_bytes(data[:len(data) * 3 // 4])
    _reader(monkeypatch, True)
    monkeypatch.setattr(cr, "_BUFFER", 8192)      # (so the reader is still at work)
    led, key = tmp_path / "l.db", tmp_path / "l.key"
    with trust(Ledger.create(led, "t/l", key_file=key)):
        pass
    with pytest.raises(InputError, match="not newline-terminated"):
        reconcile_files(led, paths, key_file=key)
    assert _readers_of(Path(paths[0])) == []
    with Ledger.open(led) as after:
        assert after.size == 0


def test_a_bundle_named_twice_is_read_once(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`reconcile a a`: the second turn finds the bundle seen and starts no reader."""
    paths = [str(p) for p in _bundles(tmp_path, random.Random(11))][:1]
    seen = _reader(monkeypatch, True)
    _, results, _ = _build(tmp_path, "twice", paths * 2)
    assert seen.started == 1
    assert [r.already for r in results] == [False, True]
