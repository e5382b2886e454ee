"""How hashtrail opens its SQLite files (collector store, ledger): one place for the
connection settings both rely on.

- autocommit (``isolation_level=None``) so transactions are explicit ``BEGIN IMMEDIATE``:
  a writer takes the write lock up front and queues on the busy timeout rather than
  failing half-way through a read-then-write;
- WAL so readers (``verify``, ``status``) never block the writer;
- ``synchronous=FULL`` so a transaction is on disk before COMMIT returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path, busy_ms: int) -> sqlite3.Connection:
    """Open (or create) ``path`` with the settings above; raises sqlite3.DatabaseError,
    which each caller turns into its own project error naming the file."""
    conn = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None)
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
