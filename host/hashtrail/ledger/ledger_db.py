"""The ledger file: one SQLite database holding the device registry, the Merkle log and
its signed checkpoints, revocations and fork evidence (docs/LEDGER.md).

Why SQLite with stored subtree hashes: the ledger must stay consistent when killed at
any point and must serve O(log n) proofs at a million leaves. Every change happens in
one `BEGIN IMMEDIATE` transaction (writers queue on a busy timeout instead of failing
or interleaving), and the tree keeps one row per complete subtree (`nodes`), so a proof
reads at most ~2 log2(n) rows through `merkle`'s `get(level, index)` callable.

The ledger's Ed25519 note key is NOT in the file: `ledger init` writes it to a key file
of its own (hashtrail.ledger_key) and the ledger keeps only the verifier key
(`meta.verifier`), so a copy of the ledger file cannot sign. `Ledger.open` gives a ledger
that reads (and enrolls, trusts, revokes) but cannot sign; `Ledger.open_signing` also
loads the key file and refuses one that is not this ledger's key. A ledger from before
this rule (`meta.signer`) migrates on its first signing open: the key is written to the
key file (0600), then removed from the ledger, and `migrated` names the file. Reading
never migrates.

`collectors` lists the collector identity keys the operator trusts (`ledger trust`):
only bundles signed by one of them may enroll devices (docs/BUNDLE.md). A ledger made
before that table existed gets it, empty, when opened.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from hashtrail import sqlite_file
from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.formats import note
from hashtrail.formats.keys import parse_device_id
from hashtrail.formats.leaf import leaf_bytes
from hashtrail.ledger import merkle
from hashtrail.ledger.ledger_key import LedgerKeyError, key_path, read_key, write_key

_BUSY_MS = 60_000
# Bound parameters per multi-row INSERT (insert_rows): under 999, the limit of SQLite
# builds before 3.32, so any SQLite the sqlite3 module links to accepts the statement.
_MAX_PARAMS = 900
_SCHEMA_VERSION = "1"

_COLLECTORS = """CREATE TABLE IF NOT EXISTS collectors (key TEXT PRIMARY KEY,
        name TEXT NOT NULL, added_at INTEGER NOT NULL)"""

_SCHEMA = [
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
    _COLLECTORS,
]


class LedgerError(HashtrailError):
    hint = "check the --ledger path; make a ledger with `hashtrail ledger init`"


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


def insert_rows(db: sqlite3.Connection, table: str,
                rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT rows of one width into `table` (one of this module's own table names),
    a few hundred rows per statement.

    Why: `executemany` steps one single-row statement per row, and a reconcile of a
    large bundle writes a row per entry and about two per Merkle leaf, all of it on the
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


class Ledger:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.db = conn
        self.path = path
        self._signer: note.Signer | None = None
        self.key_file: Path | None = None       # the key file, once loaded
        self.migrated: Path | None = None       # set when open_signing moved the key out

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Ledger:
        p = Path(path)
        led = cls(sqlite_file.open_existing(p, _BUSY_MS, sqlite_file.LEDGER), p)
        row = led._meta("schema")
        if row != _SCHEMA_VERSION:
            led.close()
            raise LedgerError(f"{p} is not a hashtrail ledger (schema {row!r})")
        if led.db.execute("SELECT 1 FROM sqlite_master WHERE name='collectors'").fetchone() \
                is None:
            led.db.execute(_COLLECTORS)      # a ledger from before collector trust
        return led

    @classmethod
    def open_signing(cls, path: str | os.PathLike[str],
                     key_file: str | os.PathLike[str] | None = None) -> Ledger:
        """Open to sign: load the ledger key (ledger_key.key_path: --key-file, env,
        <ledger>.key) and check it is this ledger's; migrate a key still kept in the
        file. Without a usable key: LedgerKeyError, and nothing was written."""
        kp = key_path(path, key_file)
        signer = read_key(kp)        # before the ledger: a bad key file changes nothing
        led = cls.open(path)
        try:
            legacy = led._meta("signer")
            if signer is None and legacy is None:
                raise LedgerKeyError(
                    f"no ledger key at {kp}: signing needs the key file `ledger init` "
                    f"wrote (give --key-file or set HASHTRAIL_LEDGER_KEY); a copy of the "
                    f"ledger file cannot sign")
            if signer is None:
                assert legacy is not None
                signer = note.Signer.from_string(legacy)
                try:
                    write_key(kp, signer)
                except LedgerKeyError:
                    # another signing command migrated it a moment ago: use its file
                    signer = read_key(kp)
                    if signer is None:
                        raise
                led.migrated = kp
            if signer.verifier().to_string() != led.verifier.to_string():
                raise LedgerKeyError(
                    f"{kp} holds ledger key {signer.verifier().to_string()}, but this "
                    f"ledger's verifier key is {led.verifier.to_string()}: not its key")
            if legacy is not None:
                if led.migrated is None:
                    led.migrated = kp     # key file already written (an earlier try)
                led._forget_legacy_signer(signer)
        except BaseException:
            led.close()
            raise
        led._signer, led.key_file = signer, kp
        return led

    def _forget_legacy_signer(self, signer: note.Signer) -> None:
        """Keep the verifier key, drop the signer, and leave no copy of it on disk:
        secure_delete zeroes the freed cell, the TRUNCATE checkpoint empties the WAL
        that still held the page as it was."""
        self.db.execute("PRAGMA secure_delete=ON")
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('verifier', ?)",
                       (signer.verifier().to_string(),))
            db.execute("DELETE FROM meta WHERE key='signer'")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @classmethod
    def create(cls, path: str | os.PathLike[str], origin: str, *,
               key_file: str | os.PathLike[str] | None = None,
               signer: note.Signer | None = None) -> Ledger:
        """A new ledger file and its key file (ledger_key.key_path; mode 0600, never
        overwritten); the ledger keeps only the verifier key. Returns it open to sign."""
        p = Path(path)
        note.check_origin(origin)
        if p.exists():
            raise ConfigError(f"{p} already exists", hint="pick a new file for a new ledger")
        sqlite_file.check_new(p, sqlite_file.LEDGER)
        kp = key_path(p, key_file)
        if kp.exists():
            raise LedgerKeyError(f"refusing to overwrite the existing key file {kp}: move "
                                 "it away or name another with --key-file")
        signer = signer or note.Signer.generate(origin)
        if signer.name != origin:
            raise ConfigError("the ledger key's name must be the checkpoint origin")
        write_key(kp, signer)
        try:
            led = cls._connect(p)
            with led.tx() as db:
                for stmt in _SCHEMA:
                    db.execute(stmt)
                db.executemany("INSERT INTO meta VALUES (?,?)", [
                    ("schema", _SCHEMA_VERSION), ("origin", origin),
                    ("verifier", signer.verifier().to_string()), ("size", "0")])
        except BaseException:
            kp.unlink()          # no ledger, so no key for it either
            raise
        led._signer, led.key_file = signer, kp
        led.sign_checkpoint()
        return led

    @classmethod
    def _connect(cls, p: Path) -> Ledger:
        try:
            conn = sqlite_file.connect(p, _BUSY_MS)
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"cannot open ledger {p}: {e}") from e
        return cls(conn, p)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with sqlite_file.transaction(self.db) as db:
            yield db

    def _meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            return None
        return None if row is None else str(row[0])

    # -- identity and tree ---------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self._meta("origin") or ""

    @property
    def verifier(self) -> note.Verifier:
        """The ledger's public key, as kept in the file (a ledger from before the key
        file rule: derived from the signer it still holds, without writing anything)."""
        text = self._meta("verifier")
        if text is not None:
            return note.Verifier.from_string(text)
        legacy = self._meta("signer")
        if legacy is None:
            raise LedgerError(f"{self.path} holds no ledger verifier key",
                              hint="the ledger file is damaged; run `hashtrail verify`")
        return note.Signer.from_string(legacy).verifier()

    @property
    def can_sign(self) -> bool:
        return self._signer is not None

    def require_signer(self) -> note.Signer:
        """The loaded ledger key; LedgerKeyError when opened without one (Ledger.open)."""
        if self._signer is None:
            raise LedgerKeyError(f"{self.path} was opened without its ledger key: signing "
                                 "needs Ledger.open_signing (the key file)")
        return self._signer

    @property
    def size(self) -> int:
        return int(self._meta("size") or 0)

    def node(self, level: int, index: int) -> bytes:
        row = self.db.execute("SELECT hash FROM nodes WHERE level=? AND idx=?",
                              (level, index)).fetchone()
        if row is None:
            raise LedgerError(f"ledger tree is missing node ({level}, {index})",
                              hint="the ledger file is damaged; run `hashtrail verify`")
        return bytes(row[0])

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.node, self.size if size is None else size)

    def append_leaf(self, db: sqlite3.Connection, leaf: bytes) -> int:
        """Inside a transaction: add one leaf and its completed subtrees; returns its index."""
        return self.append_leaves(db, [leaf])

    def append_leaves(self, db: sqlite3.Connection, leaves: list[bytes]) -> int:
        """Inside a transaction: add leaves in order; returns the index of the first.

        The new subtree hashes are computed in memory (a left sibling comes from this
        batch or, at most once per level, from the stored tree) and written with one
        multi-row insert (insert_rows), so a batch costs a statement per few hundred
        rows instead of three per leaf."""
        first = self.size
        made: dict[tuple[int, int], bytes] = {}
        rows: list[tuple[int, int, bytes]] = []
        leaf_hash, node_hash = merkle.leaf_hash, merkle.node_hash
        for index, leaf in enumerate(leaves, first):
            h = leaf_hash(leaf)
            level, i = 0, index
            rows.append((0, i, h))
            while i & 1:
                left = made.get((level, i - 1))
                h = node_hash(self.node(level, i - 1) if left is None else left, h)
                level, i = level + 1, i >> 1
                rows.append((level, i, h))
            made[(level, i)] = h    # the top new node: a left child, read back later
        if rows:
            insert_rows(db, "nodes", rows)
            db.execute("UPDATE meta SET value=? WHERE key='size'", (str(first + len(leaves)),))
        return first

    def leaf(self, index: int) -> bytes:
        row = self.db.execute("SELECT device_id, seq, body FROM entries WHERE leaf_index=?",
                              (index,)).fetchone()
        if row is None:
            raise LedgerError(f"no leaf {index} in the ledger")
        return leaf_bytes(row[0], int(row[1]), bytes(row[2]))

    # -- accepted entries (read-only: what an inclusion proof carries) ---------------------

    def entry(self, device_id: str, seq: int) -> StoredEntry | None:
        """The accepted entry `seq` of a device, or None."""
        row = self.db.execute("SELECT leaf_index, entry_hash, body, sig FROM entries "
                              "WHERE device_id=? AND seq=?", (device_id, seq)).fetchone()
        if row is None:
            return None
        return StoredEntry(int(row[0]), bytes(row[1]), bytes(row[2]),
                           None if row[3] is None else bytes(row[3]))

    def entry_bodies(self, device_id: str, lo: int, hi: int) -> list[bytes]:
        """The accepted entry bytes of seqs lo..hi (inclusive), in seq order."""
        return [bytes(r[0]) for r in self.db.execute(
            "SELECT body FROM entries WHERE device_id=? AND seq BETWEEN ? AND ? ORDER BY seq",
            (device_id, lo, hi))]

    def covering_checkpoint(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        """(seq, COSE bytes) of the first stored device checkpoint at or after `seq`
        whose head is the accepted entry at its seq: the device's signed word over the
        accepted chain up to it. None if no such checkpoint is stored."""
        row = self.db.execute(
            "SELECT c.seq, c.cose FROM dev_checkpoints c JOIN entries e ON "
            "e.device_id=c.device_id AND e.seq=c.seq AND e.entry_hash=c.head "
            "WHERE c.device_id=? AND c.seq>=? ORDER BY c.seq, c.cose_hash LIMIT 1",
            (device_id, seq)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # -- checkpoints ---------------------------------------------------------------------

    def sign_checkpoint(self) -> bytes:
        """Sign (size, root) now with the loaded key; stored once per size, so repeating
        it is a no-op (and needs no key)."""
        with self.tx() as db:
            size = self.size
            row = db.execute("SELECT note FROM checkpoints WHERE size=?", (size,)).fetchone()
            if row is not None:
                return bytes(row[0])
            s = self.require_signer()
            data = note.sign_checkpoint(note.Checkpoint(self.origin, size, self.root(size)),
                                        [s])
            db.execute("INSERT INTO checkpoints VALUES (?,?,?)", (size, data, int(time.time())))
            return data

    def checkpoints(self) -> list[bytes]:
        return [bytes(r[0]) for r in
                self.db.execute("SELECT note FROM checkpoints ORDER BY size").fetchall()]

    def latest_checkpoint(self) -> bytes:
        row = self.db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1"
                              ).fetchone()
        if row is None:
            raise LedgerError("the ledger has no signed checkpoint yet")
        return bytes(row[0])

    # -- trusted collectors --------------------------------------------------------------

    def trust_collector(self, key: note.Verifier, name: str) -> bool:
        """Let bundles signed by `key` enroll devices; False if it was trusted already."""
        with self.tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO collectors VALUES (?,?,?)",
                             (key.to_string(), name, int(time.time())))
            return cur.rowcount == 1

    def trusted_collectors(self) -> list[tuple[str, str, int]]:
        """(verifier key, name, added at) of every trusted collector, oldest first."""
        return [(str(k), str(n), int(t)) for k, n, t in self.db.execute(
            "SELECT key, name, added_at FROM collectors ORDER BY added_at, key")]

    def collector_name(self, key: note.Verifier) -> str | None:
        """The name under which `key` is trusted, or None if it is not."""
        row = self.db.execute("SELECT name FROM collectors WHERE key=?",
                              (key.to_string(),)).fetchone()
        return None if row is None else str(row[0])

    # -- devices -------------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None:
        row = self.db.execute("SELECT * FROM devices WHERE device_id=?",
                              (device_id,)).fetchone()
        return None if row is None else _device(row)

    def devices(self) -> list[Device]:
        return [_device(r) for r in
                self.db.execute("SELECT * FROM devices ORDER BY device_id").fetchall()]

    def fork_evidence(self, device_id: str) -> str | None:
        """The device's first fork-evidence document (lowest seq), None if it has none."""
        row = self.db.execute("SELECT doc FROM evidence WHERE device_id=? ORDER BY seq "
                              "LIMIT 1", (parse_device_id(device_id),)).fetchone()
        return None if row is None else str(row[0])

    def revoke(self, device_id: str, reason: str) -> Device:
        device_id = parse_device_id(device_id)
        with self.tx() as db:
            dev = self.device(device_id)
            if dev is None:
                raise LedgerError(f"device {device_id} is not enrolled in this ledger")
            if dev.revoked_at is None:
                db.execute("UPDATE devices SET revoked_at=?, revoked_reason=? WHERE "
                           "device_id=?", (int(time.time()), reason, device_id))
        out = self.device(device_id)
        assert out is not None
        return out


def _device(row: tuple[Any, ...]) -> Device:
    (did, pub, label, board, fw, enrolled, tip_seq, tip_head, tip_t, forked, rev_at,
     rev_reason) = row
    return Device(str(did), bytes(pub), str(label), str(board), str(fw), int(enrolled),
                  int(tip_seq), bytes(tip_head), None if tip_t is None else int(tip_t),
                  bool(forked), None if rev_at is None else int(rev_at),
                  None if rev_reason is None else str(rev_reason))
