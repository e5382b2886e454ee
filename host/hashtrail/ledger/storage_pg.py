"""The ledger in a PostgreSQL database (psycopg 3): the only module that speaks the
ledger's SQL for PostgreSQL, beside storage_sqlite for the embedded file.

Why PostgreSQL: several collectors on several machines reconcile into one ledger at
once. The ledger is an append-only log with one tree, so appends need one sequencer:
every `transaction()` takes one transaction-scoped advisory lock (`_LOCK`) before its
first statement, so writers run one after another, each seeing everything the one
before it committed (READ COMMITTED reads after the lock). A killed writer's
transaction is rolled back by the server and its lock released; nothing half-written
stays. Reads outside a transaction (verify, prove) each see one committed state.

What marks a database as a hashtrail ledger: the table `hashtrail_kind` with the row
`ledger`. A database that holds other tables and not that one (another program's, or a
collector store's) is refused with one line; so is one at a schema newer than this
code. The schema version is the `meta` row `schema`, as in SQLite; `MIGRATIONS` run in
order, all in one transaction, so a new database and an upgraded one come out of the
same steps. PostgreSQL types are strict (BIGINT, BYTEA, TEXT): a row of the wrong type
cannot be stored, which verify's type checks then never meet.

Bulk writes: `nodes` and `entries` go in by binary COPY (a reconcile writes ~2 rows per
accepted entry), `pending` by binary COPY into a temporary table and one INSERT ... ON
CONFLICT DO NOTHING from it (COPY alone cannot keep a row already held), and held
entries are dropped by DELETEs over arrays of their keys: a device whose entries
span several reconcile chunks before a signature covers them has each of them held,
then dropped, once.

Every psycopg error becomes `LedgerDatabaseError` (exit 2) naming the database (its
password hidden) on one line: an unreachable server, wrong credentials, a missing
database, a connection dropped mid-reconcile (its transaction rolled back by the
server, so a rerun completes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import sql as pgsql

from hashtrail.errors import ConfigError, InputError
from hashtrail.formats.entry import REVERTED_MARK, UPDATE_MARK
from hashtrail.ledger.backend import display
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

T = TypeVar("T")

# pg_advisory_xact_lock key of the ledger's one writer lock: "HTlg" (as SQLite's
# application_id), so another program's advisory locks on the same database do not
# collide with it by accident.
_LOCK = int.from_bytes(b"HTlg", "big")
KIND_TABLE = "hashtrail_kind"
KIND = "ledger"
_CONNECT_TIMEOUT = 10
# A writer that vanishes while holding the ledger's lock (its machine lost power, its
# network cut) must not stop every other collector for good: the server probes the
# session (TCP keepalives, ~1 min) and ends one left idle inside a transaction this long.
# A reconcile's transaction is busy between statements only for one device's checks.
SESSION = {"idle_in_transaction_session_timeout": "600s", "tcp_keepalives_idle": "30",
           "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}
# a server-side cursor hands verify this many rows at a time (bounded memory)
_SCAN_CHUNK = 5000
# held entries dropped by one statement
_KEYS = 5000

HINT = ("check the URL (postgresql://USER@HOST/DB), that the server runs and the database "
        "exists (`createdb`); make a ledger with `hashtrail ledger init --ledger URL`")


class LedgerDatabaseError(ConfigError):
    """The ledger database could not be used: the server, the credentials, the database,
    or the connection. Exit 2; whatever transaction was open is rolled back."""

    hint = HINT


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0].strip()


class Migration(NamedTuple):
    """One step of the PostgreSQL schema (the counterpart of sqlite_file.Migration):
    its statements, then `fill` (rows the new columns need computed in Python)."""

    version: int
    why: str
    statements: tuple[str, ...]
    fill: Callable[[psycopg.Connection[Any]], None] | None = None


_V1 = (
    f"CREATE TABLE {KIND_TABLE} (kind TEXT PRIMARY KEY)",
    f"INSERT INTO {KIND_TABLE} VALUES ('{KIND}')",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE devices (device_id TEXT PRIMARY KEY, pub BYTEA NOT NULL,
        label TEXT NOT NULL, board TEXT NOT NULL, fw TEXT NOT NULL,
        enrolled_at BIGINT NOT NULL, tip_seq BIGINT NOT NULL DEFAULT -1,
        tip_head BYTEA NOT NULL, tip_t BIGINT, forked INTEGER NOT NULL DEFAULT 0,
        revoked_at BIGINT, revoked_reason TEXT)""",
    """CREATE TABLE entries (device_id TEXT NOT NULL, seq BIGINT NOT NULL,
        leaf_index BIGINT NOT NULL UNIQUE, entry_hash BYTEA NOT NULL, body BYTEA NOT NULL,
        sig BYTEA, PRIMARY KEY (device_id, seq))""",
    """CREATE TABLE pending (device_id TEXT NOT NULL, seq BIGINT NOT NULL,
        entry_hash BYTEA NOT NULL, body BYTEA NOT NULL, sig BYTEA,
        PRIMARY KEY (device_id, seq, entry_hash))""",
    """CREATE TABLE dev_checkpoints (device_id TEXT NOT NULL, cose_hash BYTEA NOT NULL,
        cose BYTEA NOT NULL, nonce BYTEA, seq BIGINT NOT NULL, head BYTEA NOT NULL,
        PRIMARY KEY (device_id, cose_hash))""",
    "CREATE INDEX dev_checkpoints_seq ON dev_checkpoints (device_id, seq)",
    """CREATE TABLE nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,
        hash BYTEA NOT NULL, PRIMARY KEY (level, idx))""",
    """CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, note BYTEA NOT NULL,
        created BIGINT NOT NULL)""",
    """CREATE TABLE evidence (device_id TEXT NOT NULL, seq BIGINT NOT NULL,
        digest BYTEA NOT NULL, doc TEXT NOT NULL, created BIGINT NOT NULL,
        PRIMARY KEY (device_id, digest))""",
    """CREATE TABLE bundles (digest BYTEA PRIMARY KEY, collector TEXT NOT NULL,
        reconciled_at BIGINT NOT NULL)""",
    """CREATE TABLE collectors (key TEXT PRIMARY KEY, name TEXT NOT NULL,
        added_at BIGINT NOT NULL)""",
)

