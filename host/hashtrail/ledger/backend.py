"""Which storage a ledger target names: a PostgreSQL URL (`postgresql://...` or
`postgres://...`) is a database (storage_pg), anything else a SQLite file
(storage_sqlite). The one place that tells them apart, so every command that takes
`--ledger` (and HASHTRAIL_LEDGER) takes either.

Why a URL ledger needs its key named: the default key file is `<ledger path>.key`, next
to the file; a database has no "next to", so signing commands on a URL ledger need
`--key-file` or HASHTRAIL_LEDGER_KEY (docs/LEDGER.md "PostgreSQL").

psycopg is an optional extra (`hashtrail[postgresql]`): it is imported only when a URL
is opened, so the SQLite default never needs it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hashtrail.errors import ConfigError
from hashtrail.ledger.ledger_key import ENV, LedgerKeyError, key_path
from hashtrail.ledger.storage import LedgerStorage
from hashtrail.ledger.storage_sqlite import SqliteLedgerStorage

if TYPE_CHECKING:
    from hashtrail.ledger.storage_pg import PgLedgerStorage

Target = str | os.PathLike[str]


def is_url(target: Target) -> bool:
    """A PostgreSQL connection URL, not a file path."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def display(target: Target) -> str:
    """How messages name the ledger: the path, or the URL with its password hidden."""
    text = os.fspath(target)
    if not is_url(target):
        return text
    text = re.sub(r"^(postgres(?:ql)?://[^:/@]*):[^@/]*@", r"\1:***@", text)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", text)


def where(target: Target) -> Path | str:
    """The ledger's location as the Ledger keeps it: a Path for a file, the URL as given
    for a database (a Path would fold its `//`)."""
    return str(target) if is_url(target) else Path(target)


def _pg() -> type[PgLedgerStorage]:
    try:
        from hashtrail.ledger.storage_pg import PgLedgerStorage
    except ImportError as e:
        raise ConfigError(f"a PostgreSQL ledger needs psycopg, which is not installed "
                          f"({e})", hint="pip install 'hashtrail[postgresql]'") from None
    return PgLedgerStorage


def open_storage(target: Target) -> LedgerStorage:
    """The existing ledger `target` names, its schema brought up to date."""
    if is_url(target):
        st: LedgerStorage = _pg().open(str(target))
        return st
    return SqliteLedgerStorage.open(Path(target))


def check_new(target: Target) -> None:
    """InputError unless `target` can become a new ledger (a new file in a folder that
    exists; an existing, empty database)."""
    if is_url(target):
        _pg().check_new(str(target))
    else:
        SqliteLedgerStorage.check_new(Path(target))


def create_storage(target: Target, meta: dict[str, str]) -> LedgerStorage:
    """A new ledger holding `meta`, made with its schema in one transaction."""
    if is_url(target):
        st: LedgerStorage = _pg().create(str(target), meta)
        return st
    return SqliteLedgerStorage.create(Path(target), meta)


def signing_key_path(target: Target, explicit: Target | None = None) -> Path:
    """Where the ledger key of `target` is (ledger_key.key_path). A URL ledger has no
    `<ledger>.key`: without --key-file or HASHTRAIL_LEDGER_KEY it is LedgerKeyError."""
    if is_url(target) and explicit is None and not os.environ.get(ENV):
        raise LedgerKeyError(
            f"the ledger {display(target)} is a database, so its key has no default file: "
            f"give --key-file PATH or set {ENV}")
    return key_path(target, explicit)
