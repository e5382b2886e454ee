"""Device statements as the ledger checks them: a thin adapter over the format modules.

Why it exists: reconcile, `verify --ledger` and `check-evidence` want one object per
enrolled device that answers "is this entry/checkpoint/signature this device's?". The
parsing and the cryptography are not here: entries are read by `entry.parse_entry`,
checkpoints by `checkpoint.verify_checkpoint`, signatures by `keys.DeviceKey.signed`,
the same code the collector's chain verifier runs, so the ledger and the collector
cannot disagree about the same bytes. Names kept for the ledger modules:
`EntryFields` (= `Entry`), `parse_entry`, `KIND_TIME_SET`, `KIND_KEY_CREATED`,
`genesis_prev`, `DeviceKey` (with `checkpoint` and `check_first_entry`).
"""

from __future__ import annotations

from hashtrail.errors import VerificationError
from hashtrail.formats import keys
from hashtrail.formats.checkpoint import Checkpoint, verify_checkpoint
from hashtrail.formats.entry import (
    KIND_KEY_CREATED,
    KIND_TIME_SET,
    Entry,
    is_key_created_by,
    parse_entry,
)
from hashtrail.formats.keys import genesis_prev

__all__ = ["KIND_KEY_CREATED", "KIND_TIME_SET", "DeviceKey", "EntryFields", "genesis_prev",
           "parse_entry"]

EntryFields = Entry


class DeviceKey(keys.DeviceKey):
    """An enrolled device's key with the two ledger checks that raise instead of
    answering: its checkpoints, and its first entry."""

    __slots__ = ()

    def checkpoint(self, cose: bytes) -> Checkpoint:
        """Parse a COSE_Sign1 checkpoint and check its ES256 signature by this key."""
        return verify_checkpoint(cose, self)

    def check_first_entry(self, e: Entry) -> None:
        """seq 0 is the key-created entry carrying this very key (docs/FORMATS.md)."""
        if not is_key_created_by(e, self.pub):
            raise VerificationError("entry 0 is not the key-created entry of this key")