# `bundles` (made by version 1) becomes the record of reconciled bundles; `cursors` says,
# per collector key and device, up to which seq that collector's signed bundles have
# been reconciled (docs/BUNDLE.md). The same step as SQLite's schema 3.
_V2 = (
    """CREATE TABLE cursors (collector TEXT NOT NULL, device_id TEXT NOT NULL,
        seq BIGINT NOT NULL, PRIMARY KEY (collector, device_id))""",
)

# ledger-signed revocation statements (as SQLite schema 4)
_V3 = (
    """CREATE TABLE revocations (device_id TEXT PRIMARY KEY, statement BYTEA NOT NULL)""",
)
# A held entry keeps the fields the chain walk reads (storage.HeldEntry), so a reconcile
# no longer decodes every held entry of the devices it touches; `_fill_walk` gives the
# rows already held theirs. The same step as SQLite's schema 5.
_V4 = tuple(f"ALTER TABLE pending ADD COLUMN {name} {kind}"
            for name, kind in (("prev", "BYTEA"), ("kind", "INTEGER"), ("t", "BIGINT")))


def _fill_walk(db: psycopg.Connection[Any]) -> None:
    rows = db.execute("SELECT device_id, seq, entry_hash, body FROM pending").fetchall()
    todo = [(*w, d, s, h) for d, s, h, b in rows if (w := walk_fields(b)) is not None]
    if todo:
        with db.cursor() as cur:
            cur.executemany("UPDATE pending SET prev=%s, kind=%s, t=%s WHERE device_id=%s "
                            "AND seq=%s AND entry_hash=%s", todo)


# The tree no longer keeps leaf hashes (level 0): a leaf's hash is computed from its
# entries row (Ledger.node). The same step as SQLite's schema 6.
_V5 = ("DELETE FROM nodes WHERE level=0",)


# A device keeps its enrolling collector's signature over the enrollment and that
# collector's key (formats.enrollment); devices enrolled before stay unsigned (NULL).
# The same step as SQLite's schema 7 (which, like it, tolerates columns already there).
_V6 = ("ALTER TABLE devices ADD COLUMN IF NOT EXISTS enroll_key TEXT",
       "ALTER TABLE devices ADD COLUMN IF NOT EXISTS enroll_sig BYTEA")


# Nor level-1 nodes: each is computed from its two leaves' entries rows
# (ledger_db.STORED_LOWEST). The same step as SQLite's schema 8.
_V7 = ("DELETE FROM nodes WHERE level=1",)

# A revision of each device's held rows, raised by every write to them (as SQLite's
# schema 9): reconcile reads one row instead of counting them.
_V8 = ("ALTER TABLE devices ADD COLUMN IF NOT EXISTS pending_rev BIGINT NOT NULL DEFAULT 0",)

# The shape of each device's held rows, as reconcile learnt it (as SQLite's schema 10).
_V9 = ("ALTER TABLE devices ADD COLUMN IF NOT EXISTS held_shape TEXT",)


