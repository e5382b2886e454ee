"""The collector store in one SQLite file (WAL): the only module that speaks its SQL.

The schema is `MIGRATIONS`, run in order by sqlite_file.migrate at open (a new store
runs them all). Version 1 is the first store; version 2 adds the collector's identity
key (meta `signer`, made once, for a store older than it too) and the per-device
signing policies, derived for an old store from each device's accepted entry 0. Builds
before the version went past 1 created both on the side, under schema 1: each step keeps
what is already there.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from hashtrail import sqlite_file
from hashtrail.collector.storage import (
    Anchor,
    Enrollment,
    RawEntry,
    RecordRow,
    StoredCheckpoint,
    entry0_policy,
)
from hashtrail.formats import note
from hashtrail.formats.entry import REVERTED_MARK, UPDATE_MARK

_BUSY_MS = 30_000


def _v1(db: sqlite3.Connection) -> None:
    for stmt in [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE enrollments (
            device_id TEXT PRIMARY KEY, pub BLOB NOT NULL, label TEXT NOT NULL,
            board TEXT NOT NULL, fw TEXT NOT NULL, enrolled_at INTEGER NOT NULL)""",
        """CREATE TABLE entries (
            device_id TEXT NOT NULL, seq INTEGER NOT NULL, entry_hash BLOB NOT NULL,
            body BLOB NOT NULL, sig BLOB, accepted INTEGER NOT NULL DEFAULT 0,
            received_at INTEGER NOT NULL,
            PRIMARY KEY (device_id, seq, entry_hash)) WITHOUT ROWID""",
        """CREATE TABLE checkpoints (
            device_id TEXT NOT NULL, cose_hash BLOB NOT NULL, cose BLOB NOT NULL,
            nonce BLOB, seq INTEGER NOT NULL, head BLOB NOT NULL,
            accepted INTEGER NOT NULL DEFAULT 0, received_at INTEGER NOT NULL,
            PRIMARY KEY (device_id, cose_hash)) WITHOUT ROWID""",
        """CREATE TABLE state (
            device_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, head BLOB NOT NULL)""",
    ]:
        db.execute(stmt)
    db.execute("INSERT INTO meta VALUES ('collector_id', ?)", (os.urandom(8).hex(),))


def _v2(db: sqlite3.Connection) -> None:
    if db.execute("SELECT 1 FROM meta WHERE key='signer'").fetchone() is None:
        cid = db.execute("SELECT value FROM meta WHERE key='collector_id'").fetchone()[0]
        db.execute("INSERT INTO meta VALUES ('signer', ?)",
                   (note.Signer.generate(f"collector-{cid}").to_string(),))
    db.execute("""CREATE TABLE IF NOT EXISTS policies (
        device_id TEXT PRIMARY KEY, policy INTEGER NOT NULL)""")
    for (did,) in db.execute("SELECT device_id FROM state WHERE device_id NOT IN "
                             "(SELECT device_id FROM policies)").fetchall():
        _derive_policy(db, str(did))


def _derive_policy(db: sqlite3.Connection, device_id: str) -> None:
    """Record the policy of the device's accepted entry 0, as Store.accept does."""
    row = db.execute("SELECT body FROM entries WHERE device_id=? AND seq=0 AND accepted=1",
                     (device_id,)).fetchone()
    policy = None if row is None else entry0_policy(bytes(row[0]))
    if policy is None:
        return
    db.execute("INSERT OR REPLACE INTO policies VALUES (?,?)", (device_id, policy))


MIGRATIONS = [
    sqlite_file.Migration(1, "the store: enrollments, entries, checkpoints, anchors, "
                             "collector id", _v1),
    sqlite_file.Migration(2, "the collector's identity key; each device's signing "
                             "policy", _v2),
]
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = frozenset({"meta", "enrollments", "entries", "checkpoints", "state", "policies"})


