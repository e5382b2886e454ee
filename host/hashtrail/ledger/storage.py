"""What the ledger keeps, as one interface: every read and write of a ledger's tables
goes through a `LedgerStorage`, so the rest of the ledger (Ledger, reconcile, verify,
proof) speaks of leaves, nodes, entries, devices and checkpoints, never of SQL, and a
second backend (PostgreSQL) is one more class with these methods.

The embedded backend is storage_sqlite.SqliteLedgerStorage (docs/LEDGER.md has its
tables). What any backend must give:

- `transaction()`: a unit of work. Writes inside it commit together or not at all
  (an exception rolls all back), and a writer holds the ledger's write lock from the
  start of it (SQLite: BEGIN IMMEDIATE; writers queue on a busy timeout instead of
  failing half-way through a read-then-write). Every write method is called inside one;
  reads may be called anywhere and see the transaction's own writes.
- bulk writes (`add_nodes`, `add_entries`, `add_pending`, `drop_pending`) take all
  their rows at once: reconcile writes a row per entry and about one node per leaf
  (`nodes` holds the levels above the leaves: Ledger reads a leaf's hash from its
  entries row), and a backend makes that a few statements (multi-row INSERT, COPY),
  not one per row.
- `scan_*`: the rows exactly as stored, in a fixed column order and with no type
  checked or converted: ledger_verify trusts no row and reports a column of the wrong
  type rather than failing on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

from hashtrail.errors import FormatError
from hashtrail.formats.entry import parse_entry

MAX_SEQ = (1 << 63) - 1         # the highest seq a device can write (a bundle's limit)


class StoredEntry(NamedTuple):
    """One accepted entry as the ledger holds it (read-only view of `entries`)."""

    leaf_index: int
    entry_hash: bytes
    body: bytes
    sig: bytes | None       # the device's per-entry signature (r || s), if it sent one


class Device(NamedTuple):
    device_id: str
    pub: bytes
    label: str
    board: str
    fw: str
    enrolled_at: int
    tip_seq: int
    tip_head: bytes
    tip_t: int | None
    forked: bool
    revoked_at: int | None
    revoked_reason: str | None
    # The enrolling collector's signature over (id, pub, label, board, fw, enrolled_at)
    # (formats.enrollment) and that collector's verifier key; both None for an
    # enrollment nobody signed (one from a bundle or a ledger before these signatures).
    enroll_key: str | None = None
    enroll_sig: bytes | None = None


class HeldEntry(NamedTuple):
    """An entry waiting in `pending`: verified bytes, not (yet) on the accepted chain,
    with the fields reconcile's chain walk reads (`prev`, `kind`, `t`), kept when the
    entry was first held so that a held entry is decoded once, not at every reconcile
    that touches its device. `kind` None: not recorded (a row no migration could read;
    reconcile decodes the body instead)."""

    seq: int
    entry_hash: bytes
    body: bytes
    sig: bytes | None
    prev: bytes | None = None
    kind: int | None = None
    t: int | None = None


class DeviceCheckpoint(NamedTuple):
    """A verified device checkpoint as stored: what it signs (seq, head) and its bytes."""

    seq: int
    head: bytes
    cose: bytes


# (device_id, seq, leaf_index, entry_hash, body, sig): one accepted entry
EntryRow = tuple[str, int, int, bytes, bytes, bytes | None]
# (device_id, seq, entry_hash, body, sig, prev, kind, t): one held entry, with the fields
# of its body the chain walk reads (HeldEntry)
PendingRow = tuple[str, int, bytes, bytes, bytes | None, bytes, int, int | None]
# (level, index, hash): one complete subtree of the Merkle tree
NodeRow = tuple[int, int, bytes]


def walk_fields(body: bytes) -> tuple[bytes, int, int | None] | None:
    """(prev, kind, t) of held entry bytes, for the migrations that add those columns to
    `pending` (both backends); None for bytes that do not parse (left unrecorded)."""
    try:
        e = parse_entry(bytes(body))
    except FormatError:
        return None
    return e.prev, e.kind, e.t


class LedgerStorage(Protocol):
    """The ledger's tables, by concept (see the module doc for the contract)."""

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """All-or-nothing writes under the ledger's write lock (see the module doc)."""
        ...

    # -- meta: origin, verifier key, tree size, schema ----------------------------------

    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def drop_legacy_signer(self, verifier: str) -> None:
        """Replace the signing key an old ledger kept in meta (`signer`) by its verifier
        key, leaving no copy of the secret in the file. Its own transaction."""
        ...

    # -- Merkle tree ---------------------------------------------------------------------

    def node(self, level: int, index: int) -> bytes | None: ...

    def nodes(self, level: int, lo: int, hi: int) -> list[bytes]:
        """The hashes of level `level` at indexes lo..hi (inclusive), in index order, in
        one query: a tile is 256 of them (publishing and serving tiles read whole
        ranges). Indexes with no stored node are left out (the list is then short)."""
        ...

    def add_nodes(self, rows: Sequence[NodeRow]) -> None: ...

    # -- accepted entries (the leaves) ---------------------------------------------------

    def add_entries(self, rows: Sequence[EntryRow]) -> None: ...

    def entry(self, device_id: str, seq: int) -> StoredEntry | None: ...

    def leaf_entry(self, index: int) -> tuple[str, int, bytes] | None:
        """(device id, seq, entry bytes) of leaf `index`."""
        ...

    def leaf_entries(self, lo: int, hi: int) -> list[tuple[str, int, bytes]]:
        """(device id, seq, entry bytes) of leaves lo..hi (inclusive), in leaf order, in
        one query (an entry bundle is 256 leaves); leaves not stored are left out."""
        ...

    def entry_hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        """seq -> entry hash of the accepted entries lo..hi (inclusive)."""
        ...

    def entry_bodies(self, device_id: str, lo: int, hi: int) -> list[bytes]:
        """The accepted entry bytes of seqs lo..hi (inclusive), in seq order."""
        ...

    def update_entries(self, device_id: str, hi: int) -> list[tuple[int, bytes]]:
        """(seq, entry bytes) of the device's accepted entries at seq <= `hi` that may be
        update or update-reverted entries, by seq: every entry whose bytes hold
        UPDATE_MARK or REVERTED_MARK (a canonical kind-7 or kind-8 entry does,
        formats.entry), perhaps a few more; the caller parses them and keeps kinds 7, 8.
        Scanned by the database, so a device's firmware history costs no parse of its
        other entries."""
        ...

    def first_signed_entry(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        """(seq, signature) of the first accepted entry at or after `seq` that carries
        its own device signature."""
        ...

    def contested_hashes(self, device_id: str) -> dict[int, bytes]:
        """seq -> accepted entry hash, at every seq a device checkpoint or a held entry
        of the device also speaks of (where a fork can show)."""
        ...

    # -- held entries --------------------------------------------------------------------

    def pending(self, device_id: str, lo: int, hi: int = MAX_SEQ) -> list[HeldEntry]:
        """The device's held entries at lo <= seq <= hi, by seq then hash (a bounded
        range: reconcile reads a long held span back a block at a time)."""
        ...

    def pending_count(self, device_id: str, above: int = -1) -> tuple[int, int]:
        """(rows, rows with a signature) the device holds in `pending` at seqs above
        `above` (all by default): how reconcile sees that nobody changed them since it
        last read them (reconcile._Carry), and what it reports held at its end."""
        ...

    def pending_rev(self, device_id: str) -> int:
        """The revision of the device's rows in `pending`, raised by every write to
        them (add_pending, sign_pending, drop_pending, by any process): how reconcile
        sees in one read that nobody changed them since it last walked them
        (reconcile._Carry.holds)."""
        ...

    def held_shape(self, device_id: str) -> str | None:
        """What reconcile last learnt of the shape of the device's held rows (text it
        wrote, reconcile._shape_text), or None: a cache, valid only for the `pending_rev`
        and tip it names, so it never needs clearing."""
        ...

    def set_held_shape(self, device_id: str, shape: str) -> None:
        """Keep the device's held shape (in the caller's transaction); `pending_rev` is
        left as it is: the shape describes the rows, it is not one."""
        ...

    def pending_links(self, device_id: str, lo: int, hi: int
                      ) -> list[tuple[int, bytes, bool, bytes | None, int | None]]:
        """(seq, entry hash, signed, prev, kind) of the device's held rows at
        lo <= seq <= hi, in (seq, hash) order, without their bodies: what reconcile
        reads to learn the shape of a long held span (a chain, a hole) before it
        decides to walk it from `pending` a chunk at a time."""
        ...

    def next_pending_seq(self, device_id: str, lo: int, kind: int | None = None
                         ) -> int | None:
        """The lowest seq >= lo at which the device holds a row (of entry kind `kind`,
        when given; None: none): how reconcile finds the entries above a hole wider
        than it reads at once, and the first log-altered report among rows it keeps
        no shape of (reconcile._Beyond)."""
        ...

    def add_pending(self, rows: Sequence[PendingRow]) -> None:
        """Hold these entries; one already held (same device, seq, hash) is kept as is."""
        ...

    def sign_pending(self, device_id: str, seq: int, entry_hash: bytes, sig: bytes) -> None:
        """Give a held entry the device signature a later copy of it carried."""
        ...

    def drop_pending(self, keys: Sequence[tuple[str, int, bytes]]) -> None:
        """Forget held entries (device, seq, hash): they were accepted."""
        ...

    # -- device checkpoints --------------------------------------------------------------

    def add_device_checkpoint(self, device_id: str, cose_hash: bytes, cose: bytes,
                              nonce: bytes | None, seq: int, head: bytes) -> bool:
        """Keep a verified device checkpoint; False if it was kept already."""
        ...

    def device_checkpoints(self, device_id: str, lo: int = 0, hi: int = MAX_SEQ
                           ) -> list[DeviceCheckpoint]:
        """The device's checkpoints at lo <= seq <= hi, by seq."""
        ...

    def covering_checkpoint(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        """(seq, COSE bytes) of the first device checkpoint at or after `seq` whose head
        is the accepted entry at its seq (ties: lowest COSE hash)."""
        ...

    # -- devices -------------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None: ...

    def devices(self) -> list[Device]: ...

    def add_device(self, device_id: str, pub: bytes, label: str, board: str, fw: str,
                   enrolled_at: int, genesis: bytes, enroll_key: str | None = None,
                   enroll_sig: bytes | None = None) -> None:
        """Enroll: tip before entry 0 (seq -1, head = the key's genesis), with the
        enrolling collector's key and signature when it signed the enrollment."""
        ...

    def sign_enrollment(self, device_id: str, enroll_key: str, enroll_sig: bytes) -> None:
        """Give an enrollment stored unsigned the collector signature a later bundle
        carried over the same fields. A write."""
        ...

    def set_tip(self, device_id: str, seq: int, head: bytes, t: int | None) -> None: ...

    def set_forked(self, device_id: str) -> None: ...

    def set_revoked(self, device_id: str, at: int, reason: str) -> None: ...

    def add_revocation(self, device_id: str, statement: bytes) -> None:
        """Keep the ledger-signed statement of a device's revocation (hashtrail.ledger.
        revocation); a device that has one keeps it. A write."""
        ...

    def revocations(self) -> list[bytes]:
        """Every signed revocation statement, by device id."""
        ...

    # -- fork evidence -------------------------------------------------------------------

    def add_evidence(self, device_id: str, seq: int, digest: bytes, doc: str,
                     created: int) -> bool:
        """Keep a fork's evidence; False if this fork (digest) was kept already."""
        ...

    def first_evidence(self, device_id: str) -> tuple[int, str] | None:
        """(seq, document) of the device's lowest-seq evidence."""
        ...

    # -- signed ledger checkpoints -------------------------------------------------------

    def checkpoint(self, size: int) -> bytes | None: ...

    def add_checkpoint(self, size: int, note: bytes, created: int) -> None: ...

    def checkpoints(self) -> list[bytes]:
        """Every signed checkpoint, by size."""
        ...

    def latest_checkpoint(self) -> bytes | None: ...

    # -- trusted collectors --------------------------------------------------------------

    def add_collector(self, key: str, name: str, added_at: int) -> bool:
        """Trust a collector key; False if it was trusted already."""
        ...

    def collectors(self) -> list[tuple[str, str, int]]:
        """(verifier key, name, added at), oldest first."""
        ...

    def collector_name(self, key: str) -> str | None: ...

    # -- the rows as stored, for verify --------------------------------------------------

    def scan_meta(self) -> Iterable[tuple[Any, Any]]:
        """(key, value)."""
        ...

    def scan_devices(self) -> Iterable[tuple[Any, ...]]:
        """Device columns in `Device` order (enroll_key, enroll_sig last), by device id."""
        ...

    def scan_entries(self) -> Iterator[tuple[Any, ...]]:
        """(leaf_index, device_id, seq, entry_hash, body, sig), by leaf index."""
        ...

    def scan_device_entries(self, device_id: str) -> Iterator[tuple[Any, ...]]:
        """(seq, entry_hash, body, sig) of one device, by seq."""
        ...

    def scan_nodes(self) -> Iterator[tuple[Any, ...]]:
        """(level, index, hash), by level then index."""
        ...

    def scan_checkpoints(self) -> Iterable[tuple[Any, ...]]:
        """(size, note, created), by size."""
        ...

    def scan_device_checkpoints(self) -> Iterable[tuple[Any, ...]]:
        """(device_id, cose_hash, cose, nonce, seq, head)."""
        ...

    def scan_evidence(self) -> Iterable[tuple[Any, ...]]:
        """(device_id, seq, digest, doc), by device id then seq."""
        ...

    def scan_pending(self) -> Iterable[tuple[Any, ...]]:
        """(device_id, seq, entry_hash, body, sig, prev, kind, t)."""
        ...

    def scan_collectors(self) -> Iterable[tuple[Any, ...]]:
        """(key, name, added_at)."""
        ...

    def scan_revocations(self) -> Iterable[tuple[Any, ...]]:
        """(device_id, statement), by device id."""
        ...

    def count_bundles(self) -> int:
        """Rows in the bundles-seen table."""
        ...

    # -- incremental reconcile (schema 3): bundles seen, per-collector cursors ----------
    # A bundle is identified by `digest` (collector.bundle.bundle_digest); reconcile
    # records it once every line of it has been taken up, and then returns early when
    # offered the same bundle again. A cursor is, per collector verifier key and device,
    # the highest entry seq that collector's signed bundles delivered to this ledger
    # (what `export --since` leaves out).

    def bundle_seen(self, digest: bytes) -> bool:
        """Whether a bundle with this digest was reconciled to the end."""
        ...

    def add_bundle(self, digest: bytes, collector: str, at: int,
                   seqs: Sequence[tuple[str, int]]) -> None:
        """Record a reconciled bundle (`collector`: its signer's verifier key, "" when
        unsigned) and, for a signed one, raise that collector's cursor to `seqs`
        (device id, highest seq in the bundle); a cursor never goes down. A write."""
        ...

    def cursor(self, collector: str) -> dict[str, int]:
        """device id -> seq: the collector's cursor (empty if it never sent a bundle)."""
        ...

    def scan_bundles(self) -> Iterable[tuple[Any, ...]]:
        """(digest, collector, reconciled_at), as stored."""
        ...

    def scan_cursors(self) -> Iterable[tuple[Any, ...]]:
        """(collector, device_id, seq), as stored."""
        ...

    # -- one consistent read (added with the PostgreSQL backend, many collectors) ---------

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads inside see one committed state of the ledger, whatever writers commit
        meanwhile: a reader that walks several tables (verify) must not take the rows
        of a commit that landed half-way through its walk for damage. Read-only; inside
        a transaction() it is that transaction's own view."""
        ...
