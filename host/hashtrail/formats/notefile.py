"""Signed-note files a user names: a checkpoint (`ledger prove --checkpoint`, `ledger
cosign`, a witness's state) and a note signer key (a witness's key file).

Why here: the file is checked as a file first (hashtrail.userfile: missing, directory,
empty, binary, too big) and then as the note it must be, so a wrong file is one line of
bad input (InputError, exit 2) naming it, before anything is created or changed.
Signatures are not checked here: the caller checks them against the keys it trusts.
"""

from __future__ import annotations

import os

from hashtrail import userfile
from hashtrail.errors import FormatError, HashtrailError, InputError
from hashtrail.formats import note


def read_checkpoint(path: str | os.PathLike[str], what: str) -> bytes:
    """A checkpoint file's bytes, refused (naming it and `what` was expected) unless it
    is shaped like a signed checkpoint note."""
    data = userfile.read_bytes(path, what)
    try:
        note.parse_checkpoint(note.parse_note(data).text)
    except HashtrailError as e:
        raise InputError(f"{os.fspath(path)}: not a checkpoint note ({e}); expected {what}") \
            from None
    return data


def read_signer(path: str | os.PathLike[str], what: str) -> note.Signer:
    """A note signer key file (PRIVATE+KEY+...)."""
    try:
        return note.Signer.from_string(userfile.read_text(path, what,
                                                          max_bytes=64 * userfile.KIB))
    except FormatError as e:
        raise InputError(f"{os.fspath(path)}: not a signer key ({e}); expected {what}") \
            from None