class SqliteStoreStorage(sqlite_file.SqliteFile):
    """storage.StoreStorage on one SQLite file (WAL, synchronous=FULL; sqlite_file)."""

    KIND = sqlite_file.STORE
    MIGRATIONS = MIGRATIONS
    TABLES = TABLES

    @classmethod
    def open(cls, path: Path, *, create: bool) -> SqliteStoreStorage:
        """The store at `path`, brought to this schema; with `create`, a new one when
        nothing is there. Not a store: InputError, nothing created or changed."""
        if create and not (path.exists() or path.is_symlink()):
            cls.check_new(path)
            conn = sqlite_file.connect(path, _BUSY_MS)
        else:
            conn = sqlite_file.open_existing(path, _BUSY_MS, sqlite_file.STORE)
        return cls._migrated(conn, path)

    # -- enrollments ---------------------------------------------------------------------

    def enrollment(self, device_id: str) -> Enrollment | None:
        row = self._db.execute("SELECT device_id, pub, label, board, fw, enrolled_at FROM "
                               "enrollments WHERE device_id=?", (device_id,)).fetchone()
        return None if row is None else Enrollment(*row)

    def enrollments(self) -> list[Enrollment]:
        return [Enrollment(*r) for r in self._db.execute(
            "SELECT device_id, pub, label, board, fw, enrolled_at FROM enrollments "
            "ORDER BY device_id").fetchall()]

    def add_enrollment(self, e: Enrollment) -> None:
        self._w().execute("INSERT INTO enrollments VALUES (?,?,?,?,?,?)",
                          (e.device_id, e.pub, e.label, e.board, e.fw, e.enrolled_at))

    # -- state ---------------------------------------------------------------------------

    def anchor(self, device_id: str) -> Anchor | None:
        row = self._db.execute("SELECT seq, head FROM state WHERE device_id=?",
                               (device_id,)).fetchone()
        return None if row is None else Anchor(int(row[0]), bytes(row[1]))

    def set_anchor(self, device_id: str, seq: int, head: bytes) -> None:
        self._w().execute("INSERT OR REPLACE INTO state VALUES (?,?,?)", (device_id, seq, head))

    def policy(self, device_id: str) -> int | None:
        row = self._db.execute("SELECT policy FROM policies WHERE device_id=?",
                               (device_id,)).fetchone()
        return None if row is None else int(row[0])

    def set_policy(self, device_id: str, policy: int) -> None:
        self._w().execute("INSERT OR REPLACE INTO policies VALUES (?,?)", (device_id, policy))

    # -- records -------------------------------------------------------------------------

    def add_records(self, rows: Sequence[RecordRow]) -> int:
        db = self._w()
        before = db.total_changes
        db.executemany("INSERT OR IGNORE INTO entries (device_id, seq, entry_hash, body, "
                       "sig, received_at) VALUES (?,?,?,?,?,?)", rows)
        return db.total_changes - before

    def records(self, device_id: str, from_seq: int, accepted: bool | None
                ) -> list[RawEntry]:
        cond = "" if accepted is None else f"AND accepted={int(accepted)}"
        rows = self._db.execute(
            f"SELECT seq, body, sig FROM entries WHERE device_id=? AND seq>=? {cond} "
            "ORDER BY seq, entry_hash", (device_id, from_seq)).fetchall()
        return [RawEntry(int(s), bytes(b), None if g is None else bytes(g)) for s, b, g in rows]

    def accepted_body(self, device_id: str, seq: int) -> bytes | None:
        row = self._db.execute("SELECT body FROM entries WHERE device_id=? AND seq=? AND "
                               "accepted=1", (device_id, seq)).fetchone()
        return None if row is None else bytes(row[0])

    def accepted_update_bodies(self, device_id: str) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute(
            "SELECT body FROM entries WHERE device_id=? AND accepted=1 AND "
            "(instr(body, ?) > 0 OR instr(body, ?) > 0) ORDER BY seq",
            (device_id, UPDATE_MARK, REVERTED_MARK))]

    def is_accepted(self, device_id: str, seq: int, entry_hash: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM entries WHERE device_id=? AND seq=? AND "
                                "entry_hash=? AND accepted=1",
                                (device_id, seq, entry_hash)).fetchone() is not None

    def quarantined_hashes(self, device_id: str, lo: int, hi: int
                           ) -> list[tuple[int, bytes]]:
        return [(int(s), bytes(h)) for s, h in self._db.execute(
            "SELECT seq, entry_hash FROM entries WHERE device_id=? AND seq BETWEEN ? AND ? "
            "AND accepted=0 ORDER BY seq", (device_id, lo, hi))]

    def mark_accepted(self, device_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        self._w().executemany("UPDATE entries SET accepted=1 WHERE device_id=? AND seq=? AND "
                              "entry_hash=?", [(device_id, s, h) for s, h in rows])

    # -- checkpoints ---------------------------------------------------------------------

    def add_checkpoint(self, device_id: str, cose_hash: bytes, cose: bytes,
                       nonce: bytes | None, seq: int, head: bytes, received_at: int) -> bool:
        cur = self._w().execute(
            "INSERT OR IGNORE INTO checkpoints (device_id, cose_hash, cose, nonce, seq, head,"
            " received_at) VALUES (?,?,?,?,?,?,?)",
            (device_id, cose_hash, cose, nonce, seq, head, received_at))
        return cur.rowcount == 1

    def mark_checkpoint_accepted(self, device_id: str, cose_hash: bytes) -> bool:
        cur = self._w().execute("UPDATE checkpoints SET accepted=1 WHERE device_id=? AND "
                                "cose_hash=?", (device_id, cose_hash))
        return cur.rowcount == 1

    def checkpoints(self, device_id: str) -> list[StoredCheckpoint]:
        rows = self._db.execute("SELECT cose, nonce, seq, head, accepted, received_at FROM "
                                "checkpoints WHERE device_id=? ORDER BY seq, received_at",
                                (device_id,)).fetchall()
        return [StoredCheckpoint(bytes(c), None if n is None else bytes(n), int(s), bytes(h),
                                 bool(a), int(t)) for c, n, s, h, a, t in rows]
