"""Crash safety and concurrency of reconcile on real SQLite files, via the real CLI."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

from hashtrail.ledger_db import Ledger
from hashtrail.ledger_verify import verify_ledger
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


def test_killed_reconcile_reruns_to_the_same_ledger(tmp_path: Path) -> None:
    bundles = _bundles(tmp_path)
    cmd = [*CLI, "reconcile", *map(str, bundles), "--ledger"]
    # Kill times are fractions of a full run's wall time (start-up included), so the
    # kills keep landing mid-reconcile however fast reconcile gets.
    _init(tmp_path / "timing.db")
    t = time.perf_counter()
    subprocess.run([*cmd, str(tmp_path / "timing.db")], check=True, capture_output=True)
    full = time.perf_counter() - t
    rng = random.Random(7)
    partial = 0
    for it in range(12):
        led_path = tmp_path / f"l{it}.db"
        _init(led_path)
        p = subprocess.Popen([*cmd, str(led_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.0) * full)
        p.kill()
        p.wait()
        with Ledger.open(led_path) as led:
            partial += 0 < led.size < 3 * N
            assert verify_ledger(led).ok           # consistent right after the kill
        subprocess.run([*cmd, str(led_path)], check=True, capture_output=True)
        with Ledger.open(led_path) as led:
            assert led.size == 3 * N
            assert verify_ledger(led).ok
        if it >= 3 and partial >= 2:
            break
    assert partial >= 2, "kills did not land in the middle of a reconcile; widen the window"


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
