"""Board definitions (`boards/<name>.json`): differences between chips are data, not branches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hashtrail.errors import ConfigError
from hashtrail.paths import BOARDS


@dataclass(frozen=True)
class Board:
    name: str
    chip: str | None
    image: str | None
    image_sha256: str | None
    flash_offset: int | None
    console_baud: int
    flash_baud: int | None
    heap_budget: int
    mpy_arch: str | None
    vfs_size: int
    block_size: int
    watchdog: bool
    raw: dict[str, Any]


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS.glob("*.json"))


def load_board(name: str) -> Board:
    path = BOARDS / f"{name}.json"
    if name not in board_names():     # a name, never a path to some other JSON file
        raise ConfigError(f"unknown board {name!r}",
                          hint=f"known boards: {', '.join(board_names())}")
    raw = json.loads(path.read_text())
    mp = raw.get("micropython", {})
    off = mp.get("offset")
    return Board(
        name=raw["name"],
        chip=raw.get("chip"),
        image=mp.get("image"),
        image_sha256=mp.get("sha256"),
        flash_offset=int(off, 0) if isinstance(off, str) else off,
        console_baud=int(raw["baud"]["console"]),
        flash_baud=raw["baud"].get("flash"),
        heap_budget=int(raw["heap_budget"]),
        mpy_arch=raw.get("mpy_arch"),
        vfs_size=int(raw["flash"]["vfs_size"]),
        block_size=int(raw["flash"]["block_size"]),
        watchdog=bool(raw.get("watchdog")),
        raw=raw,
    )
