"""The ledger in one SQLite file: the only module that speaks the ledger's SQL.

Why SQLite with stored subtree hashes: the ledger must stay consistent when killed at
any point and must serve O(log n) proofs at a million leaves. Every change happens in
one `BEGIN IMMEDIATE` transaction (sqlite_file.transaction), and the tree keeps one row
per complete subtree above the leaves (`nodes`; a leaf's hash comes from its `entries`
row, Ledger.node), so a proof reads at most ~2 log2(n) rows.

The schema is `MIGRATIONS`, run in order by sqlite_file.migrate at open (a new file
runs them all). Version 1 is the first ledger; version 2 adds `collectors` (a ledger
made before collector trust gets it, empty); ...; version 7 gives `devices` the
enrolling collector's signature and key (NULL for the devices already there); version 8
drops the level-1 rows of `nodes` (computed from the entries rows since). Files
written before the version was bumped past 1 may already hold `collectors`: each step
tolerates what an older build created on the side.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

from hashtrail import sqlite_file
from hashtrail.formats.entry import REVERTED_MARK, UPDATE_MARK
from hashtrail.ledger.storage import (
    MAX_SEQ,
    Device,
    DeviceCheckpoint,
    EntryRow,
    HeldEntry,
    NodeRow,
    PendingRow,
    StoredEntry,
    walk_fields,
)

_BUSY_MS = 60_000
# Bound parameters per multi-row INSERT (insert_rows): under 999, the limit of SQLite
# builds before 3.32, so any SQLite the sqlite3 module links to accepts the statement.
_MAX_PARAMS = 900

_V1 = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE devices (device_id TEXT PRIMARY KEY, pub BLOB NOT NULL,
        label TEXT NOT NULL, board TEXT NOT NULL, fw TEXT NOT NULL,
        enrolled_at INTEGER NOT NULL, tip_seq INTEGER NOT NULL DEFAULT -1,
        tip_head BLOB NOT NULL, tip_t INTEGER, forked INTEGER NOT NULL DEFAULT 0,
        revoked_at INTEGER, revoked_reason TEXT)""",
    """CREATE TABLE entries (device_id TEXT NOT NULL, seq INTEGER NOT NULL,
        leaf_index INTEGER NOT NULL UNIQUE, entry_hash BLOB NOT NULL, body BLOB NOT NULL,
        sig BLOB, PRIMARY KEY (device_id, seq)) WITHOUT ROWID""",
    """CREATE TABLE pending (device_id TEXT NOT NULL, seq INTEGER NOT NULL,
        entry_hash BLOB NOT NULL, body BLOB NOT NULL, sig BLOB,
        PRIMARY KEY (device_id, seq, entry_hash)) WITHOUT ROWID""",
    """CREATE TABLE dev_checkpoints (device_id TEXT NOT NULL, cose_hash BLOB NOT NULL,
        cose BLOB NOT NULL, nonce BLOB, seq INTEGER NOT NULL, head BLOB NOT NULL,
        PRIMARY KEY (device_id, cose_hash)) WITHOUT ROWID""",
    "CREATE INDEX dev_checkpoints_seq ON dev_checkpoints (device_id, seq)",
    """CREATE TABLE nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)) WITHOUT ROWID""",
    """CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL,
        created INTEGER NOT NULL)""",
    """CREATE TABLE evidence (device_id TEXT NOT NULL, seq INTEGER NOT NULL,
        digest BLOB NOT NULL, doc TEXT NOT NULL, created INTEGER NOT NULL,
        PRIMARY KEY (device_id, digest))""",
    """CREATE TABLE bundles (digest BLOB PRIMARY KEY, collector TEXT NOT NULL,
        reconciled_at INTEGER NOT NULL)""",
]


def _v1(db: sqlite3.Connection) -> None:
    for stmt in _V1:
        db.execute(stmt)


