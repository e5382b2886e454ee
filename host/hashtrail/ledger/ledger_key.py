"""The ledger's signing key, kept in its own file, never in the ledger (docs/LEDGER.md
"The ledger key").

Why a separate file: whoever can sign a ledger checkpoint can vouch for any tree, so a
copy of the ledger file (a backup, a replica handed to an auditor) must not carry the
power to sign. The ledger keeps only the public verifier key; the signer lives in a file
of mode 0600 that only signing commands (`reconcile`, `ledger checkpoint`) open.

Where: `--key-file PATH`, else the file named by `HASHTRAIL_LEDGER_KEY`, else
`<ledger path>.key` (what `ledger init` writes by default). The file holds one line, the
Go note signer form `PRIVATE+KEY+<origin>+<key id>+<base64>` (hashtrail.note).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hashtrail.errors import ConfigError, FormatError
from hashtrail.formats import note

ENV = "HASHTRAIL_LEDGER_KEY"
MODE = 0o600


class LedgerKeyError(ConfigError):
    """No usable ledger key: missing, unreadable, or not this ledger's. Exit 2; the
    message is the whole story (one line), so no hint."""

    hint = ""


def key_path(ledger: str | os.PathLike[str], explicit: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None) -> Path:
    """Where the ledger key is: --key-file, else $HASHTRAIL_LEDGER_KEY, else <ledger>.key."""
    if explicit is not None:
        return Path(explicit)
    named = (os.environ if env is None else env).get(ENV)
    if named:
        return Path(named)
    return Path(os.fspath(ledger) + ".key")


def write_key(path: Path, signer: note.Signer, flag: str = "--key-file",
              what: str = "ledger key file") -> None:
    """Create `path` (mode 0600) holding the signer; never overwrites an existing file."""
    data = (signer.to_string() + "\n").encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    except FileExistsError:
        raise LedgerKeyError(f"refusing to overwrite the existing key file {path}: move it "
                             f"away or name another with {flag}") from None
    except OSError as e:
        raise LedgerKeyError(f"cannot create {what} {path}: {e.strerror}") from None
    try:
        os.fchmod(fd, MODE)          # whatever the umask said
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def read_key(path: Path) -> note.Signer | None:
    """The signer in `path`; None when there is no such file."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise LedgerKeyError(f"cannot read ledger key file {path}: "
                             f"{getattr(e, 'strerror', None) or e}") from None
    try:
        return note.Signer.from_string(text)
    except FormatError as e:
        raise LedgerKeyError(f"{path} is not a ledger key file: {e}") from None


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_witness_key(name: str, path: Path) -> note.Signer:
    """A new witness signing key named `name` (a c2sp.org/signed-note key name, e.g.
    witness.example.com/w1), written to `path` (mode 0600, never overwritten); its
    cosigner verifier key (`Verifier.cosigner_string`) is what proof checkers trust."""
    try:
        signer = note.Signer.generate(name)      # the name rules of a note key
    except FormatError as e:
        raise ConfigError(f"--name {name!r} is not a key name: {e}",
                          hint="a witness names itself like a log origin, e.g. "
                               "witness.example.com/w1 (c2sp.org/signed-note)") from None
    write_key(path, signer, flag="--out", what="witness key file")
    return signer
