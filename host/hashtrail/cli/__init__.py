"""The `hashtrail` command line: a thin layer over one plain function per operation.

Each command lives in its own module under `hashtrail.cli` and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`. A command
module parses arguments, calls a library function and prints what it returned: no
SQL, proof, witness or verification logic (tests/host/test_cli_thin.py), so whatever a
command does is callable from Python with the same result.
Expected failures are `HashtrailError`s: caught here once, printed with their hint,
and turned into a non-zero exit without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from hashtrail import __version__
from hashtrail.errors import HashtrailError, printable

# Modules under hashtrail.cli, in the order they appear in --help.
COMMANDS: tuple[str, ...] = (
    "sim",
    "image",
    "flash",
    "deploy",
    "release",
    "update",
    "enroll",
    "collect",
    "verify_log",
    "export",
    "reconcile",
    "ledger",
    "devices",
    "verify",
    "selfcheck",
    "demo",
)


class Parser(argparse.ArgumentParser):
    """argparse, with a refused argument or flag value reported like every other bad
    input: one `hashtrail: error:` line naming the command and the value, a hint, exit 2
    (argparse's own usage dump would bury the line that matters)."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("hashtrail").strip()
        print(f"hashtrail: error: {where + ': ' if where else ''}{_safe(message)}",
              file=sys.stderr)
        print(f"hint: see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hashtrail",
        description="Tamper-evident telemetry for ESP32 fleets.",
    )
    parser.add_argument("--version", action="version", version=f"hashtrail {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"hashtrail.cli.{name}").register(sub)
    return parser


def _safe(text: str) -> str:
    return "\n".join(printable(line) for line in text.split("\n"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except HashtrailError as e:
        # A message may quote device text: no control character reaches the terminal
        # (line breaks our own messages contain are kept).
        print(f"hashtrail: error: {_safe(str(e))}", file=sys.stderr)
        if e.hint:
            print(f"hint: {_safe(e.hint)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hashtrail: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


