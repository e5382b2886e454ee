"""Host-side data for tests/firmware/test_app_budget.py: the board definition the app
boots with.

Why a copy of boards/unix.json and not a made-up config: the app must load the real
virtual-board definition (three simulated sensors, the board_unix layer). Only the
timing changes, so the run is deterministic and fast: a reading on every loop pass
(sample_interval_s 0) and automatic checkpoints by count, not by time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = Path(__file__).resolve().parent


def make_app_board(out: Path) -> None:
    cfg = json.loads((ROOT / "boards" / "unix.json").read_text())
    cfg["sample_interval_s"] = 0
    # prune_on_ack: the second-boot test measures an ACK that prunes at once (the
    # default keeps acknowledged data until space is needed, docs/STORAGE.md)
    cfg["log"] = {"checkpoint_every": 50, "checkpoint_s": 0, "prune_on_ack": True}
    (out / "board.json").write_text(json.dumps(cfg, indent=2))


def make_app_image(out: Path) -> None:
    """booted.img: the littlefs flash after a first boot of the real app (key made,
    readings, checkpoints, a stream), run on the VM with a large heap. The second-boot
    test recovers it at the board budget in a fresh VM, as a board reboots."""
    if not (out / "board.json").exists():
        make_app_board(out)
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_mpy
    finally:
        sys.path.remove(str(ROOT / "tools"))
    sys.path.insert(0, str(ROOT / "host"))
    try:
        from hashtrail.paths import venv_tool
    finally:
        sys.path.remove(str(ROOT / "host"))
    with tempfile.TemporaryDirectory(prefix="app-image-fw-") as tmp:
        fw = Path(tmp)
        build_mpy.build(fw)
        env = dict(os.environ, MICROPYPATH=f"{fw / 'lib'}:{HERE}")
        proc = subprocess.run(
            [venv_tool("micropython"), "-X", "heapsize=1M", str(HERE / "_runner.py"),
             "test_app_budget", "first_boot_image", str(out)],
            env=env, cwd=str(out), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not (out / "booted.img").exists():
        raise RuntimeError(f"first boot for booted.img failed:\n{proc.stdout}{proc.stderr}")