MIGRATIONS = [
    Migration(1, "the ledger (as SQLite schema 2): marker, meta, devices, entries, pending,"
                 " device checkpoints, nodes, checkpoints, evidence, bundles, collectors",
              _V1),
    Migration(2, "reconciled bundles and per-collector cursors (as SQLite schema 3)", _V2),
    Migration(3, "signed revocation statements (as SQLite schema 4)", _V3),
    Migration(4, "held entries keep what the chain walk reads (as SQLite schema 5)", _V4,
              _fill_walk),
    Migration(5, "leaf hashes come from the entries rows (as SQLite schema 6)", _V5),
    Migration(6, "devices keep their collector's enrollment signature (as SQLite schema "
                 "7)", _V6),
    Migration(7, "level-1 tree nodes come from the entries rows (as SQLite schema 8)", _V7),
    Migration(8, "a revision of each device's held rows (as SQLite schema 9)", _V8),
    Migration(9, "the shape of each device's held rows (as SQLite schema 10)", _V9),
]
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = frozenset({KIND_TABLE, "meta", "devices", "entries", "pending", "dev_checkpoints",
                    "nodes", "checkpoints", "evidence", "bundles", "collectors",
                    "cursors", "revocations"})
# tables that tell a hashtrail collector store (storage_sqlite of the collector)
_STORE_TABLES = frozenset({"enrollments", "state"})

_PENDING_COLS = "device_id, seq, entry_hash, body, sig, prev, kind, t"
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


