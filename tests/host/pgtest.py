"""The PostgreSQL server the ledger tests run against, and fresh databases on it.

The server is the one on this kind of machine (127.0.0.1:5432, user postgres, trust
auth; HASHTRAIL_TEST_PG names another admin URL). Each test that asks gets databases of
its own (`hashtrail_test_<random>`), dropped after it. In CI (CI=true) a missing server
fails the test: CI must run the PostgreSQL tests; elsewhere they skip with one line.
"""

from __future__ import annotations

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


def _drop(made: list[str]) -> None:
    import psycopg
    with psycopg.connect(ADMIN, autocommit=True) as c:
        for name in made:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_database(made: list[str]) -> str:
    """CREATE DATABASE hashtrail_test_<random>; returns its URL."""
    import psycopg
    require_server()
    name = "hashtrail_test_" + secrets.token_hex(6)
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    made.append(name)
    return url_of(name)
