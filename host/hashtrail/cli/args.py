"""Arguments several commands share: argparse types (a device id, a count, seconds), the
ledger and collector store paths (`--ledger`, `--store`, defaulting to $HASHTRAIL_LEDGER
and $HASHTRAIL_STORE) and the ledger's keys (--key-file to sign, default
$HASHTRAIL_LEDGER_KEY; --verifier-key / --verifier-key-file for the key the user
trusts), so every command reads them the same way.

Why a variable is only a default: the value goes exactly where the flag's would (the
same string, hence the same checks: hashtrail.userfile, hashtrail.sqlite_file), and a
flag given on the command line wins. The ledger variable stays a string, not a path, so
a later backend's URL passes through it unchanged.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from hashtrail.errors import HashtrailError
from hashtrail.formats import note
from hashtrail.formats.keys import DeviceId, load_pub, parse_device_id
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_key import ENV as _KEY_ENV
from hashtrail.ledger.trust import ledger_key

log = logging.getLogger(__name__)

KEY_ENV = _KEY_ENV
LEDGER_ENV = "HASHTRAIL_LEDGER"
STORE_ENV = "HASHTRAIL_STORE"
_ENVS = {"ledger": LEDGER_ENV, "store": STORE_ENV}   # argparse dest -> its variable


def device_arg(text: str) -> DeviceId:
    """argparse type for a device id: the one canonical spelling (keys.parse_device_id),
    anything else a usage error (exit 2) that shows the canonical form when it can."""
    try:
        return parse_device_id(text)
    except HashtrailError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type for a whole number >= `minimum` (a count, a seq, a baud rate):
    anything else is a usage error (exit 2) quoting the value."""
    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of at least {minimum}, got {text!r}")
        return v
    parse.__name__ = f"at_least_{minimum}"
    return parse


def release_key(text: str) -> bytes:
    """argparse type for a release public key: 130 hex characters (as `hashtrail release
    keygen` prints it) or a file holding them."""
    try:
        return load_pub(text)
    except HashtrailError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def seconds(text: str) -> float:
    """argparse type for a positive, finite number of seconds."""
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return v


# -- the ledger and the collector store: a flag, else its environment variable ----------

def _env(dest: str) -> str | None:
    return os.environ.get(_ENVS[dest]) or None      # set but empty: not set


def _path_arg(c: argparse.ArgumentParser, dest: str, help: str, required: bool) -> None:
    var = _ENVS[dest]
    default = _env(dest)
    need = (f"; required unless ${var} is set" if required else "")
    c.add_argument(f"--{dest}", metavar=dest.upper(), default=default,
                   required=required and default is None,
                   help=f"{help} (default: ${var}{need})")


LEDGER_HELP = "ledger: a SQLite file, or a postgresql:// URL"


def env_default(dest: str) -> str | None:
    """The value of --DEST's HASHTRAIL_* variable (None when unset or empty), for a
    command that declares --DEST itself (e.g. in a mutually exclusive group)."""
    return _env(dest)


def ledger_arg(c: argparse.ArgumentParser, help: str = LEDGER_HELP,
               required: bool = True) -> None:
    """--ledger, defaulting to $HASHTRAIL_LEDGER."""
    _path_arg(c, "ledger", help, required)


def store_arg(c: argparse.ArgumentParser, help: str = "collector store file (SQLite)",
              required: bool = True) -> None:
    """--store, defaulting to $HASHTRAIL_STORE."""
    _path_arg(c, "store", help, required)


def env_note(args: argparse.Namespace, message: str) -> str:
    """For an error that names a path taken from a variable: say where it came from (a
    flag the user never typed would otherwise be a riddle)."""
    notes = []
    for dest, var in _ENVS.items():
        value = getattr(args, dest, None)
        if value is not None and value == _env(dest) and str(value) in message:
            notes.append(f"{value} came from ${var}")
    key = os.environ.get(KEY_ENV)
    if key and getattr(args, "key_file", "") is None and key in message:
        notes.append(f"{key} came from ${KEY_ENV}")
    return "; ".join(notes)


# -- the ledger's keys, as every ledger-reading and ledger-signing command takes them --

def key_file_arg(c: argparse.ArgumentParser, what: str) -> None:
    """--key-file for commands that sign with the ledger key (never the reading ones)."""
    c.add_argument("--key-file", metavar="PATH",
                   help=f"{what}; default ${KEY_ENV}, else <ledger>.key")


def migrated_notice(ledger: str) -> Callable[[Path], None]:
    """Tells the user (a warning: it changes what signing needs) that opening `ledger`
    to sign moved the ledger key still kept in the ledger file out to its own key file."""
    def notice(key_file: Path) -> None:
        log.warning(f"hashtrail: moved the ledger key out of {ledger} into {key_file} "
                    "(mode 0600): keep it private; signing commands now need it")
    return notice


def open_signing(args: argparse.Namespace) -> Ledger:
    """The ledger with its key loaded (exit 2 without it); says so when it moved a key
    still kept in the ledger file out to the key file."""
    led = Ledger.open_signing(args.ledger, args.key_file)
    if led.migrated is not None:
        migrated_notice(args.ledger)(led.migrated)
    return led


def trusted_key_args(c: argparse.ArgumentParser, need: str = "; required") -> None:
    """--verifier-key / --verifier-key-file: the ledger key the user trusts."""
    g = c.add_mutually_exclusive_group()
    g.add_argument("--verifier-key", metavar="VKEY",
                   help="the ledger's verifier key (<name>+<key id>+<base64>), as "
                        f"`ledger init` prints it{need}")
    g.add_argument("--verifier-key-file", metavar="FILE",
                   help="a file holding the ledger's verifier key")


def given_key(args: argparse.Namespace) -> bool:
    return args.verifier_key is not None or args.verifier_key_file is not None


def trusted_key(args: argparse.Namespace) -> note.Verifier:
    """The ledger key the user trusts, from --verifier-key(-file); fails closed."""
    return ledger_key(args.verifier_key, args.verifier_key_file)
