"""The collector's local store: one SQLite file (WAL) holding what was collected, as received.

Why a store between the serial line and the ledger: collection may be killed at any
moment, and bytes that came over a wire are suspect until their chain and signatures
check. So every record is written first as *quarantined*, exactly as received, and is
marked *accepted* only by `accept()` after the caller verified it (hashtrail.chainverify).
Nothing unverified is ever marked accepted: `accept()` itself refuses a range that has
a hole, two different entries for one seq, or whose last entry does not hash to the
verified head. Every write is idempotent (a record already present is not stored
twice), so re-running a killed collect simply finishes the job.

API for the collect engineer (all methods are plain, synchronous, one transaction each):

    with Store.open(path) as st:                       # creates the file on first use
                                                       # (create=False: must exist)
        st.collector_id                                # random 16-hex id of this collector
        st.signer                                      # its Ed25519 identity (signs bundles)
        st.enroll(device_id, pub, label=, board=, fw=) # idempotent; same id + other key -> error
        st.enrollment(device_id) -> Enrollment | None
        st.enrollments() -> list[Enrollment]
        st.anchor(device_id) -> Anchor | None          # last accepted (seq, head), None = genesis
        st.policy(device_id) -> int | None             # signing policy of its accepted entry 0
        st.quarantine(device_id, [RawEntry(seq, body, sig)]) -> int   # new records stored
        st.quarantined(device_id, from_seq=0) -> list[RawEntry]
        st.accept(device_id, upto_seq, head) -> int   # quarantine -> accepted, anchor moves
        st.add_checkpoint(device_id, cose, nonce, seq=, head=) -> bool  # as received
        st.accept_checkpoint(device_id, cose)          # after its signature and head checked
        st.last_checkpoint(device_id) -> StoredCheckpoint | None       # last accepted one
        st.checkpoints(device_id) -> list[StoredCheckpoint]
        st.accepted_records(device_id, from_seq=0) -> list[RawEntry]
        st.all_records(device_id) -> list[RawEntry]   # accepted and quarantined, for export

Each store has an Ed25519 identity key (a C2SP note signer named
`collector-<collector id>`), made with the store and kept in it: `hashtrail export` signs
bundles with it, and a ledger enrolls devices only from bundles signed by a collector it
trusts (`hashtrail ledger trust`), so the key is what the ledger operator approves.

`device_id` is the 32-hex-character id of docs/FORMATS.md; `pub` the 65-byte SEC1 key.
A `RawEntry.body` is the entry's CBOR bytes exactly as read from flash and `sig` its
optional 64-byte per-entry signature. Checkpoint bytes are the COSE_Sign1 as received;
`seq` and `head` are what the caller parsed from it (kept for ordering and lookups only:
an exported bundle carries the COSE bytes and the ledger parses them again).

A device's signing policy (docs/FORMATS.md: entry 0 says whether it signs every entry)
is stored when its entry 0 is accepted, so an incremental collection, whose records no
longer start at entry 0, still holds the device to it (chainverify `policy=`). A store
made before the policy was kept derives it from its accepted entry 0 when opened.

The tables are the storage's (collector/storage.py, the interface; storage_sqlite.py,
the SQLite file and its migrations): this module holds the rules, no SQL.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from hashtrail.chain.fwrules import FirmwareRules
from hashtrail.collector.storage import (
    Anchor,
    Enrollment,
    RawEntry,
    StoredCheckpoint,
    StoreStorage,
    entry0_policy,
)
from hashtrail.collector.storage_sqlite import SqliteStoreStorage
from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import keys, note
from hashtrail.formats.entry import KIND_UPDATE, Entry, parse_entry
from hashtrail.formats.keys import check_pub, parse_device_id

__all__ = ["Anchor", "Enrollment", "RawEntry", "Store", "StoreError", "StoredCheckpoint",
           "check_device_id", "device_id_of"]


ACCEPT_BATCH = 1000  # seqs read and marked at a time by accept()


class StoreError(HashtrailError):
    """The store file is unusable, or a caller asked for something it must refuse."""

    hint = "check the --store path; a store is made by `hashtrail enroll`"


def check_device_id(device_id: str) -> str:
    """Device ids are 32 lower-case hex characters; anything else is refused early
    (keys.parse_device_id: one rule, one message, for every boundary)."""
    return parse_device_id(device_id)


def device_id_of(pub: bytes) -> str:
    """docs/FORMATS.md: the first 16 bytes of SHA-256(pub), as lowercase hex."""
    return keys.device_id(pub)


class Store:
    """One collector store. Use `Store.open(path)`; close it (or use `with`)."""

    def __init__(self, storage: StoreStorage, path: Path) -> None:
        self.storage = storage
        self.path = path

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Store:
        """The store at ``path``; with ``create``, a new one when nothing is there. A path
        that is not a store (empty, not SQLite, a ledger, a directory...) is InputError,
        and nothing is created or changed. An older store is brought up to date
        (storage_sqlite.MIGRATIONS), in one transaction."""
        p = Path(path)
        try:
            return cls(SqliteStoreStorage.open(p, create=create), p)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open collector store {p}: {e}") from e

    @classmethod
    def check(cls, path: str | os.PathLike[str], *, create: bool = True) -> None:
        """Refuse now what `open` would refuse, creating and changing nothing: for a
        command that talks to a device first and stores what it learnt after."""
        p = Path(path)
        if create and not (p.exists() or p.is_symlink()):
            SqliteStoreStorage.check_new(p)
        else:
            cls.open(p, create=False).close()

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[StoreStorage]:
        """One unit of work: writers queue on the store's lock instead of failing mid-way."""
        with self.storage.transaction():
            yield self.storage

    @property
    def collector_id(self) -> str:
        return str(self.storage.meta("collector_id"))

    @property
    def signer(self) -> note.Signer:
        """This collector's Ed25519 identity key; its verifier key is what a ledger
        operator trusts (`hashtrail export --show-key` prints it)."""
        return note.Signer.from_string(str(self.storage.meta("signer")))

    # -- enrollments ---------------------------------------------------------------------

    def enroll(self, device_id: str, pub: bytes, *, label: str = "", board: str = "",
               fw: str = "", enrolled_at: int | None = None) -> Enrollment:
        check_device_id(device_id)
        check_pub(pub)   # a P-256 point, on the curve, coordinates < p: refused at the door
        if device_id_of(pub) != device_id:
            raise VerificationError(f"device id {device_id} is not derived from this key")
        when = int(time.time()) if enrolled_at is None else enrolled_at
        new = Enrollment(device_id, pub, label, board, fw, when)
        with self._tx() as db:
            old = db.enrollment(device_id)
            if old is not None:
                if old.pub != pub:
                    raise VerificationError(f"device {device_id} is enrolled with another key")
                return old
            db.add_enrollment(new)
        return new

    def enrollment(self, device_id: str) -> Enrollment | None:
        return self.storage.enrollment(device_id)

    def enrollments(self) -> list[Enrollment]:
        return self.storage.enrollments()

    # -- entries -------------------------------------------------------------------------

    def anchor(self, device_id: str) -> Anchor | None:
        return self.storage.anchor(device_id)

    def policy(self, device_id: str) -> int | None:
        """The signing policy the device's accepted entry 0 declares (None: entry 0 not
        accepted yet)."""
        return self.storage.policy(device_id)

    def firmware(self, device_id: str) -> tuple[FirmwareRules, Entry | None]:
        """What the next collection's entries are held to by the firmware rules
        (chain.fwrules): the rules with every accepted update installed, and the
        accepted entry at the anchor, which the first new entry follows. Read from the
        accepted update entries only (found by their bytes), not the whole history."""
        rules = FirmwareRules()
        for body in self.storage.accepted_update_bodies(device_id):
            e = parse_entry(body)
            if e.kind == KIND_UPDATE:
                rules.install(e)
        anc = self.storage.anchor(device_id)
        last = None if anc is None else self.storage.accepted_body(device_id, anc.seq)
        return rules, None if last is None else parse_entry(last)

    def quarantine(self, device_id: str, records: Iterable[RawEntry]) -> int:
        """Store records exactly as received, unverified. Returns how many were new."""
        self._require_enrolled(device_id)
        now = int(time.time())
        rows = []
        for r in records:
            if r.seq < 0 or (r.sig is not None and len(r.sig) != 64):
                raise FormatError(f"bad raw record for seq {r.seq}")
            rows.append((device_id, r.seq, r.entry_hash, bytes(r.body),
                         None if r.sig is None else bytes(r.sig), now))
        with self._tx() as db:
            return db.add_records(rows)

    def quarantined(self, device_id: str, from_seq: int = 0) -> list[RawEntry]:
        return self.storage.records(device_id, from_seq, False)

    def accepted_records(self, device_id: str, from_seq: int = 0) -> list[RawEntry]:
        return self.storage.records(device_id, from_seq, True)

    def all_records(self, device_id: str) -> list[RawEntry]:
        return self.storage.records(device_id, 0, None)

    def accept(self, device_id: str, upto_seq: int, head: bytes,
               hashes: Collection[bytes] | None = None, *,
               walked: Callable[[int, bytes], bool] | None = None) -> int:
        """Mark the quarantined entries after the anchor up to `upto_seq` as accepted.

        Call only after verifying them (links from the anchor, signatures, and `head`
        signed by the device). Refused unless every seq in the range is present exactly
        once and the entry at `upto_seq` hashes to `head`. Re-accepting an already
        accepted point is a no-op (returns 0). `hashes` (or `walked(seq, hash)`): the
        entries that were verified; other quarantined candidates for the same seqs (a
        record forged on the way and refused by an earlier run, kept as evidence) are
        left out instead of blocking every later acceptance. One transaction, read and
        marked ACCEPT_BATCH seqs at a time: memory does not grow with the range.
        """
        with self._tx() as db:
            anc = db.anchor(device_id)
            start = 0 if anc is None else anc.seq + 1
            if upto_seq < start:
                if not db.is_accepted(device_id, upto_seq, head):
                    raise VerificationError(
                        f"device {device_id}: seq {upto_seq} is behind the anchor and its "
                        "head differs from the accepted entry")
                return 0
            last = b""
            for lo in range(start, upto_seq + 1, ACCEPT_BATCH):
                hi = min(upto_seq, lo + ACCEPT_BATCH - 1)
                rows = db.quarantined_hashes(device_id, lo, hi)
                if hashes is not None:
                    rows = [r for r in rows if r[1] in hashes]
                if walked is not None:
                    rows = [r for r in rows if walked(*r)]
                if [s for s, _ in rows] != list(range(lo, hi + 1)):
                    raise VerificationError(
                        f"device {device_id}: cannot accept seq {start}..{upto_seq}: "
                        "a seq is missing or held twice (fork?)")
                db.mark_accepted(device_id, rows)
                last = rows[-1][1]
            if last != head:
                raise VerificationError(
                    f"device {device_id}: entry {upto_seq} does not hash to the verified head")
            db.set_anchor(device_id, upto_seq, head)
            if start == 0:          # keep the policy its entry 0 declares
                body = db.accepted_body(device_id, 0)
                policy = None if body is None else entry0_policy(body)
                if policy is not None:
                    db.set_policy(device_id, policy)
            return upto_seq + 1 - start

    # -- checkpoints ---------------------------------------------------------------------

    def add_checkpoint(self, device_id: str, cose: bytes, nonce: bytes | None, *, seq: int,
                       head: bytes) -> bool:
        """Store a device checkpoint as received (quarantined). True if it was new."""
        self._require_enrolled(device_id)
        if len(head) != 32 or seq < 0:
            raise FormatError("a checkpoint head is 32 bytes and its seq is >= 0")
        with self._tx() as db:
            return db.add_checkpoint(device_id, hashlib.sha256(cose).digest(), bytes(cose),
                                     None if nonce is None else bytes(nonce), seq, head,
                                     int(time.time()))

    def accept_checkpoint(self, device_id: str, cose: bytes, *,
                          cose_hash: bytes | None = None) -> None:
        """Mark a stored checkpoint verified (its signature and nonce checked by the
        caller); named by its bytes, or by their SHA-256 (`cose_hash`, cose ignored)."""
        h = hashlib.sha256(cose).digest() if cose_hash is None else cose_hash
        with self._tx() as db:
            if not db.mark_checkpoint_accepted(device_id, h):
                raise StoreError(f"device {device_id}: no such checkpoint in the store")

    def checkpoints(self, device_id: str) -> list[StoredCheckpoint]:
        return self.storage.checkpoints(device_id)

    def last_checkpoint(self, device_id: str) -> StoredCheckpoint | None:
        acc = [c for c in self.checkpoints(device_id) if c.accepted]
        return acc[-1] if acc else None

    def _require_enrolled(self, device_id: str) -> None:
        if self.enrollment(check_device_id(device_id)) is None:
            raise StoreError(f"device {device_id} is not enrolled in this store",
                             hint="enroll it first: hashtrail enroll --port PORT")