def _blob(b: Any) -> bytes | None:
    return None if b is None else bytes(b)


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode (transactions are explicit, `transaction()`),
    with the `SESSION` settings; LedgerDatabaseError naming the database when it cannot
    be had."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT,
                               application_name="hashtrail")
        try:
            for name, value in SESSION.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        except BaseException:
            conn.close()
            raise
        return conn
    except psycopg.Error as e:
        raise LedgerDatabaseError(f"cannot connect to ledger database {display(url)}: "
                                  f"{_first_line(e)}") from None
    except Exception as e:     # a malformed URL is refused by libpq's parser
        raise LedgerDatabaseError(f"{display(url)} is not a usable PostgreSQL URL: "
                                  f"{_first_line(e)}") from None


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {str(r[0]) for r in conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema()")}


def _kind(conn: psycopg.Connection[Any], tables: set[str]) -> str | None:
    if KIND_TABLE not in tables:
        return None
    row = conn.execute(f"SELECT kind FROM {KIND_TABLE} LIMIT 1").fetchone()
    return None if row is None else str(row[0])


class PgLedgerStorage:
    """storage.LedgerStorage on a PostgreSQL database (see the module doc)."""

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self._db = conn
        self.url = url
        self.name = display(url)
        self._scans = 0          # names this connection's server-side cursors apart

    # -- opening, creating, upgrading ----------------------------------------------------

    @classmethod
    def open(cls, url: str) -> PgLedgerStorage:
        """An existing ledger database, upgraded to this schema; a database that is not
        a ledger is InputError (exit 2) with nothing created or changed."""
        conn = connect(url)
        try:
            st = cls(conn, url)
            st._guard(st._check_kind)
            st._guard(st._migrate)
        except BaseException:
            conn.close()
            raise
        return st

    @classmethod
    def check_new(cls, url: str) -> None:
        """InputError unless the database can become a new ledger: it exists and holds
        no tables (in its current schema). Checked before the key file is written."""
        conn = connect(url)
        try:
            st = cls(conn, url)
            st._guard(st._check_empty)
        finally:
            conn.close()

    @classmethod
    def create(cls, url: str, meta: dict[str, str]) -> PgLedgerStorage:
        """The ledger's tables and its first `meta` rows, in one transaction: no ledger
        without them is ever visible. Refused (InputError) unless the database is empty."""
        conn = connect(url)
        try:
            st = cls(conn, url)

            def make() -> None:
                with st.transaction():
                    st._check_empty()      # again under the lock: another init may have run
                    st._apply(0)
                    with st._db.cursor() as cur:
                        cur.executemany("INSERT INTO meta VALUES (%s, %s)", list(meta.items()))
            st._guard(make)
        except BaseException:
            conn.close()
            raise
        return st

    def _refuse(self, problem: str) -> InputError:
        return InputError(f"{self.name}: {problem}; expected a hashtrail ledger",
                          hint="a ledger is made by `hashtrail ledger init --ledger URL` "
                               "in a database of its own (`createdb`)")

    def _check_empty(self) -> None:
        tables = _tables(self._db)
        if not tables:
            return
        kind = _kind(self._db, tables)
        if kind == KIND:
            raise InputError(f"{self.name}: already holds a hashtrail ledger; expected an "
                             "empty database for a new ledger",
                             hint="pick a new database for a new ledger (`createdb`)")
        raise self._refuse(self._what_else(tables, kind) + ", not an empty database")

    def _what_else(self, tables: set[str], kind: str | None) -> str:
        if kind is not None:
            return f"holds a hashtrail {kind}"
        if _STORE_TABLES <= tables:
            return "holds a hashtrail collector store"
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        return f"holds another program's tables ({shown})"

    def _check_kind(self) -> None:
        tables = _tables(self._db)
        if not tables:
            raise self._refuse("the database is empty (no ledger made in it yet)")
        kind = _kind(self._db, tables)
        if kind != KIND:
            raise self._refuse(self._what_else(tables, kind))

    def _version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        text = None if row is None else row[0]
        if not isinstance(text, str) or not text.isdigit():
            raise self._refuse(f"is damaged: schema {text!r} is not a version number")
        v = int(text)
        if v > SCHEMA_VERSION:
            raise InputError(f"{self.name}: a hashtrail ledger at schema {v}, newer than "
                             f"this hashtrail reads ({SCHEMA_VERSION})",
                             hint="open it with the hashtrail version that wrote it")
        return v

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:
            missing = TABLES - _tables(self._db)
            if missing:
                raise self._refuse("is damaged: no table " + ", ".join(sorted(missing)))
            return
        with self.transaction():
            self._apply(self._version())      # again under the lock

    def _apply(self, was: int) -> None:
        """Run the migrations after version `was` (inside a transaction). Their
        statements go to the server together, up to each `fill`: one round trip, not
        one a statement (a new ledger's were 25, most of its creation time)."""
        batch: list[str] = []
        for m in MIGRATIONS[was:]:
            batch += m.statements
            if m.fill is not None:
                self._run_batch(batch)
                batch = []
                m.fill(self._db)
        self._run_batch(batch)
        if was < SCHEMA_VERSION:
            self._db.execute("INSERT INTO meta VALUES ('schema', %s) ON CONFLICT (key) DO "
                             "UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))

    def _run_batch(self, statements: list[str]) -> None:
        # Without parameters psycopg sends the text as one simple query, which may hold
        # several statements; the server runs them in order, inside our transaction.
        if statements:
            self._db.execute(";\n".join(statements).encode())

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except psycopg.Error as e:
            raise self._error(e) from None

    def _error(self, e: psycopg.Error) -> LedgerDatabaseError:
        return LedgerDatabaseError(f"ledger database {self.name}: {_first_line(e)} "
                                   "(nothing of the interrupted work was written)")

    # -- the contract ----------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN, the ledger's advisory lock (writers queue here), ..., COMMIT; rolled
        back on any exception. A psycopg error (a dropped connection, say) becomes
        LedgerDatabaseError: the server rolls the transaction back."""
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                yield
        except psycopg.Error as e:
            raise self._error(e) from None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A READ ONLY, REPEATABLE READ transaction: one snapshot for every read in it,
        taking no lock, so writers go on committing meanwhile."""
        if self._db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            yield
            return
        try:
            with self._db.transaction():
                self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield
        except psycopg.Error as e:
            raise self._error(e) from None

    def _q(self, query: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """Run one statement; a psycopg error is LedgerDatabaseError (one line)."""
        try:
            return self._db.execute(query, args)
        except psycopg.Error as e:
            raise self._error(e) from None

    def _one(self, query: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self._q(query, args).fetchone()
        return None if row is None else tuple(row)

    def _qb(self, query: str, args: Sequence[Any], make: Callable[[Any], T]) -> list[T]:
        """`make` of each row of one statement read in binary: each column already its
        Python type (BYTEA bytes, BIGINT and INTEGER int, NULL None). Rows are made one
        at a time, never all as tuples first (held entries can be many)."""
        try:
            with self._db.cursor(binary=True) as cur:
                cur.execute(query, args)
                return [make(r) for r in cur]
        except psycopg.Error as e:
            raise self._error(e) from None

    def _wb(self, query: str, args: Sequence[Any]) -> None:
        """A write with binary parameters (`%b`), inside transaction()."""
        self._in_tx()
        try:
            with self._db.cursor(binary=True) as cur:
                cur.execute(query, args)
        except psycopg.Error as e:
            raise self._error(e) from None

    def _w(self, query: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """A write: only inside transaction() (the contract)."""
        self._in_tx()
        return self._q(query, args)

    def _in_tx(self) -> None:
        if self._db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            raise AssertionError("ledger write outside storage.transaction()")

    def _many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        self._in_tx()
        if not rows:
            return
        try:
            with self._db.cursor() as cur:
                cur.executemany(query, rows)
        except psycopg.Error as e:
            raise self._error(e) from None

    def _copy(self, table: str, cols: str, types: Sequence[str],
              rows: Sequence[Sequence[Any]]) -> None:
        """Binary COPY of rows into `table` (one of this module's tables). (Encoding the
        rows by hand with struct, instead of psycopg's write_row, measured no faster:
        the server's index upkeep is most of the time.)"""
        self._in_tx()
        if not rows:
            return
        try:
            with self._db.cursor() as cur, cur.copy(
                    f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(list(types))
                for r in rows:
                    cp.write_row(r)
        except psycopg.Error as e:
            raise self._error(e) from None

    # -- meta ----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key=%s", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._w("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET "
                "value = EXCLUDED.value", (key, value))

    def drop_legacy_signer(self, verifier: str) -> None:
        """A PostgreSQL ledger never held its signer (it was made after the key file
        rule); kept for the interface, it only drops a stray `signer` row."""
        with self.transaction():
            self.set_meta("verifier", verifier)
            self._w("DELETE FROM meta WHERE key='signer'")

    # -- tree ----------------------------------------------------------------------------

    def node(self, level: int, index: int) -> bytes | None:
        row = self._one("SELECT hash FROM nodes WHERE level=%s AND idx=%s", (level, index))
        return None if row is None else bytes(row[0])

    def nodes(self, level: int, lo: int, hi: int) -> list[bytes]:
        return [bytes(r[0]) for r in self._q(
            "SELECT hash FROM nodes WHERE level=%s AND idx BETWEEN %s AND %s ORDER BY idx",
            (level, lo, hi))]

    def add_nodes(self, rows: Sequence[NodeRow]) -> None:
        self._copy("nodes", "level, idx, hash", ("int4", "int8", "bytea"), rows)

    # -- entries -------------------------------------------------------------------------

    def add_entries(self, rows: Sequence[EntryRow]) -> None:
        self._copy("entries", "device_id, seq, leaf_index, entry_hash, body, sig",
                   ("text", "int8", "int8", "bytea", "bytea", "bytea"), rows)

    def entry(self, device_id: str, seq: int) -> StoredEntry | None:
        row = self._one("SELECT leaf_index, entry_hash, body, sig FROM entries "
                        "WHERE device_id=%s AND seq=%s", (device_id, seq))
        if row is None:
            return None
        return StoredEntry(int(row[0]), bytes(row[1]), bytes(row[2]), _blob(row[3]))

    def leaf_entry(self, index: int) -> tuple[str, int, bytes] | None:
        row = self._one("SELECT device_id, seq, body FROM entries WHERE leaf_index=%s",
                        (index,))
        return None if row is None else (str(row[0]), int(row[1]), bytes(row[2]))

    def leaf_entries(self, lo: int, hi: int) -> list[tuple[str, int, bytes]]:
        return [(str(r[0]), int(r[1]), bytes(r[2])) for r in self._q(
            "SELECT device_id, seq, body FROM entries WHERE leaf_index BETWEEN %s AND %s "
            "ORDER BY leaf_index", (lo, hi))]

    def entry_hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        return {int(s): bytes(h) for s, h in self._q(
            "SELECT seq, entry_hash FROM entries WHERE device_id=%s AND seq BETWEEN %s "
            "AND %s", (device_id, lo, hi))}

    def entry_bodies(self, device_id: str, lo: int, hi: int) -> list[bytes]:
        return [bytes(r[0]) for r in self._q(
            "SELECT body FROM entries WHERE device_id=%s AND seq BETWEEN %s AND %s "
            "ORDER BY seq", (device_id, lo, hi))]

    def update_entries(self, device_id: str, hi: int) -> list[tuple[int, bytes]]:
        return [(int(r[0]), bytes(r[1])) for r in self._q(
            "SELECT seq, body FROM entries WHERE device_id=%s AND seq<=%s AND "
            "(position(%s::bytea in body) > 0 OR position(%s::bytea in body) > 0) "
            "ORDER BY seq", (device_id, hi, UPDATE_MARK, REVERTED_MARK))]

    def first_signed_entry(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        row = self._one("SELECT seq, sig FROM entries WHERE device_id=%s AND seq>=%s "
                        "AND sig IS NOT NULL ORDER BY seq LIMIT 1", (device_id, seq))
        return None if row is None else (int(row[0]), bytes(row[1]))

    def contested_hashes(self, device_id: str) -> dict[int, bytes]:
        return {int(s): bytes(h) for s, h in self._q(
            "SELECT seq, entry_hash FROM entries WHERE device_id=%s AND seq IN "
            "(SELECT seq FROM dev_checkpoints WHERE device_id=%s UNION "
            "SELECT seq FROM pending WHERE device_id=%s)", (device_id, device_id, device_id))}

    # -- pending -------------------------------------------------------------------------

    def pending(self, device_id: str, lo: int, hi: int = MAX_SEQ) -> list[HeldEntry]:
        # binary: a chunk of a device whose signatures come later reloads every entry
        # held before it, so these rows are read many times; binary rows come as the
        # columns' Python types (no hex to decode, nothing to convert)
        return self._qb("SELECT seq, entry_hash, body, sig, prev, kind, t FROM pending "
                        "WHERE device_id=%s AND seq>=%s AND seq<=%s ORDER BY seq, entry_hash",
                        (device_id, lo, hi), HeldEntry._make)

    def pending_count(self, device_id: str, above: int = -1) -> tuple[int, int]:
        row = self._one("SELECT count(*), count(sig) FROM pending WHERE device_id=%s "
                        "AND seq>%s", (device_id, above))
        assert row is not None
        return int(row[0]), int(row[1])

    def pending_links(self, device_id: str, lo: int, hi: int
                      ) -> list[tuple[int, bytes, bool, bytes | None, int | None]]:
        # (binary, as `pending`: the columns come as their Python types)
        return self._qb("SELECT seq, entry_hash, sig IS NOT NULL, prev, kind FROM pending "
                        "WHERE device_id=%s AND seq>=%s AND seq<=%s ORDER BY seq, entry_hash",
                        (device_id, lo, hi), tuple)

    def next_pending_seq(self, device_id: str, lo: int, kind: int | None = None
                         ) -> int | None:
        row = self._one("SELECT min(seq) FROM pending WHERE device_id=%s AND seq>=%s" + (
            "" if kind is None else " AND kind=%s"),
            (device_id, lo) if kind is None else (device_id, lo, kind))
        return None if row is None or row[0] is None else int(row[0])

    def add_pending(self, rows: Sequence[PendingRow]) -> None:
        # binary COPY, which cannot skip a row already held, into a temporary table
        # emptied at every commit, then one INSERT ... ON CONFLICT DO NOTHING: half the
        # time of pipelined INSERTs (the temporary table is made once per session, and
        # made again after a rolled-back transaction took it away; emptied after use,
        # as one transaction may hold entries more than once)
        if not rows:
            return
        self._w("CREATE TEMPORARY TABLE IF NOT EXISTS pending_in (LIKE pending) "
                "ON COMMIT DELETE ROWS")
        self._copy("pending_in", _PENDING_COLS, ("text", "int8", "bytea", "bytea", "bytea",
                                                  "bytea", "int4", "int8"), rows)
        self._w(f"INSERT INTO pending ({_PENDING_COLS}) SELECT {_PENDING_COLS} FROM "
                "pending_in ON CONFLICT DO NOTHING")
        self._w("DELETE FROM pending_in")
        self._bump(r[0] for r in rows)

    def pending_rev(self, device_id: str) -> int:
        row = self._one("SELECT pending_rev FROM devices WHERE device_id=%s", (device_id,))
        return 0 if row is None else int(row[0])

    def held_shape(self, device_id: str) -> str | None:
        row = self._one("SELECT held_shape FROM devices WHERE device_id=%s", (device_id,))
        return None if row is None or row[0] is None else str(row[0])

    def set_held_shape(self, device_id: str, shape: str) -> None:
        self._w("UPDATE devices SET held_shape=%s WHERE device_id=%s", (shape, device_id))

    def _bump(self, devices: Iterable[str]) -> None:
        # (under the ledger's write lock, as every write: no other writer meanwhile)
        self._w("UPDATE devices SET pending_rev=pending_rev+1 WHERE device_id = ANY(%s)",
                (sorted(set(devices)),))

    def sign_pending(self, device_id: str, seq: int, entry_hash: bytes, sig: bytes) -> None:
        self._w("UPDATE pending SET sig=%s WHERE device_id=%s AND seq=%s AND entry_hash=%s",
                (sig, device_id, seq, entry_hash))
        self._bump((device_id,))

    def drop_pending(self, keys: Sequence[tuple[str, int, bytes]]) -> None:
        # a statement per _KEYS keys, each as three arrays: a quarter of the time of one
        # pipelined DELETE per key, in batches so that the arrays of a device's whole
        # held tail (accepted at once when its signature comes) are not all built at once
        self._in_tx()
        for i in range(0, len(keys), _KEYS):
            part = keys[i:i + _KEYS]
            self._wb("DELETE FROM pending p USING unnest(%b::text[], %b::int8[], "
                     "%b::bytea[]) AS k(d, s, h) WHERE p.device_id=k.d AND p.seq=k.s AND "
                     "p.entry_hash=k.h",
                     ([k[0] for k in part], [k[1] for k in part], [k[2] for k in part]))
        if keys:
            self._bump(k[0] for k in keys)

    # -- device checkpoints --------------------------------------------------------------

    def add_device_checkpoint(self, device_id: str, cose_hash: bytes, cose: bytes,
                              nonce: bytes | None, seq: int, head: bytes) -> bool:
        cur = self._w("INSERT INTO dev_checkpoints VALUES (%s, %s, %s, %s, %s, %s) "
                      "ON CONFLICT DO NOTHING", (device_id, cose_hash, cose, nonce, seq, head))
        return cur.rowcount == 1

    def device_checkpoints(self, device_id: str, lo: int = 0, hi: int = MAX_SEQ
                           ) -> list[DeviceCheckpoint]:
        return [DeviceCheckpoint(int(s), bytes(h), bytes(c)) for s, h, c in self._q(
            "SELECT seq, head, cose FROM dev_checkpoints WHERE device_id=%s AND seq>=%s "
            "AND seq<=%s ORDER BY seq", (device_id, lo, hi))]

    def covering_checkpoint(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        row = self._one(
            "SELECT c.seq, c.cose FROM dev_checkpoints c JOIN entries e ON "
            "e.device_id=c.device_id AND e.seq=c.seq AND e.entry_hash=c.head "
            "WHERE c.device_id=%s AND c.seq>=%s ORDER BY c.seq, c.cose_hash LIMIT 1",
            (device_id, seq))
        return None if row is None else (int(row[0]), bytes(row[1]))

    # -- devices -------------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None:
        row = self._one(f"SELECT {_DEVICE_COLS} FROM devices WHERE device_id=%s",
                        (device_id,))
        return None if row is None else _device(row)

    def devices(self) -> list[Device]:
        return [_device(tuple(r)) for r in
                self._q(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY device_id COLLATE \"C\"")]

    def add_device(self, device_id: str, pub: bytes, label: str, board: str, fw: str,
                   enrolled_at: int, genesis: bytes, enroll_key: str | None = None,
                   enroll_sig: bytes | None = None) -> None:
        self._w("INSERT INTO devices (device_id, pub, label, board, fw, enrolled_at, "
                "tip_head, enroll_key, enroll_sig) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
                "%s)", (device_id, pub, label, board, fw, enrolled_at, genesis, enroll_key,
                        enroll_sig))

    def sign_enrollment(self, device_id: str, enroll_key: str, enroll_sig: bytes) -> None:
        self._w("UPDATE devices SET enroll_key=%s, enroll_sig=%s WHERE device_id=%s",
                (enroll_key, enroll_sig, device_id))

    def set_tip(self, device_id: str, seq: int, head: bytes, t: int | None) -> None:
        self._w("UPDATE devices SET tip_seq=%s, tip_head=%s, tip_t=%s WHERE device_id=%s",
                (seq, head, t, device_id))

    def set_forked(self, device_id: str) -> None:
        self._w("UPDATE devices SET forked=1 WHERE device_id=%s", (device_id,))

    def set_revoked(self, device_id: str, at: int, reason: str) -> None:
        self._w("UPDATE devices SET revoked_at=%s, revoked_reason=%s WHERE device_id=%s",
                (at, reason, device_id))

    def add_revocation(self, device_id: str, statement: bytes) -> None:
        self._w("INSERT INTO revocations VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (device_id, statement))

    def revocations(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._q(
            "SELECT statement FROM revocations ORDER BY device_id")]

    # -- evidence ------------------------------------------------------------------------

    def add_evidence(self, device_id: str, seq: int, digest: bytes, doc: str,
                     created: int) -> bool:
        cur = self._w("INSERT INTO evidence VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO "
                      "NOTHING", (device_id, seq, digest, doc, created))
        return cur.rowcount == 1

    def first_evidence(self, device_id: str) -> tuple[int, str] | None:
        row = self._one("SELECT seq, doc FROM evidence WHERE device_id=%s ORDER BY seq "
                        "LIMIT 1", (device_id,))
        return None if row is None else (int(row[0]), str(row[1]))

    # -- ledger checkpoints --------------------------------------------------------------

    def checkpoint(self, size: int) -> bytes | None:
        row = self._one("SELECT note FROM checkpoints WHERE size=%s", (size,))
        return None if row is None else bytes(row[0])

    def add_checkpoint(self, size: int, note: bytes, created: int) -> None:
        self._w("INSERT INTO checkpoints VALUES (%s, %s, %s)", (size, note, created))

    def checkpoints(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._q("SELECT note FROM checkpoints ORDER BY size")]

    def latest_checkpoint(self) -> bytes | None:
        row = self._one("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return None if row is None else bytes(row[0])

    # -- collectors ----------------------------------------------------------------------

    def add_collector(self, key: str, name: str, added_at: int) -> bool:
        cur = self._w("INSERT INTO collectors VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                      (key, name, added_at))
        return cur.rowcount == 1

    def collectors(self) -> list[tuple[str, str, int]]:
        return [(str(k), str(n), int(t)) for k, n, t in self._q(
            "SELECT key, name, added_at FROM collectors ORDER BY added_at, key COLLATE \"C\"")]

    def collector_name(self, key: str) -> str | None:
        row = self._one("SELECT name FROM collectors WHERE key=%s", (key,))
        return None if row is None else str(row[0])

    # -- scans for verify ----------------------------------------------------------------

    def scan_meta(self) -> list[tuple[Any, Any]]:
        return [(k, v) for k, v in self._q("SELECT key, value FROM meta")]

    def scan_devices(self) -> Iterator[tuple[Any, ...]]:
        return self._scan(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY device_id COLLATE \"C\"")

    def scan_entries(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT leaf_index, device_id, seq, entry_hash, body, sig FROM "
                          "entries ORDER BY leaf_index")

    def scan_device_entries(self, device_id: str) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT seq, entry_hash, body, sig FROM entries WHERE "
                          "device_id=%s ORDER BY seq", device_id)

    def scan_nodes(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT level, idx, hash FROM nodes ORDER BY level, idx")

    def scan_checkpoints(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT size, note, created FROM checkpoints ORDER BY size")

    def scan_device_checkpoints(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, cose_hash, cose, nonce, seq, head FROM "
                          "dev_checkpoints")

    def scan_evidence(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, seq, digest, doc FROM evidence ORDER BY "
                          "device_id COLLATE \"C\", seq")

    def scan_pending(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, seq, entry_hash, body, sig, prev, kind, t "
                          "FROM pending")

    def scan_collectors(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT key, name, added_at FROM collectors")

    def scan_revocations(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT device_id, statement FROM revocations ORDER BY device_id")

    def _scan(self, query: str, *args: Any) -> Iterator[tuple[Any, ...]]:
        """Rows a chunk at a time from a server-side cursor (WITH HOLD: it lives outside
        a transaction, and the server keeps the result, not this process)."""
        self._scans += 1
        name = f"hashtrail_scan_{self._scans}"
        try:
            cur = self._db.cursor(name=name, withhold=True)
            cur.itersize = _SCAN_CHUNK
            cur.execute(pgsql.SQL(query), args)
        except psycopg.Error as e:
            raise self._error(e) from None
        return self._rows(cur)

    def _rows(self, cur: psycopg.ServerCursor[Any]) -> Iterator[tuple[Any, ...]]:
        try:
            for row in cur:
                yield tuple(row)
        except psycopg.Error as e:
            raise self._error(e) from None
        finally:
            try:
                cur.close()
            except psycopg.Error:
                pass

    def count_bundles(self) -> int:
        row = self._one("SELECT COUNT(*) FROM bundles")
        return 0 if row is None else int(row[0])

    # -- incremental reconcile: bundles seen, per-collector cursors -----------------------

    def bundle_seen(self, digest: bytes) -> bool:
        return self._one("SELECT 1 FROM bundles WHERE digest = %s", (digest,)) is not None

    def add_bundle(self, digest: bytes, collector: str, at: int,
                   seqs: Sequence[tuple[str, int]]) -> None:
        self._w("INSERT INTO bundles VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (digest, collector, at))
        if collector:
            self._many("INSERT INTO cursors VALUES (%s, %s, %s) ON CONFLICT (collector, "
                       "device_id) DO UPDATE SET seq = GREATEST(cursors.seq, excluded.seq)",
                       [(collector, d, s) for d, s in seqs])

    def cursor(self, collector: str) -> dict[str, int]:
        return {str(d): int(s) for d, s in self._q(
            "SELECT device_id, seq FROM cursors WHERE collector = %s ORDER BY device_id",
            (collector,))}

    def scan_bundles(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT digest, collector, reconciled_at FROM bundles")

    def scan_cursors(self) -> Iterator[tuple[Any, ...]]:
        return self._scan("SELECT collector, device_id, seq FROM cursors")
