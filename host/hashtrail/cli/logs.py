"""`-v` / `-q`: what the `hashtrail` logger hierarchy shows on stderr.

Library modules report through `logging.getLogger(__name__)` (all under `hashtrail.`):
informational lines (a device woken from its REPL, a key moved, a file copied) at INFO,
what the user must hear even with -q (a device reporting its own log altered, an
acknowledgement that failed) at WARNING, detail (link retries, timings) at DEBUG. The
command line decides what reaches the terminal, here, once:

- default: INFO and above, each line exactly as the library wrote it;
- `-q`: WARNING and above (informational lines and progress bars go; errors never do:
  they are printed by `hashtrail.cli.main` as one `hashtrail: error:` line);
- `-v`: DEBUG too, each debug line marked `hashtrail: debug: <module>:`.

Why a handler of our own instead of `logging.basicConfig`: the stream is looked up at
each line (sys.stderr may be replaced: a test's capture, Rich's live display), it is
installed only while `main` runs (a Python caller of the library after it hears
nothing it did not ask for), and it leaves the root logger, hence a host application's
own logging, alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ROOT = "hashtrail"
QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


class _StderrHandler(logging.Handler):
    """One line per record on whatever sys.stderr is now."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno < logging.INFO:
                name = record.name.removeprefix(ROOT + ".")
                msg = f"hashtrail: debug: {name}: {msg}"
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


_HANDLER = _StderrHandler()


@contextmanager
def configured(level: int) -> Iterator[None]:
    """While active, show `level` and above of the `hashtrail` loggers on stderr; then
    put the logger back as it was."""
    log = logging.getLogger(ROOT)
    saved = log.level, log.propagate
    log.addHandler(_HANDLER)
    log.propagate = False
    log.setLevel(level)
    try:
        yield
    finally:
        log.removeHandler(_HANDLER)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def level() -> int:
    """The level configured for this run (what -v / -q chose)."""
    return logging.getLogger(ROOT).getEffectiveLevel()


def esptool_verbosity() -> str:
    """-q / -v passed on to esptool (hashtrail.device.espflash.run): --silent, --verbose."""
    lv = level()
    return "quiet" if lv > NORMAL else "verbose" if lv < NORMAL else "normal"


def add_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v / -q, on the top parser (`hashtrail -q collect ...`) and on every command
    (`hashtrail collect ... -q`). On a command they default to SUPPRESS, so a command's
    parser never overwrites what was given before the command name."""
    g = parser.add_mutually_exclusive_group()
    extra: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    g.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=VERBOSE,
                   help="also show debug detail on stderr (link retries, timings)", **extra)
    g.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=QUIET,
                   help="show only warnings and errors on stderr: no informational lines, "
                        "no progress bars", **extra)
    if top:
        parser.set_defaults(verbosity=NORMAL)


@contextmanager
def steps_hidden(name: str, hidden: bool) -> Iterator[None]:
    """While active, and when `hidden`, the INFO lines of logger `name` are not shown
    unless -v was given (a command whose --json output is the whole story: its step
    lines stayed off stderr before there were loggers, and still do)."""
    log = logging.getLogger(name)
    old = log.level
    if hidden and level() > VERBOSE:
        log.setLevel(QUIET)
    try:
        yield
    finally:
        log.setLevel(old)
