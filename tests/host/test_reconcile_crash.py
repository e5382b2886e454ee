"""Crash safety and concurrency of reconcile on real SQLite files, via the real CLI."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from ledgerkit import COLLECTOR, Device, bundle, save

CLI = [sys.executable, "-m", "hashtrail.cli"]
N = 1500


def _bundles(tmp: Path) -> list[Path]:
    out = []
    for k in range(3):
        d = Device(5000 + k)
        d.readings(N - 1)
        out.append(save(bundle([d], cps=[(d, d.checkpoint(seq=s)) for s in (99, 700, N - 1)],
                               name=f"c{k}"), tmp / f"b{k}.jsonl"))
    return out


def _init(path: Path) -> None:
    subprocess.run([*CLI, "ledger", "init", "--ledger", str(path), "--origin", "t/l"],
                   check=True, capture_output=True)
    subprocess.run([*CLI, "ledger", "trust", "--ledger", str(path),
                    COLLECTOR.verifier().to_string()], check=True, capture_output=True)


def _entries(path: Path) -> int:
    """Entries committed so far, read through a separate read-only connection (WAL)."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet, or busy for a moment
        return 0


def _kill_and_rerun(cmd: list[str], led_path: Path, kill_at: int | None,
                    delay: float) -> int:
    """Start a reconcile, kill -9 it (once `kill_at` entries are committed, or after
    `delay` s), check the ledger right after the kill, rerun it to completion. Returns
    the ledger size seen right after the kill."""
    _init(led_path)
    p = subprocess.Popen([*cmd, str(led_path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + (60.0 if kill_at is not None else delay)
    while p.poll() is None and time.monotonic() < deadline:
        if kill_at is not None and _entries(led_path) >= kill_at:
            break
        time.sleep(0.002)
    p.kill()
    p.wait()
    with Ledger.open(led_path) as led:
        seen = led.size
        assert verify_ledger(led).ok           # consistent right after the kill
    subprocess.run([*cmd, str(led_path)], check=True, capture_output=True)
    with Ledger.open(led_path) as led:
        assert led.size == 3 * N               # the rerun finished it, no duplicates
        assert verify_ledger(led).ok
    return seen


def test_killed_reconcile_reruns_to_the_same_ledger(tmp_path: Path) -> None:
    bundles = _bundles(tmp_path)
    cmd = [*CLI, "reconcile", *map(str, bundles), "--ledger"]
    # Each device is merged in one transaction, so the states a kill can leave are the
    # ones between device commits. Watching the ledger's progress puts kills right after
    # the first and the second device commit (mid-reconcile by construction, however
    # loaded the machine); kills at random times cover every other point.
    partial = 0
    for it, kill_at in enumerate((N, 2 * N, N, 2 * N)):
        seen = _kill_and_rerun(cmd, tmp_path / f"w{it}.db", kill_at, 0.0)
        partial += 0 < seen < 3 * N
    rng = random.Random(7)
    for it in range(4):
        _kill_and_rerun(cmd, tmp_path / f"r{it}.db", None, rng.uniform(0.05, 1.5))
    assert partial >= 2, "no kill landed between two device commits"


def test_two_concurrent_reconciles(tmp_path: Path) -> None:
    bundles = _bundles(tmp_path)
    led_path = tmp_path / "l.db"
    _init(led_path)
    procs = [subprocess.Popen([*CLI, "reconcile", *map(str, order), "--ledger",
                               str(led_path)], stdout=subprocess.DEVNULL)
             for order in (bundles, bundles[::-1])]
    assert [p.wait() for p in procs] == [0, 0]
    with Ledger.open(led_path) as led:
        assert led.size == 3 * N
        assert verify_ledger(led).ok
