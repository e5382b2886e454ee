"""Fixtures for running ledger tests on both backends (SQLite file, PostgreSQL database).

`ledger_at(name)` is where a test's ledger `name` lives: `<tmp>/<name>.db` on the
sqlite run, a fresh database (pgtest.new_database) on the postgresql run. A URL ledger
has no `<ledger>.key`, so the postgresql run points HASHTRAIL_LEDGER_KEY at
`<tmp>/l.key` (the key of the test's main ledger, "l"); a test that makes a second
ledger names its key file itself (`key_file=`), on both runs alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pgtest
import pytest


@pytest.fixture(params=pgtest.BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        pgtest.require_server()
    return str(request.param)


@pytest.fixture
def pg_databases() -> Iterator[list[str]]:
    with pgtest.databases() as made:
        yield made


@pytest.fixture
def ledger_at(backend: str, tmp_path: Path, pg_databases: list[str],
              monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    places: dict[str, str] = {}
    if backend == "postgresql":
        monkeypatch.setenv("HASHTRAIL_LEDGER_KEY", str(tmp_path / "l.key"))

    def at(name: str = "l") -> str:
        if name not in places:
            places[name] = (pgtest.new_database(pg_databases) if backend == "postgresql"
                            else str(tmp_path / f"{name}.db"))
        return places[name]
    return at
