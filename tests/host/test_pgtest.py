"""pgtest hands a test a database an earlier test used, emptied: it must hold what a new
database holds, or a test would see another's tables, settings or sessions."""

from __future__ import annotations

from typing import Any

import pgtest
import pytest

pytestmark = pytest.mark.postgresql


def _contents(url: str) -> Any:
    import psycopg
    with psycopg.connect(url) as c:
        return (
            sorted(c.execute("SELECT nspname, pg_get_userbyid(nspowner), nspacl::text "
                             "FROM pg_namespace").fetchall()),
            c.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                      "ON c.relnamespace = n.oid WHERE n.nspname NOT LIKE 'pg\\_%' "
                      "AND n.nspname <> 'information_schema'").fetchone(),
            c.execute("SHOW synchronous_commit").fetchone(),
        )


def test_a_database_from_the_pool_is_as_empty_as_a_new_one() -> None:
    import psycopg
    pgtest.require_server()
    with pgtest.databases() as made:
        url = pgtest.new_database(made)
        fresh = _contents(url)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE public.other_program (x int)")
            c.execute("CREATE SCHEMA elsewhere")
            c.execute("CREATE TABLE elsewhere.t (y text)")
            c.execute("CREATE SEQUENCE public.s")
            c.execute(f'ALTER DATABASE "{made[0]}" SET synchronous_commit = off')
        lingering = psycopg.connect(url)       # a session the test left open
        lingering.execute("BEGIN; LOCK TABLE public.other_program")
        assert _contents(url) != fresh
    with pgtest.databases() as again:
        assert pgtest.new_database(again) == url       # the same one, from the pool
        assert _contents(url) == fresh
    assert lingering.closed or lingering.broken or _gone(lingering)


def _gone(conn: Any) -> bool:
    import psycopg
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False
