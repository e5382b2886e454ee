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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from hashtrail.errors import InputError

MAGIC = b"SQLite format 3\x00"


class Kind(NamedTuple):
    """A kind of hashtrail SQLite file, known by tables only it has."""

    name: str
    tables: frozenset[str]
    hint: str


STORE = Kind("a hashtrail collector store", frozenset({"enrollments", "state"}),
             "a collector store is made by `hashtrail enroll --store FILE`")
LEDGER = Kind("a hashtrail ledger", frozenset({"devices", "nodes"}),
              "a ledger is made by `hashtrail ledger init --ledger FILE`")
KINDS = (STORE, LEDGER)


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
    with nothing created or changed. The settings above are applied only after."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except FileNotFoundError:
        raise _refuse(path, "no such file", kind) from None
    except IsADirectoryError:
        raise _refuse(path, "is a directory", kind) from None
    except (OSError, ValueError) as e:
        raise _refuse(path, f"cannot read ({getattr(e, 'strerror', None) or e})", kind) \
            from None
    if not head:
        raise _refuse(path, "is empty", kind)
    if head != MAGIC:
        raise _refuse(path, "is not an SQLite file", kind)
    conn: sqlite3.Connection | None = None
    try:
        # no pragma yet: a read of the schema changes nothing in the file
        conn = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None)
        tables = {str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if not kind.tables <= tables:
            other = [k for k in KINDS if k is not kind and k.tables <= tables]
            raise _refuse(path, f"is {other[0].name}" if other
                          else "is an SQLite file but not a hashtrail one", kind)
        connected = _configure(conn, busy_ms)
        conn = None
        return connected
    except sqlite3.DatabaseError as e:
        raise _refuse(path, f"is not a readable SQLite file ({e})", kind) from None
    finally:
        if conn is not None:
            conn.close()


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
