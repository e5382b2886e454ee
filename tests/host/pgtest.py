"""The PostgreSQL server the ledger tests run against, and fresh databases on it.

The server is the one on this kind of machine (127.0.0.1:5432, user postgres, trust
auth; HASHTRAIL_TEST_PG names another admin URL). Each test that asks gets empty
databases of its own (`hashtrail_test_<random>`). After the test they are emptied, not
dropped: every session on them ended, every schema dropped, `public` made again. The next
test of the same process takes one from that pool, as empty as a new one, for a few
milliseconds where CREATE DATABASE takes a quarter of a second (it copies and logs the
template's catalogs). They are dropped when the process ends. In CI (CI=true) a missing
server fails the test: CI must run the PostgreSQL tests; elsewhere they skip with one line.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# pytest params for a test that runs on both ledger backends
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
ADMIN = os.environ.get("HASHTRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@functools.cache
def server_problem() -> str | None:
    """None when the server answers; else why not (one line)."""
    try:
        import psycopg
    except ImportError as e:
        return f"psycopg is not installed ({e}): pip install -e '.[postgresql]'"
    try:
        with psycopg.connect(ADMIN, connect_timeout=5, autocommit=True) as c:
            c.execute("SELECT 1")
    except psycopg.Error as e:
        return f"no PostgreSQL server at {ADMIN}: {str(e).strip().splitlines()[0]}"
    return None


def require_server() -> None:
    """Fail (CI) or skip (elsewhere) when the server does not answer."""
    why = server_problem()
    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI runs the PostgreSQL ledger tests, but {why}")
    pytest.skip(f"PostgreSQL ledger tests skipped: {why} (CI=true makes this a failure)")


def url_of(name: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + "/" + name


@contextmanager
def databases() -> Iterator[list[str]]:
    """Yields a list that `new_database` fills; every database in it is dropped after."""
    made: list[str] = []
    try:
        yield made
    finally:
        if made:
            _drop(made)


# emptied databases this process may hand out again (dropped at its exit)
_POOL: list[str] = []


def _drop(made: list[str]) -> None:
    import psycopg
    for name in made:
        try:
            _empty(name)
            _POOL.append(name)
        except psycopg.Error:
            with psycopg.connect(ADMIN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty(name: str) -> None:
    """What a new database holds again: no session, no schema but an empty `public`
    owned as in a new database, no setting of its own."""
    import psycopg
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        c.execute(f'ALTER DATABASE "{name}" RESET ALL')
    with psycopg.connect(url_of(name), autocommit=True) as c:
        schemas = [str(r[0]) for r in c.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname <> 'information_schema'")]
        for schema in schemas:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')
        c.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
        c.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")


@atexit.register
def _drop_pool() -> None:
    if not _POOL:
        return
    import psycopg
    try:
        with psycopg.connect(ADMIN, autocommit=True) as c:
            for name in _POOL:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass
    _POOL.clear()


def new_database(made: list[str]) -> str:
    """An empty database of the test's own (CREATE DATABASE hashtrail_test_<random>, or
    one emptied from the pool); returns its URL."""
    import psycopg
    require_server()
    if _POOL:
        name = _POOL.pop()
    else:
        name = "hashtrail_test_" + secrets.token_hex(6)
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    made.append(name)
    return url_of(name)