def _v2(db: sqlite3.Connection) -> None:
    # IF NOT EXISTS: builds before the version bump made it at open, as schema 1
    db.execute("""CREATE TABLE IF NOT EXISTS collectors (key TEXT PRIMARY KEY,
        name TEXT NOT NULL, added_at INTEGER NOT NULL)""")


def _v3(db: sqlite3.Connection) -> None:
    # `bundles` (made by version 1, never written before this version) becomes the
    # record of reconciled bundles; `cursors` says, per collector key and device, up to
    # which seq that collector's signed bundles have been reconciled (docs/BUNDLE.md).
    db.execute("""CREATE TABLE IF NOT EXISTS cursors (collector TEXT NOT NULL,
        device_id TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (collector, device_id)) WITHOUT ROWID""")


def _v4(db: sqlite3.Connection) -> None:
    # ledger-signed revocation statements, served beside the tiles (docs/TILES.md)
    db.execute("""CREATE TABLE IF NOT EXISTS revocations (device_id TEXT PRIMARY KEY,
        statement BLOB NOT NULL)""")


def _v5(db: sqlite3.Connection) -> None:
    # A held entry keeps the fields the chain walk reads (storage.HeldEntry), so a
    # reconcile no longer decodes every held entry of the devices it touches; the rows
    # already held get them here (a row that does not parse keeps NULLs: read as before).
    have = {str(r[1]) for r in db.execute("PRAGMA table_info(pending)")}
    for name, kind in (("prev", "BLOB"), ("kind", "INTEGER"), ("t", "INTEGER")):
        if name not in have:
            db.execute(f"ALTER TABLE pending ADD COLUMN {name} {kind}")
    rows = db.execute("SELECT device_id, seq, entry_hash, body FROM pending").fetchall()
    db.executemany("UPDATE pending SET prev=?, kind=?, t=? WHERE device_id=? AND seq=? "
                   "AND entry_hash=?", [(*w, d, s, h) for d, s, h, b in rows
                                         if (w := walk_fields(b)) is not None])


def _v6(db: sqlite3.Connection) -> None:
    # The tree no longer keeps leaf hashes (level 0): a leaf's hash is computed from its
    # entries row (Ledger.node), so the stored copy goes (half the rows of `nodes`).
    db.execute("DELETE FROM nodes WHERE level=0")


def _v7(db: sqlite3.Connection) -> None:
    # A device keeps its enrolling collector's signature over the enrollment and that
    # collector's key (formats.enrollment, docs/BUNDLE.md); devices enrolled before stay
    # unsigned (NULL), until a signed bundle of the same enrollment comes (reconcile).
    have = {str(r[1]) for r in db.execute("PRAGMA table_info(devices)")}
    for name, kind in (("enroll_key", "TEXT"), ("enroll_sig", "BLOB")):
        if name not in have:
            db.execute(f"ALTER TABLE devices ADD COLUMN {name} {kind}")


def _v8(db: sqlite3.Connection) -> None:
    # Nor level-1 nodes: each is the hash of its two leaves' hashes, computed from their
    # entries rows (Ledger.nodes, ledger_db.STORED_LOWEST); half of the rows left.
    db.execute("DELETE FROM nodes WHERE level=1")


def _v9(db: sqlite3.Connection) -> None:
    # A device's held rows get a revision, raised by every write to them: reconcile
    # reads it (one row) to see that nobody changed them since it last walked them,
    # where it counted them (a count that grew with a long held span, at every chunk).
    have = {str(r[1]) for r in db.execute("PRAGMA table_info(devices)")}
    if "pending_rev" not in have:
        db.execute("ALTER TABLE devices ADD COLUMN pending_rev INTEGER NOT NULL DEFAULT 0")


def _v10(db: sqlite3.Connection) -> None:
    # What reconcile learnt of the shape of a device's held rows (a spilled chain, entries
    # above a hole), valid for the `pending_rev` and tip it names: a small bundle onto a
    # device holding a long span reads one row instead of the span's links.
    have = {str(r[1]) for r in db.execute("PRAGMA table_info(devices)")}
    if "held_shape" not in have:
        db.execute("ALTER TABLE devices ADD COLUMN held_shape TEXT")


