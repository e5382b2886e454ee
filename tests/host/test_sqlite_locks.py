"""SQLite's locks across the connections of one process: opening a ledger again (the
server's worker threads each open their own connection beside the event loop's) must
keep the locks the connections already open hold.

Why it matters: POSIX advisory locks belong to the process, and closing any descriptor
of the file drops every one of them. A plain open()/close() of the ledger file (reading
its header to name what it is) left the server's connections believing they held their
shared lock when they held none; a reconcile in another process, closing its
connection, then took itself for the last connection to the file, checkpointed the WAL
and deleted it under the readers, who read pages that were no longer there (`database
disk image is malformed`, "the ledger is missing leaves": 503s in tools/bench_serve.py).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from hashtrail import sqlite_file
from hashtrail.ledger.ledger_db import Ledger

WRITE_AND_CLOSE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("PRAGMA journal_mode=WAL")
db.execute("INSERT OR REPLACE INTO meta VALUES ('lock-test', 'x')")
db.close()
"""


def _other_process_writes(path: Path) -> None:
    subprocess.run([sys.executable, "-c", WRITE_AND_CLOSE, str(path)], check=True,
                   timeout=60)


def test_a_second_open_keeps_the_first_connections_lock(tmp_path: Path) -> None:
    path = tmp_path / "led.db"
    Ledger.create(path, "example.com/locks").close()
    wal = Path(f"{path}-wal")
    first = Ledger.open(path)
    try:
        assert first.size == 0                # a read: the connection holds its lock
        second = Ledger.open(path)            # what each worker thread of the server does
        try:
            _other_process_writes(path)
            # another process's close found this one still holding the file: it neither
            # checkpointed nor deleted the WAL both connections read through
            assert wal.exists()
            assert first.size == 0 and second.size == 0
        finally:
            second.close()
    finally:
        first.close()


def test_open_existing_checks_without_a_descriptor_of_its_own(tmp_path: Path) -> None:
    """The same at the level every SQLite file of hashtrail is opened through (collector
    stores too): a refusal still names what the file is, before SQLite writes a byte."""
    path = tmp_path / "led.db"
    Ledger.create(path, "example.com/locks").close()
    wal = Path(f"{path}-wal")
    a = sqlite_file.open_existing(path, 1000, sqlite_file.LEDGER)
    try:
        a.execute("SELECT count(*) FROM meta").fetchone()
        b = sqlite_file.open_existing(path, 1000, sqlite_file.LEDGER)
        b.close()
        _other_process_writes(path)
        assert wal.exists()
        assert a.execute("SELECT value FROM meta WHERE key='lock-test'").fetchone() == ("x",)
    finally:
        a.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
