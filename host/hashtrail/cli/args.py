"""Arguments several commands share: argparse types (a device id, a count, seconds) and
the ledger's keys (--key-file to sign; --verifier-key / --verifier-key-file for the key
the user trusts), so every command reads them the same way."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from hashtrail.errors import HashtrailError
from hashtrail.formats import note
from hashtrail.formats.keys import DeviceId, load_pub, parse_device_id
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_key import ENV
from hashtrail.ledger.trust import ledger_key


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


# -- the ledger's keys, as every ledger-reading and ledger-signing command takes them --

def key_file_arg(c: argparse.ArgumentParser, what: str) -> None:
    """--key-file for commands that sign with the ledger key (never the reading ones)."""
    c.add_argument("--key-file", metavar="PATH",
                   help=f"{what}; default ${ENV}, else <ledger>.key")


def migrated_notice(ledger: str) -> Callable[[Path], None]:
    """Tells the user (stderr) that opening `ledger` to sign moved the ledger key still
    kept in the ledger file out to its own key file."""
    def notice(key_file: Path) -> None:
        print(f"hashtrail: moved the ledger key out of {ledger} into {key_file} "
              "(mode 0600): keep it private; signing commands now need it", file=sys.stderr)
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