MIGRATIONS = [
    sqlite_file.Migration(1, "the ledger: devices, entries, pending, device checkpoints,"
                             " nodes, checkpoints, evidence, bundles", _v1),
    sqlite_file.Migration(2, "trusted collectors (`ledger trust`)", _v2),
    sqlite_file.Migration(3, "reconciled bundles and per-collector cursors", _v3),
    sqlite_file.Migration(4, "signed revocation statements", _v4),
    sqlite_file.Migration(5, "held entries keep what the chain walk reads (prev, kind, t)",
                          _v5),
    sqlite_file.Migration(6, "leaf hashes come from the entries rows, not from `nodes`",
                          _v6),
    sqlite_file.Migration(7, "devices keep their collector's enrollment signature", _v7),
    sqlite_file.Migration(8, "level-1 tree nodes come from the entries rows, not from "
                             "`nodes`", _v8),
    sqlite_file.Migration(9, "a revision of each device's held rows", _v9),
    sqlite_file.Migration(10, "the shape of each device's held rows, as reconcile learnt it",
                          _v10),
]
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = frozenset({"meta", "devices", "entries", "pending", "dev_checkpoints", "nodes",
                    "checkpoints", "evidence", "bundles", "collectors", "cursors",
                    "revocations"})


def insert_rows(db: sqlite3.Connection, table: str,
                rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT rows of one width into `table` (one of this module's own table names),
    a few hundred rows per statement.

    Why: `executemany` steps one single-row statement per row, and a reconcile of a
    large bundle writes a row per entry and about one per Merkle leaf, all of it on the
    one thread while the signature threads wait. Binding many rows to one statement
    halves the time per `nodes` row and cuts a quarter off an `entries` row
    (tools/bench_ledger.py); the rows, their order and the transaction are the same."""
    if not rows:
        return
    width = len(rows[0])
    k = max(1, _MAX_PARAMS // width)
    one = "(" + ",".join("?" * width) + ")"
    whole = len(rows) - len(rows) % k
    if whole:
        stmt = f"INSERT INTO {table} VALUES " + ",".join([one] * k)
        for i in range(0, whole, k):
            db.execute(stmt, list(chain.from_iterable(rows[i:i + k])))
    if whole < len(rows):
        db.executemany(f"INSERT INTO {table} VALUES {one}", rows[whole:])


def _blob(b: Any) -> bytes | None:
    return None if b is None else bytes(b)


_DEVICE_COLS = ("device_id, pub, label, board, fw, enrolled_at, tip_seq, tip_head, tip_t, "
                "forked, revoked_at, revoked_reason, enroll_key, enroll_sig")


def _device(row: tuple[Any, ...]) -> Device:
    (did, pub, label, board, fw, enrolled, tip_seq, tip_head, tip_t, forked, rev_at,
     rev_reason, ekey, esig) = row
    return Device(str(did), bytes(pub), str(label), str(board), str(fw), int(enrolled),
                  int(tip_seq), bytes(tip_head), None if tip_t is None else int(tip_t),
                  bool(forked), None if rev_at is None else int(rev_at),
                  None if rev_reason is None else str(rev_reason),
                  None if ekey is None else str(ekey), _blob(esig))


class SqliteLedgerStorage(sqlite_file.SqliteFile):
    """storage.LedgerStorage on one SQLite file (WAL, synchronous=FULL; sqlite_file)."""

    KIND = sqlite_file.LEDGER
    MIGRATIONS = MIGRATIONS
    TABLES = TABLES

    @classmethod
    def open(cls, path: Path) -> SqliteLedgerStorage:
        """An existing ledger file, upgraded to this schema (sqlite_file.migrate); a
        path that is not a ledger is InputError with nothing created or changed."""
        return cls._migrated(sqlite_file.open_existing(path, _BUSY_MS, sqlite_file.LEDGER),
                             path)

    @classmethod
    def create(cls, path: Path, meta: dict[str, str]) -> SqliteLedgerStorage:
        """A new ledger file holding `meta` (origin, verifier, size), in the same
        transaction as its schema: no ledger without them is ever on disk."""
        sqlite_file.check_new(path, sqlite_file.LEDGER)
        conn = sqlite_file.connect(path, _BUSY_MS)

        def first_rows(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO meta VALUES (?,?)", list(meta.items()))

        return cls._migrated(conn, path, then=first_rows)

    # -- meta ----------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self._w().execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def drop_legacy_signer(self, verifier: str) -> None:
        """secure_delete zeroes the freed cell; the TRUNCATE checkpoint empties the WAL
        that still held the page as it was."""
        self._db.execute("PRAGMA secure_delete=ON")
        with self.transaction():
            self.set_meta("verifier", verifier)
            self._db.execute("DELETE FROM meta WHERE key='signer'")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- tree ----------------------------------------------------------------------------

    def node(self, level: int, index: int) -> bytes | None:
        row = self._db.execute("SELECT hash FROM nodes WHERE level=? AND idx=?",
                               (level, index)).fetchone()
        return None if row is None else bytes(row[0])

    def nodes(self, level: int, lo: int, hi: int) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute(
            "SELECT hash FROM nodes WHERE level=? AND idx BETWEEN ? AND ? ORDER BY idx",
            (level, lo, hi))]

    def add_nodes(self, rows: Sequence[NodeRow]) -> None:
        insert_rows(self._w(), "nodes", rows)

    # -- entries -------------------------------------------------------------------------

    def add_entries(self, rows: Sequence[EntryRow]) -> None:
        insert_rows(self._w(), "entries", rows)

    def entry(self, device_id: str, seq: int) -> StoredEntry | None:
        row = self._db.execute("SELECT leaf_index, entry_hash, body, sig FROM entries "
                               "WHERE device_id=? AND seq=?", (device_id, seq)).fetchone()
        if row is None:
            return None
        return StoredEntry(int(row[0]), bytes(row[1]), bytes(row[2]), _blob(row[3]))

    def leaf_entry(self, index: int) -> tuple[str, int, bytes] | None:
        row = self._db.execute("SELECT device_id, seq, body FROM entries WHERE leaf_index=?",
                               (index,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), bytes(row[2]))

    def leaf_entries(self, lo: int, hi: int) -> list[tuple[str, int, bytes]]:
        return [(str(r[0]), int(r[1]), bytes(r[2])) for r in self._db.execute(
            "SELECT device_id, seq, body FROM entries WHERE leaf_index BETWEEN ? AND ? "
            "ORDER BY leaf_index", (lo, hi))]

    def entry_hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        return {int(s): bytes(h) for s, h in self._db.execute(
            "SELECT seq, entry_hash FROM entries WHERE device_id=? AND seq BETWEEN ? AND ?",
            (device_id, lo, hi))}

    def entry_bodies(self, device_id: str, lo: int, hi: int) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute(
            "SELECT body FROM entries WHERE device_id=? AND seq BETWEEN ? AND ? ORDER BY seq",
            (device_id, lo, hi))]

    def update_entries(self, device_id: str, hi: int) -> list[tuple[int, bytes]]:
        return [(int(r[0]), bytes(r[1])) for r in self._db.execute(
            "SELECT seq, body FROM entries WHERE device_id=? AND seq<=? AND "
            "(instr(body, ?) > 0 OR instr(body, ?) > 0) ORDER BY seq",
            (device_id, hi, UPDATE_MARK, REVERTED_MARK))]

    def first_signed_entry(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        row = self._db.execute("SELECT seq, sig FROM entries WHERE device_id=? AND seq>=? "
                               "AND sig IS NOT NULL ORDER BY seq LIMIT 1",
                               (device_id, seq)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def contested_hashes(self, device_id: str) -> dict[int, bytes]:
        return {int(s): bytes(h) for s, h in self._db.execute(
            "SELECT seq, entry_hash FROM entries WHERE device_id=? AND seq IN "
            "(SELECT seq FROM dev_checkpoints WHERE device_id=? UNION "
            "SELECT seq FROM pending WHERE device_id=?)", (device_id, device_id, device_id))}

    # -- pending -------------------------------------------------------------------------

    def pending(self, device_id: str, lo: int, hi: int = MAX_SEQ) -> list[HeldEntry]:
        return [HeldEntry(int(s), bytes(h), bytes(b), _blob(g), _blob(p),
                          None if k is None else int(k), None if t is None else int(t))
                for s, h, b, g, p, k, t in self._db.execute(
                    "SELECT seq, entry_hash, body, sig, prev, kind, t FROM pending WHERE "
                    "device_id=? AND seq>=? AND seq<=? ORDER BY seq, entry_hash",
                    (device_id, lo, hi))]

    def pending_count(self, device_id: str, above: int = -1) -> tuple[int, int]:
        n, signed = self._db.execute("SELECT count(*), count(sig) FROM pending WHERE "
                                     "device_id=? AND seq>?", (device_id, above)).fetchone()
        return int(n), int(signed)

    def pending_links(self, device_id: str, lo: int, hi: int
                      ) -> list[tuple[int, bytes, bool, bytes | None, int | None]]:
        return [(int(s), bytes(h), bool(g), _blob(p), None if k is None else int(k))
                for s, h, g, p, k in self._db.execute(
                    "SELECT seq, entry_hash, sig IS NOT NULL, prev, kind FROM pending "
                    "WHERE device_id=? AND seq>=? AND seq<=? ORDER BY seq, entry_hash",
                    (device_id, lo, hi))]

    def next_pending_seq(self, device_id: str, lo: int, kind: int | None = None
                         ) -> int | None:
        row = self._db.execute(
            "SELECT min(seq) FROM pending WHERE device_id=? AND seq>=?" + (
                "" if kind is None else " AND kind=?"),
            (device_id, lo) if kind is None else (device_id, lo, kind)).fetchone()
        return None if row[0] is None else int(row[0])

    def pending_rev(self, device_id: str) -> int:
        row = self._db.execute("SELECT pending_rev FROM devices WHERE device_id=?",
                               (device_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def held_shape(self, device_id: str) -> str | None:
        row = self._db.execute("SELECT held_shape FROM devices WHERE device_id=?",
                               (device_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def set_held_shape(self, device_id: str, shape: str) -> None:
        self._w().execute("UPDATE devices SET held_shape=? WHERE device_id=?",
                          (shape, device_id))

    def _bump(self, devices: Iterable[str]) -> None:
        self._w().executemany("UPDATE devices SET pending_rev=pending_rev+1 WHERE "
                              "device_id=?", [(d,) for d in sorted(set(devices))])

    def add_pending(self, rows: Sequence[PendingRow]) -> None:
        self._w().executemany("INSERT OR IGNORE INTO pending VALUES (?,?,?,?,?,?,?,?)",
                              rows)
        self._bump(r[0] for r in rows)

    def sign_pending(self, device_id: str, seq: int, entry_hash: bytes, sig: bytes) -> None:
        self._w().execute("UPDATE pending SET sig=? WHERE device_id=? AND seq=? AND "
                          "entry_hash=?", (sig, device_id, seq, entry_hash))
        self._bump((device_id,))

    def drop_pending(self, keys: Sequence[tuple[str, int, bytes]]) -> None:
        self._w().executemany("DELETE FROM pending WHERE device_id=? AND seq=? AND "
                              "entry_hash=?", keys)
        self._bump(k[0] for k in keys)

    # -- device checkpoints --------------------------------------------------------------

    def add_device_checkpoint(self, device_id: str, cose_hash: bytes, cose: bytes,
                              nonce: bytes | None, seq: int, head: bytes) -> bool:
        cur = self._w().execute("INSERT OR IGNORE INTO dev_checkpoints VALUES (?,?,?,?,?,?)",
                                (device_id, cose_hash, cose, nonce, seq, head))
        return cur.rowcount == 1

    def device_checkpoints(self, device_id: str, lo: int = 0, hi: int = MAX_SEQ
                           ) -> list[DeviceCheckpoint]:
        return [DeviceCheckpoint(int(s), bytes(h), bytes(c)) for s, h, c in self._db.execute(
            "SELECT seq, head, cose FROM dev_checkpoints WHERE device_id=? AND seq>=? "
            "AND seq<=? ORDER BY seq", (device_id, lo, hi))]

    def covering_checkpoint(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        row = self._db.execute(
            "SELECT c.seq, c.cose FROM dev_checkpoints c JOIN entries e ON "
            "e.device_id=c.device_id AND e.seq=c.seq AND e.entry_hash=c.head "
            "WHERE c.device_id=? AND c.seq>=? ORDER BY c.seq, c.cose_hash LIMIT 1",
            (device_id, seq)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # -- devices -------------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None:
        row = self._db.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE device_id=?",
                               (device_id,)).fetchone()
        return None if row is None else _device(row)

    def devices(self) -> list[Device]:
        return [_device(r) for r in self._db.execute(
            f"SELECT {_DEVICE_COLS} FROM devices ORDER BY device_id").fetchall()]

    def add_device(self, device_id: str, pub: bytes, label: str, board: str, fw: str,
                   enrolled_at: int, genesis: bytes, enroll_key: str | None = None,
                   enroll_sig: bytes | None = None) -> None:
        self._w().execute("INSERT INTO devices (device_id, pub, label, board, fw, "
                          "enrolled_at, tip_head, enroll_key, enroll_sig) VALUES "
                          "(?,?,?,?,?,?,?,?,?)", (device_id, pub, label, board, fw,
                                                  enrolled_at, genesis, enroll_key,
                                                  enroll_sig))

    def sign_enrollment(self, device_id: str, enroll_key: str, enroll_sig: bytes) -> None:
        self._w().execute("UPDATE devices SET enroll_key=?, enroll_sig=? WHERE device_id=?",
                          (enroll_key, enroll_sig, device_id))

    def set_tip(self, device_id: str, seq: int, head: bytes, t: int | None) -> None:
        self._w().execute("UPDATE devices SET tip_seq=?, tip_head=?, tip_t=? WHERE "
                          "device_id=?", (seq, head, t, device_id))

    def set_forked(self, device_id: str) -> None:
        self._w().execute("UPDATE devices SET forked=1 WHERE device_id=?", (device_id,))

    def set_revoked(self, device_id: str, at: int, reason: str) -> None:
        self._w().execute("UPDATE devices SET revoked_at=?, revoked_reason=? WHERE "
                          "device_id=?", (at, reason, device_id))

    def add_revocation(self, device_id: str, statement: bytes) -> None:
        self._w().execute("INSERT OR IGNORE INTO revocations VALUES (?,?)",
                          (device_id, statement))

    def revocations(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute(
            "SELECT statement FROM revocations ORDER BY device_id")]

    # -- evidence ------------------------------------------------------------------------

    def add_evidence(self, device_id: str, seq: int, digest: bytes, doc: str,
                     created: int) -> bool:
        cur = self._w().execute("INSERT OR IGNORE INTO evidence VALUES (?,?,?,?,?)",
                                (device_id, seq, digest, doc, created))
        return cur.rowcount == 1

    def first_evidence(self, device_id: str) -> tuple[int, str] | None:
        row = self._db.execute("SELECT seq, doc FROM evidence WHERE device_id=? ORDER BY "
                               "seq LIMIT 1", (device_id,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    # -- ledger checkpoints --------------------------------------------------------------

    def checkpoint(self, size: int) -> bytes | None:
        row = self._db.execute("SELECT note FROM checkpoints WHERE size=?", (size,)).fetchone()
        return None if row is None else bytes(row[0])

    def add_checkpoint(self, size: int, note: bytes, created: int) -> None:
        self._w().execute("INSERT INTO checkpoints VALUES (?,?,?)", (size, note, created))

    def checkpoints(self) -> list[bytes]:
        return [bytes(r[0]) for r in
                self._db.execute("SELECT note FROM checkpoints ORDER BY size").fetchall()]

    def latest_checkpoint(self) -> bytes | None:
        row = self._db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1"
                               ).fetchone()
        return None if row is None else bytes(row[0])

    # -- collectors ----------------------------------------------------------------------

    def add_collector(self, key: str, name: str, added_at: int) -> bool:
        cur = self._w().execute("INSERT OR IGNORE INTO collectors VALUES (?,?,?)",
                                (key, name, added_at))
        return cur.rowcount == 1

    def collectors(self) -> list[tuple[str, str, int]]:
        return [(str(k), str(n), int(t)) for k, n, t in self._db.execute(
            "SELECT key, name, added_at FROM collectors ORDER BY added_at, key")]

    def collector_name(self, key: str) -> str | None:
        row = self._db.execute("SELECT name FROM collectors WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- scans for verify ----------------------------------------------------------------

    def scan_meta(self) -> list[tuple[Any, Any]]:
        return self._db.execute("SELECT key, value FROM meta").fetchall()

    def scan_devices(self) -> Iterator[tuple[Any, ...]]:
        return self._scan(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY device_id")

    def scan_entries(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT leaf_index, device_id, seq, entry_hash, body, sig FROM "
                          "entries ORDER BY leaf_index")

    def scan_device_entries(self, device_id: str) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT seq, entry_hash, body, sig FROM entries WHERE device_id=? "
                          "ORDER BY seq", device_id)

    def scan_nodes(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT level, idx, hash FROM nodes ORDER BY level, idx")

    def scan_checkpoints(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT size, note, created FROM checkpoints ORDER BY size")

    def scan_device_checkpoints(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, cose_hash, cose, nonce, seq, head FROM "
                          "dev_checkpoints")

    def scan_evidence(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, seq, digest, doc FROM evidence ORDER BY "
                          "device_id, seq")

    def scan_pending(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, seq, entry_hash, body, sig, prev, kind, t "
                          "FROM pending")

    def scan_collectors(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT key, name, added_at FROM collectors")

    def scan_revocations(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, statement FROM revocations ORDER BY device_id")

    def _scan(self, sql: str, *args: Any) -> Iterator[tuple[Any, ...]]:
        """Rows as SQLite returns them, one at a time (a cursor, not a list)."""
        return iter(self._db.execute(sql, args))

    def count_bundles(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM bundles").fetchone()[0])

    # -- one consistent read (added with the PostgreSQL backend) ---------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A deferred read transaction: in WAL mode it keeps the state of its first read
        until it ends, while writers go on committing to the WAL."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self._db.execute("ROLLBACK")      # nothing to keep: it only read

    # -- incremental reconcile: bundles seen, per-collector cursors -----------------------

    def bundle_seen(self, digest: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM bundles WHERE digest=?",
                                (digest,)).fetchone() is not None

    def add_bundle(self, digest: bytes, collector: str, at: int,
                   seqs: Sequence[tuple[str, int]]) -> None:
        db = self._w()
        db.execute("INSERT OR IGNORE INTO bundles VALUES (?,?,?)", (digest, collector, at))
        if collector:
            db.executemany("INSERT INTO cursors VALUES (?,?,?) ON CONFLICT (collector, "
                           "device_id) DO UPDATE SET seq=max(seq, excluded.seq)",
                           [(collector, d, s) for d, s in seqs])

    def cursor(self, collector: str) -> dict[str, int]:
        return {str(d): int(s) for d, s in self._db.execute(
            "SELECT device_id, seq FROM cursors WHERE collector=? ORDER BY device_id",
            (collector,))}

    def scan_bundles(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT digest, collector, reconciled_at FROM bundles")

    def scan_cursors(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT collector, device_id, seq FROM cursors")
