"""The `hashtrail` command line: a thin layer over one plain function per operation.

Each command lives in its own module under `hashtrail.cli` and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`. A command
module parses arguments, calls a library function and prints what it returned: no
SQL, proof, witness or verification logic (tests/host/test_cli_thin.py), so whatever a
command does is callable from Python with the same result.
Expected failures are `HashtrailError`s: caught here once, printed with their hint,
and turned into a non-zero exit without a traceback: 0 done (clean), 1 integrity
problems found, 2 usage or input errors.

Conventions every command shares: `-v` / `-q` (hashtrail.cli.logs: what the `hashtrail`
loggers show on stderr), `--json` for data on stdout, the ledger and store paths from
`HASHTRAIL_LEDGER` / `HASHTRAIL_STORE` when the flag is not given (hashtrail.cli.args),
and progress bars on a terminal only (hashtrail.cli.progress).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from hashtrail import __version__
from hashtrail.cli import args as cli_args
from hashtrail.cli import logs
from hashtrail.errors import HashtrailError, printable

log = logging.getLogger(__name__)

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
    "serve",
    "mirror",
    "monitor",
    "witness",
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


def named_command(argv: Sequence[str]) -> str | None:
    """The module of the command `argv` names (its first word that is not an option),
    or None: no command, an unknown one, or the top-level help asked for first.

    Why: a command needs its own module and what that imports, not every command's
    (the ledger's, the web server's, the simulator's...): `hashtrail ledger prove`
    starts in about half the time when only `hashtrail.cli.ledger` is registered.
    Without a command, every command is, for the help and argparse's own errors."""
    for word in argv:
        if word in ("-h", "--help", "--version"):
            return None
        if not word.startswith("-"):
            name = word.replace("-", "_")
            return name if name in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (`only`) the top level and that command alone."""
    parser = Parser(
        prog="hashtrail",
        description="Tamper-evident telemetry for ESP32 fleets.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hashtrail {__version__}")
    logs.add_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"hashtrail.cli.{name}").register(sub)
    for p in _subparsers(parser):
        logs.add_options(p, top=False)
    return parser


EPILOG = f"""\
-v / -q work before or after the command name. --json prints data on stdout.
environment: ${cli_args.LEDGER_ENV} (ledger file or postgresql:// URL),
  ${cli_args.STORE_ENV} (collector store),
  ${cli_args.KEY_ENV} (ledger signing key file): used when the flag is not given.
exit status: 0 done, 1 integrity problems found, 2 usage or input error."""


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command's parser, groups (`ledger`, `devices`) and their commands alike."""
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for p in a.choices.values():
                out += [p, *_subparsers(p)]
    return out


def _command(args: argparse.Namespace) -> str:
    sub = getattr(args, "ledger_cmd", None) or getattr(args, "devices_cmd", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def _safe(text: str) -> str:
    return "\n".join(printable(line) for line in text.split("\n"))


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(named_command(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with logs.configured(args.verbosity):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        code = int(args.func(args))
        log.debug("%s: exit %d after %.2f s", _command(args), code, time.monotonic() - t0)
        return code
    except HashtrailError as e:
        log.debug("%s: %s after %.2f s", _command(args), type(e).__name__,
                  time.monotonic() - t0)
        # A message may quote device text: no control character reaches the terminal
        # (line breaks our own messages contain are kept).
        print(f"hashtrail: error: {_safe(str(e))}", file=sys.stderr)
        hint = "; ".join(h for h in (e.hint, cli_args.env_note(args, str(e))) if h)
        if hint:
            print(f"hint: {_safe(hint)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hashtrail: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


