"""Loads the mutation vectors of tools/gen_mutations.py once per test session."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


@cache
def vectors() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tools"))
    import gen_mutations

    return gen_mutations.build_vectors()  # type: ignore[no-any-return]


def by_name(name: str) -> dict[str, Any]:
    for v in vectors()["vectors"]:
        if v["name"] == name:
            return v  # type: ignore[no-any-return]
    raise KeyError(name)
