"""Progress bars (Rich) for the commands that take a while: collect, deploy, reconcile,
verify (flash: esptool draws its own Rich bars, see cli/flash.py).

Why only on a terminal: a bar is for a person watching. When stderr is a file or a pipe
(CI, a script, the tests) nothing is drawn, so what a command writes there is exactly
its lines; `-q` hides bars too. The bar is drawn on stderr and stdout is never
redirected, so `--json` and `export --out -` stay pure data; log lines written while a
bar is live go through Rich's stderr proxy and appear above it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hashtrail.cli import logs


def enabled() -> bool:
    """A bar is drawn: stderr is a terminal and -q was not given."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) and logs.level() <= logs.NORMAL


class Bar:
    """One task on a live Rich display, or nothing at all (not a terminal, -q)."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def update(self, completed: float, total: float | None = None, *,
               description: str | None = None, detail: str | None = None) -> None:
        if self._progress is None:
            return
        kw: dict[str, Any] = {"completed": completed}
        if total is not None:
            kw["total"] = total
        if description is not None:
            kw["description"] = description
        if detail is not None:
            kw["detail"] = detail
        self._progress.update(self._task, **kw)


@contextmanager
def bar(description: str, total: float | None = None, unit: str = "") -> Iterator[Bar]:
    """A bar for `total` steps of `unit` (None: not known yet, a pulsing bar); update it
    with `Bar.update`. A finished bar with steps stays on the terminal, like esptool's;
    a pulsing one, which counted nothing, is cleared."""
    if not enabled():
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        MofNCompleteColumn(), TextColumn(unit), TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True), redirect_stdout=False, redirect_stderr=True,
        transient=total is None and not unit)
    with progress:
        task = progress.add_task(description, total=total, detail="")
        yield Bar(progress, task)
