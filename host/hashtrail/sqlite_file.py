"""How hashtrail opens its SQLite files (collector store, ledger): one place for the
connection settings both rely on.

- autocommit (``isolation_level=None``) so transactions are explicit ``BEGIN IMMEDIATE``:
  a writer takes the write lock up front and queues on the busy timeout rather than
  failing half-way through a read-then-write;
- WAL so readers (``verify``, ``status``) never block the writer;
- ``synchronous=FULL`` so a transaction is on disk before COMMIT returns.

`open_existing` is the one door for a file the user named as a store or a ledger: it
refuses, before SQLite writes a byte (the WAL pragma rewrites the header of a
non-WAL file, and connecting creates a missing one), a path that is missing, a
directory, empty, not SQLite, unreadable, or a hashtrail file of the other kind (a
collector store where a ledger belongs, and vice versa), with `InputError` (exit 2)
naming the path and what was expected.

Each file says what it is: `PRAGMA application_id` holds its kind's id (set by
`migrate`, with the schema). A file made before that (application_id 0) is known by
tables only its kind has.

`migrate` is the one upgrade path for both kinds: the schema version is the `meta` row
`schema` (a row, not `PRAGMA user_version`, so a second backend keeps it the same way),
and each kind lists its migrations in order. A new file is version 0 and runs them
all, so a new file and an upgraded one come out of the same steps.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Self

from hashtrail.errors import InputError

MIN_SIZE = 512          # bytes: one page of the smallest size SQLite writes
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


class Kind(NamedTuple):
    """A kind of hashtrail SQLite file: its application_id, and (for files made before
    the id was set) tables only it has."""

    name: str
    tables: frozenset[str]
    hint: str
    app_id: int


STORE = Kind("a hashtrail collector store", frozenset({"enrollments", "state"}),
             "a collector store is made by `hashtrail enroll --store FILE`",
             int.from_bytes(b"HTcs", "big"))
LEDGER = Kind("a hashtrail ledger", frozenset({"devices", "nodes"}),
              "a ledger is made by `hashtrail ledger init --ledger FILE`",
              int.from_bytes(b"HTlg", "big"))
KINDS = (STORE, LEDGER)


class Migration(NamedTuple):
    """One step of a kind's schema: run (inside the upgrade's transaction) on a file at
    `version - 1`, leaving it at `version`. `why` says what the step brings."""

    version: int
    why: str
    apply: Callable[[sqlite3.Connection], None]


def connect(path: Path, busy_ms: int) -> sqlite3.Connection:
    """Open (or create) ``path`` with the settings above; raises sqlite3.DatabaseError,
    which each caller turns into its own project error naming the file."""
    conn = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None)
    try:
        return _configure(conn, busy_ms)
    except BaseException:
        conn.close()
        raise


def _refuse(p: Path, problem: str, kind: Kind, *, new: bool = False) -> InputError:
    what = f"a new file for {kind.name}" if new else kind.name
    return InputError(f"{p}: {problem}; expected {what}", hint=kind.hint)


def open_existing(path: Path, busy_ms: int, kind: Kind) -> sqlite3.Connection:
    """Open ``path``, which must already be ``kind``; InputError naming it otherwise,
    with nothing created or changed. The settings above are applied only after.

    The file is only ever opened through SQLite, never with a descriptor of our own:
    POSIX locks belong to the process, and closing any descriptor of the file drops the
    locks every other connection of this process holds on it (a server's threads each
    open the ledger), after which another process's reconcile, closing, takes itself for
    the last connection and checkpoints and deletes the WAL under them
    (tests/host/test_sqlite_locks.py). SQLite itself keeps such descriptors open."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _refuse(path, "no such file", kind) from None
    except (OSError, ValueError) as e:
        raise _refuse(path, f"cannot read ({getattr(e, 'strerror', None) or e})", kind) \
            from None
    if stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is a directory", kind)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "is not a regular file", kind)
    if not st.st_size:
        raise _refuse(path, "is empty", kind)
    if st.st_size < MIN_SIZE:      # SQLite would take a 1-byte file for an empty one
        raise _refuse(path, "is not an SQLite file", kind)
    conn: sqlite3.Connection | None = None
    try:
        # mode=rw: never creates the file; no pragma yet: a read of the schema changes
        # nothing in the file
        conn = sqlite3.connect(_rw_uri(path), timeout=busy_ms / 1000,
                               isolation_level=None, uri=True)
        try:
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        except sqlite3.DatabaseError as e:
            if getattr(e, "sqlite_errorcode", None) == SQLITE_NOTADB:
                raise _refuse(path, "is not an SQLite file", kind) from None
            raise
        if app_id != kind.app_id:
            if app_id:
                other = [k for k in KINDS if k.app_id == app_id]
                raise _refuse(path, f"is {other[0].name}" if other else
                              f"is an SQLite file of another program (application_id "
                              f"{app_id:#010x})", kind)
            tables = {str(r[0]) for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if not kind.tables <= tables:    # made before the id: its tables tell
                other = [k for k in KINDS if k is not kind and k.tables <= tables]
                raise _refuse(path, f"is {other[0].name}" if other
                              else "is an SQLite file but not a hashtrail one", kind)
        connected = _configure(conn, busy_ms)
        conn = None
        return connected
    except sqlite3.OperationalError as e:
        if getattr(e, "sqlite_errorcode", None) == SQLITE_CANTOPEN:
            raise _refuse(path, f"cannot read ({e})", kind) from None
        raise _refuse(path, f"is not a readable SQLite file ({e})", kind) from None
    except sqlite3.DatabaseError as e:
        raise _refuse(path, f"is not a readable SQLite file ({e})", kind) from None
    finally:
        if conn is not None:
            conn.close()


def _rw_uri(path: Path) -> str:
    """`path` as an SQLite URI opened read-write, never created (mode=rw)."""
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=rw"


def check_new(path: Path, kind: Kind) -> None:
    """``path`` may become a new ``kind``: nothing is there yet and its folder exists."""
    if path.exists() or path.is_symlink():
        raise _refuse(path, "already exists", kind, new=True)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise _refuse(path, f"its folder {parent} does not exist", kind, new=True)


def _configure(conn: sqlite3.Connection, busy_ms: int) -> sqlite3.Connection:
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt too):
    writers queue on the busy timeout instead of failing mid-way."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def schema_version(db: sqlite3.Connection) -> int:
    """The `meta` row `schema` as an int: 0 for a file without one (a new file)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
                  ).fetchone() is None:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None:
        return 0
    text = row[0]
    if not isinstance(text, str) or not text.isdigit():
        raise ValueError(f"schema {text!r} is not a version number")
    return int(text)


def migrate(db: sqlite3.Connection, path: Path, kind: Kind,
            migrations: Sequence[Migration], tables: frozenset[str],
            then: Callable[[sqlite3.Connection], None] | None = None) -> int:
    """Bring the file to the last of `migrations`, in one BEGIN IMMEDIATE transaction
    (all steps or none), and stamp it with its kind's application_id; `then` runs in the
    same transaction (a new file's first rows). Returns the version it was at.

    A file already current is only read (two opens write nothing the second time); one
    from a newer hashtrail is refused (InputError) rather than guessed at, and so is one
    at the current version without all of `tables` (a table dropped by hand): one line
    instead of an SQL error half-way through a command."""
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    last = len(migrations)

    def version() -> int:
        try:
            v = schema_version(db)
        except ValueError as e:
            raise _refuse(path, str(e), kind) from None
        if v > last:
            raise InputError(f"{path}: {kind.name} at schema {v}, newer than this "
                             f"hashtrail reads ({last})",
                             hint="open it with the hashtrail version that wrote it")
        return v

    if version() == last and then is None:
        have = {str(r[0]) for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables <= have:
            raise _refuse(path, "is damaged: no table " + ", ".join(sorted(tables - have)),
                          kind)
        return last
    with transaction(db):
        was = version()        # again under the write lock: another opener may have run
        for m in migrations[was:]:
            m.apply(db)
        if was < last:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(last),))
            db.execute(f"PRAGMA application_id={kind.app_id}")
        if then is not None:
            then(db)
    return was


class SqliteFile:
    """What both storages on one SQLite file share: the connection, opening it migrated
    to the current schema, the transaction that every write must be inside, meta rows.

    Why a base: the collector store and the ledger follow one rule for all of this (and
    a second backend for the ledger follows it too); each subclass only names its kind,
    its migrations and its tables."""

    KIND: Kind
    MIGRATIONS: Sequence[Migration]
    TABLES: frozenset[str]

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path = path

    @classmethod
    def check_new(cls, path: Path) -> None:
        """InputError unless `path` can become a new file of this kind (nothing there,
        its folder exists): checked before anything else is written."""
        check_new(path, cls.KIND)

    @classmethod
    def _migrated(cls, conn: sqlite3.Connection, path: Path,
                  then: Callable[[sqlite3.Connection], None] | None = None) -> Self:
        """`conn` brought to the current schema (closed again if that fails)."""
        try:
            migrate(conn, path, cls.KIND, cls.MIGRATIONS, cls.TABLES, then=then)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with transaction(self._db):
            yield

    def _w(self) -> sqlite3.Connection:
        """The connection, for a write: only inside transaction() (the contract)."""
        if not self._db.in_transaction:
            raise AssertionError(f"{self.KIND.name}: write outside storage.transaction()")
        return self._db

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])
