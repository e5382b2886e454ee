"""The keys a user trusts, read from what the user gives, and the collectors a ledger
trusts to enroll devices.

Why one place: every offline check (verify --verifier-key, verify-proof, check-evidence,
cosign) rests on a key the user brings, never on a key carried by its input; anyone can
sign a checkpoint for a made-up root with a key of their own. So the ledger verifier key
is read the same way everywhere, a missing one fails closed, and a bad one is bad input
(InputError, exit 2) that names where it came from. Collector keys (`ledger trust`) and
witness cosigner keys (`verify-proof --witness-key`) are read here too, for the same
reason.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from hashtrail import userfile
from hashtrail.errors import ConfigError, FormatError, InputError
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger

LEDGER_KEY_HINT = "get the ledger's verifier key from its operator: hashtrail ledger init " \
                  "prints it"
_KEY_FILE_MAX = 64 * userfile.KIB


def ledger_key(text: str | None = None,
               file: str | os.PathLike[str] | None = None) -> note.Verifier:
    """The ledger verifier key the user trusts: `text` (<name>+<key id>+<base64>, as
    `ledger init` prints it) or the contents of `file`. Neither is a ConfigError (fail
    closed: a key carried by the input proves nothing); a bad key is an InputError."""
    if file is not None:
        text = userfile.read_text(file, "a ledger verifier key file", max_bytes=_KEY_FILE_MAX)
    if text is None:
        raise ConfigError("no trusted ledger key: give --verifier-key or "
                          "--verifier-key-file (a key carried by the input proves nothing)",
                          hint=LEDGER_KEY_HINT)
    try:
        return note.Verifier.from_string(text)
    except FormatError as e:
        where = os.fspath(file) if file is not None else f"--verifier-key {text!r}"
        raise InputError(f"{where}: bad ledger verifier key: {e}",
                         hint=LEDGER_KEY_HINT) from None


def witness_keys(texts: list[str]) -> list[note.Verifier]:
    """Witness cosigner keys the user trusts (as `ledger cosign --json` prints them)."""
    out = []
    for t in texts:
        try:
            out.append(note.Verifier.from_string(t))
        except FormatError as e:
            raise ConfigError(f"bad --witness-key {t!r}: {e}",
                              hint="a witness's cosigner key, as `hashtrail ledger cosign "
                                   "--json` prints it") from None
    return out


def collector_key(arg: str) -> note.Verifier:
    """A collector's verifier key: the key string itself, or (no '+' in it, so not a key
    string) a file holding one."""
    text = arg
    if "+" not in arg:
        text = userfile.read_text(arg, "a collector verifier key or a file holding one "
                                  "(`hashtrail export --show-key` prints it)",
                                  max_bytes=_KEY_FILE_MAX)
    try:
        return note.Verifier.from_string(text)
    except FormatError as e:
        where = arg if text is not arg else repr(arg)
        raise InputError(f"{where}: bad collector key: {e}",
                         hint="on the collector, `hashtrail export --store FILE --show-key` "
                              "prints its key") from None


class Trusted(NamedTuple):
    """A collector whose signed bundles may enroll devices."""

    key: str            # its verifier key string
    name: str
    added_at: int       # Unix time it was first trusted
    added: bool = False  # whether this call added it (False: trusted already)


def trust_collector(ledger: str | os.PathLike[str], key: note.Verifier,
                    name: str | None = None) -> Trusted:
    """Let bundles signed by `key` enroll devices in `ledger`, under `name` (default: the
    key's name); a key trusted already keeps the name it was first given."""
    with Ledger.open(ledger) as led:
        added = led.trust_collector(key, name or key.name)
        rows = {k: (n, t) for k, n, t in led.trusted_collectors()}
    n, t = rows[key.to_string()]
    return Trusted(key.to_string(), n, t, added)


def trusted_collectors(ledger: str | os.PathLike[str]) -> list[Trusted]:
    """Every collector `ledger` trusts, oldest first."""
    with Ledger.open(ledger) as led:
        return [Trusted(k, n, t) for k, n, t in led.trusted_collectors()]
