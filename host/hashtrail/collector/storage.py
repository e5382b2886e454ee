"""What a collector store keeps, as one interface: store.Store (the rules: quarantine
first, accept only a verified range) reads and writes its tables only through a
`StoreStorage`, so no SQL lives outside the backend (storage_sqlite.SqliteStoreStorage).

What a backend must give, as the ledger's (ledger/storage.py): `transaction()` is a unit
of work, all of its writes or none, under the store's write lock from its start; every
write method is called inside one; reads may be called anywhere. `add_entries` takes a
whole collection's records at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol

from hashtrail.errors import FormatError
from hashtrail.formats.entry import parse_entry, signing_policy


class Enrollment(NamedTuple):
    device_id: str
    pub: bytes
    label: str
    board: str
    fw: str
    enrolled_at: int
    # The collector's signature over this enrollment (formats.enrollment), as a bundle's
    # enrollment line carries it; None in the store, which signs at export with its key.
    sig: bytes | None = None


class Anchor(NamedTuple):
    """The last verified point of a device's chain: everything up to `seq` is accepted."""

    seq: int
    head: bytes


class RawEntry(NamedTuple):
    seq: int
    body: bytes
    sig: bytes | None = None

    @property
    def entry_hash(self) -> bytes:
        return hashlib.sha256(self.body).digest()


class StoredCheckpoint(NamedTuple):
    cose: bytes
    nonce: bytes | None
    seq: int
    head: bytes
    accepted: bool
    received_at: int


def entry0_policy(body: bytes) -> int | None:
    """The signing policy an accepted entry 0 declares; None for bytes that are no
    entry (never verified, so never accepted by collect: nothing to record)."""
    try:
        return signing_policy(parse_entry(body))
    except FormatError:
        return None


# (device_id, seq, entry_hash, body, sig, received_at): one record as received
RecordRow = tuple[str, int, bytes, bytes, bytes | None, int]


class StoreStorage(Protocol):
    """The collector store's tables, by concept (see the module doc for the contract)."""

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def meta(self, key: str) -> str | None:
        """`collector_id`, `signer` (the collector's identity key), `schema`."""
        ...

    # -- enrollments ---------------------------------------------------------------------

    def enrollment(self, device_id: str) -> Enrollment | None: ...

    def enrollments(self) -> list[Enrollment]: ...

    def add_enrollment(self, e: Enrollment) -> None: ...

    # -- per-device state: the verified anchor and entry 0's signing policy --------------

    def anchor(self, device_id: str) -> Anchor | None: ...

    def set_anchor(self, device_id: str, seq: int, head: bytes) -> None: ...

    def policy(self, device_id: str) -> int | None: ...

    def set_policy(self, device_id: str, policy: int) -> None: ...

    # -- records -------------------------------------------------------------------------

    def add_records(self, rows: Sequence[RecordRow]) -> int:
        """Store records quarantined; one already held (device, seq, hash) is kept as
        is. Returns how many were new."""
        ...

    def records(self, device_id: str, from_seq: int, accepted: bool | None
                ) -> list[RawEntry]:
        """A device's records from `from_seq` (only accepted ones, only quarantined
        ones, or all: None), by seq then hash."""
        ...

    def accepted_body(self, device_id: str, seq: int) -> bytes | None: ...

    def accepted_update_bodies(self, device_id: str) -> list[bytes]:
        """The accepted entries that may be update or update-reverted entries, by seq:
        those whose bytes hold formats.entry.UPDATE_MARK or REVERTED_MARK (the caller
        parses them and keeps kinds 7 and 8)."""
        ...

    def is_accepted(self, device_id: str, seq: int, entry_hash: bytes) -> bool: ...

    def quarantined_hashes(self, device_id: str, lo: int, hi: int
                           ) -> list[tuple[int, bytes]]:
        """(seq, hash) of every quarantined record lo..hi (inclusive), by seq."""
        ...

    def mark_accepted(self, device_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Accept exactly these (seq, hash) records: a forged candidate for the same
        seq stays quarantined."""
        ...

    # -- device checkpoints --------------------------------------------------------------

    def add_checkpoint(self, device_id: str, cose_hash: bytes, cose: bytes,
                       nonce: bytes | None, seq: int, head: bytes, received_at: int) -> bool:
        """Store a checkpoint as received; False if it was held already."""
        ...

    def mark_checkpoint_accepted(self, device_id: str, cose_hash: bytes) -> bool:
        """False if no such checkpoint is stored."""
        ...

    def checkpoints(self, device_id: str) -> list[StoredCheckpoint]:
        """By seq, then time received."""
        ...
