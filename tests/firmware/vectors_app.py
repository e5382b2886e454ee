"""Host-side data for tests/firmware/test_app_budget.py: the board definition the app
boots with.

Why a copy of boards/unix.json and not a made-up config: the app must load the real
virtual-board definition (three simulated sensors, the board_unix layer). Only the
timing changes, so the run is deterministic and fast: a reading on every loop pass
(sample_interval_s 0) and automatic checkpoints by count, not by time.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def make_app_board(out: Path) -> None:
    cfg = json.loads((ROOT / "boards" / "unix.json").read_text())
    cfg["sample_interval_s"] = 0
    cfg["log"] = {"checkpoint_every": 50, "checkpoint_s": 0}
    (out / "board.json").write_text(json.dumps(cfg, indent=2))
