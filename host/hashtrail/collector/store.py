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
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from hashtrail import sqlite_file
from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import note
from hashtrail.formats.entry import parse_entry, signing_policy
from hashtrail.formats.keys import check_pub, parse_device_id

_SCHEMA_VERSION = 1
_BUSY_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS enrollments (
    device_id TEXT PRIMARY KEY, pub BLOB NOT NULL, label TEXT NOT NULL, board TEXT NOT NULL,
    fw TEXT NOT NULL, enrolled_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, entry_hash BLOB NOT NULL,
    body BLOB NOT NULL, sig BLOB, accepted INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq, entry_hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    device_id TEXT NOT NULL, cose_hash BLOB NOT NULL, cose BLOB NOT NULL, nonce BLOB,
    seq INTEGER NOT NULL, head BLOB NOT NULL, accepted INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, cose_hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    device_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, head BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS policies (
    device_id TEXT PRIMARY KEY, policy INTEGER NOT NULL);
"""


class StoreError(HashtrailError):
    """The store file is unusable, or a caller asked for something it must refuse."""

    hint = "check the --store path; a store is made by `hashtrail enroll`"


class Enrollment(NamedTuple):
    device_id: str
    pub: bytes
    label: str
    board: str
    fw: str
    enrolled_at: int


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


def check_device_id(device_id: str) -> str:
    """Device ids are 32 lower-case hex characters; anything else is refused early
    (keys.parse_device_id: one rule, one message, for every boundary)."""
    return parse_device_id(device_id)


def device_id_of(pub: bytes) -> str:
    """docs/FORMATS.md: the first 16 bytes of SHA-256(pub), as lowercase hex."""
    return hashlib.sha256(pub).digest()[:16].hex()


class Store:
    """One collector store file. Use `Store.open(path)`; close it (or use `with`)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path = path

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Store:
        """The store at ``path``; with ``create``, a new one when nothing is there. A path
        that is not a store (empty, not SQLite, a ledger, a directory...) is InputError,
        and nothing is created or changed."""
        p = Path(path)
        if create and not (p.exists() or p.is_symlink()):
            sqlite_file.check_new(p, sqlite_file.STORE)
            conn = sqlite_file.connect(p, _BUSY_MS)
        else:
            conn = sqlite_file.open_existing(p, _BUSY_MS, sqlite_file.STORE)
        try:
            st = cls(conn, p)
            with st._tx():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))
                    conn.execute("INSERT INTO meta VALUES ('collector_id', ?)",
                                 (os.urandom(8).hex(),))
                elif row[0] != str(_SCHEMA_VERSION):
                    raise StoreError(f"{p} has store schema {row[0]}, this hashtrail reads "
                                     f"{_SCHEMA_VERSION}")
                # made with the store (and, once, for a store older than this key)
                if conn.execute("SELECT 1 FROM meta WHERE key='signer'").fetchone() is None:
                    cid = conn.execute("SELECT value FROM meta WHERE key='collector_id'"
                                       ).fetchone()[0]
                    conn.execute("INSERT INTO meta VALUES ('signer', ?)",
                                 (note.Signer.generate(f"collector-{cid}").to_string(),))
                # a store older than the policies table: derive them from entry 0
                for (did,) in conn.execute(
                        "SELECT device_id FROM state WHERE device_id NOT IN "
                        "(SELECT device_id FROM policies)").fetchall():
                    st._keep_policy(conn, str(did))
            return st
        except BaseException as e:
            conn.close()
            if isinstance(e, sqlite3.DatabaseError):
                raise StoreError(f"cannot open collector store {p}: {e}") from e
            raise

    @classmethod
    def check(cls, path: str | os.PathLike[str], *, create: bool = True) -> None:
        """Refuse now what `open` would refuse, creating and changing nothing: for a
        command that talks to a device first and stores what it learnt after."""
        p = Path(path)
        if create and not (p.exists() or p.is_symlink()):
            sqlite_file.check_new(p, sqlite_file.STORE)
        else:
            cls.open(p, create=False).close()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: writers queue on the busy timeout instead of failing mid-way."""
        with sqlite_file.transaction(self._db) as db:
            yield db

    @property
    def collector_id(self) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key='collector_id'").fetchone()
        return str(row[0])

    @property
    def signer(self) -> note.Signer:
        """This collector's Ed25519 identity key; its verifier key is what a ledger
        operator trusts (`hashtrail export --show-key` prints it)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='signer'").fetchone()
        return note.Signer.from_string(str(row[0]))

    # -- enrollments ---------------------------------------------------------------------

    def enroll(self, device_id: str, pub: bytes, *, label: str = "", board: str = "",
               fw: str = "", enrolled_at: int | None = None) -> Enrollment:
        check_device_id(device_id)
        check_pub(pub)   # a P-256 point, on the curve, coordinates < p: refused at the door
        if device_id_of(pub) != device_id:
            raise VerificationError(f"device id {device_id} is not derived from this key")
        when = int(time.time()) if enrolled_at is None else enrolled_at
        with self._tx() as db:
            old = self.enrollment(device_id)
            if old is not None:
                if old.pub != pub:
                    raise VerificationError(f"device {device_id} is enrolled with another key")
                return old
            db.execute("INSERT INTO enrollments VALUES (?,?,?,?,?,?)",
                       (device_id, pub, label, board, fw, when))
        return Enrollment(device_id, pub, label, board, fw, when)

    def enrollment(self, device_id: str) -> Enrollment | None:
        row = self._db.execute("SELECT * FROM enrollments WHERE device_id=?",
                               (device_id,)).fetchone()
        return None if row is None else Enrollment(*row)

    def enrollments(self) -> list[Enrollment]:
        rows = self._db.execute("SELECT * FROM enrollments ORDER BY device_id").fetchall()
        return [Enrollment(*r) for r in rows]

    # -- entries -------------------------------------------------------------------------

    def anchor(self, device_id: str) -> Anchor | None:
        row = self._db.execute("SELECT seq, head FROM state WHERE device_id=?",
                               (device_id,)).fetchone()
        return None if row is None else Anchor(int(row[0]), bytes(row[1]))

    def policy(self, device_id: str) -> int | None:
        """The signing policy the device's accepted entry 0 declares (None: entry 0 not
        accepted yet)."""
        row = self._db.execute("SELECT policy FROM policies WHERE device_id=?",
                               (device_id,)).fetchone()
        return None if row is None else int(row[0])

    def _keep_policy(self, db: sqlite3.Connection, device_id: str) -> None:
        """Record the policy of the device's accepted entry 0 (inside the caller's
        transaction). Bytes that are no entry (never verified, so never accepted by
        collect) record nothing."""
        row = db.execute("SELECT body FROM entries WHERE device_id=? AND seq=0 AND "
                         "accepted=1", (device_id,)).fetchone()
        if row is None:
            return
        try:
            policy = signing_policy(parse_entry(bytes(row[0])))
        except FormatError:
            return
        db.execute("INSERT OR REPLACE INTO policies VALUES (?,?)", (device_id, policy))

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
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO entries (device_id, seq, entry_hash, body,"
                           " sig, received_at) VALUES (?,?,?,?,?,?)", rows)
            return db.total_changes - before

    def quarantined(self, device_id: str, from_seq: int = 0) -> list[RawEntry]:
        return self._entries(device_id, from_seq, "AND accepted=0")

    def accepted_records(self, device_id: str, from_seq: int = 0) -> list[RawEntry]:
        return self._entries(device_id, from_seq, "AND accepted=1")

    def all_records(self, device_id: str) -> list[RawEntry]:
        return self._entries(device_id, 0, "")

    def _entries(self, device_id: str, from_seq: int, cond: str) -> list[RawEntry]:
        rows = self._db.execute(
            f"SELECT seq, body, sig FROM entries WHERE device_id=? AND seq>=? {cond} "
            "ORDER BY seq, entry_hash", (device_id, from_seq)).fetchall()
        return [RawEntry(int(s), bytes(b), None if g is None else bytes(g)) for s, b, g in rows]

    def accept(self, device_id: str, upto_seq: int, head: bytes,
               hashes: Collection[bytes] | None = None) -> int:
        """Mark the quarantined entries after the anchor up to `upto_seq` as accepted.

        Call only after verifying them (links from the anchor, signatures, and `head`
        signed by the device). Refused unless every seq in the range is present exactly
        once and the entry at `upto_seq` hashes to `head`. Re-accepting an already
        accepted point is a no-op (returns 0). `hashes`: the entry hashes that were
        verified; other quarantined candidates for the same seqs (a record forged on
        the way and refused by an earlier run, kept as evidence) are left out instead
        of blocking every later acceptance.
        """
        with self._tx() as db:
            anc = self.anchor(device_id)
            start = 0 if anc is None else anc.seq + 1
            if upto_seq < start:
                row = db.execute("SELECT 1 FROM entries WHERE device_id=? AND seq=? AND "
                                 "entry_hash=? AND accepted=1",
                                 (device_id, upto_seq, head)).fetchone()
                if row is None:
                    raise VerificationError(
                        f"device {device_id}: seq {upto_seq} is behind the anchor and its "
                        "head differs from the accepted entry")
                return 0
            rows = db.execute("SELECT seq, entry_hash FROM entries WHERE device_id=? AND "
                              "seq BETWEEN ? AND ? AND accepted=0 ORDER BY seq",
                              (device_id, start, upto_seq)).fetchall()
            if hashes is not None:
                rows = [r for r in rows if bytes(r[1]) in hashes]
            seqs = [int(r[0]) for r in rows]
            if seqs != list(range(start, upto_seq + 1)):
                raise VerificationError(
                    f"device {device_id}: cannot accept seq {start}..{upto_seq}: "
                    "a seq is missing or held twice (fork?)")
            if bytes(rows[-1][1]) != head:
                raise VerificationError(
                    f"device {device_id}: entry {upto_seq} does not hash to the verified head")
            db.executemany("UPDATE entries SET accepted=1 WHERE device_id=? AND seq=? AND "
                           "entry_hash=?", [(device_id, int(r[0]), r[1]) for r in rows])
            db.execute("INSERT OR REPLACE INTO state VALUES (?,?,?)",
                       (device_id, upto_seq, head))
            if start == 0:
                self._keep_policy(db, device_id)
            return len(seqs)

    # -- checkpoints ---------------------------------------------------------------------

    def add_checkpoint(self, device_id: str, cose: bytes, nonce: bytes | None, *, seq: int,
                       head: bytes) -> bool:
        """Store a device checkpoint as received (quarantined). True if it was new."""
        self._require_enrolled(device_id)
        if len(head) != 32 or seq < 0:
            raise FormatError("a checkpoint head is 32 bytes and its seq is >= 0")
        with self._tx() as db:
            before = db.total_changes
            db.execute("INSERT OR IGNORE INTO checkpoints (device_id, cose_hash, cose, nonce,"
                       " seq, head, received_at) VALUES (?,?,?,?,?,?,?)",
                       (device_id, hashlib.sha256(cose).digest(), bytes(cose),
                        None if nonce is None else bytes(nonce), seq, head,
                        int(time.time())))
            return db.total_changes > before

    def accept_checkpoint(self, device_id: str, cose: bytes) -> None:
        """Mark a stored checkpoint verified (its signature and nonce checked by the caller)."""
        with self._tx() as db:
            cur = db.execute("UPDATE checkpoints SET accepted=1 WHERE device_id=? AND "
                             "cose_hash=?", (device_id, hashlib.sha256(cose).digest()))
            if cur.rowcount != 1:
                raise StoreError(f"device {device_id}: no such checkpoint in the store")

    def checkpoints(self, device_id: str) -> list[StoredCheckpoint]:
        rows = self._db.execute("SELECT cose, nonce, seq, head, accepted, received_at FROM "
                                "checkpoints WHERE device_id=? ORDER BY seq, received_at",
                                (device_id,)).fetchall()
        return [StoredCheckpoint(bytes(c), None if n is None else bytes(n), int(s), bytes(h),
                                 bool(a), int(t)) for c, n, s, h, a, t in rows]

    def last_checkpoint(self, device_id: str) -> StoredCheckpoint | None:
        acc = [c for c in self.checkpoints(device_id) if c.accepted]
        return acc[-1] if acc else None

    def _require_enrolled(self, device_id: str) -> None:
        if self.enrollment(check_device_id(device_id)) is None:
            raise StoreError(f"device {device_id} is not enrolled in this store",
                             hint="enroll it first: hashtrail enroll --port PORT")
