"""`hashtrail export` as functions: a collector store -> a bundle file signed by the
collector's identity key (docs/BUNDLE.md), and that key's verifier string, which the
ledger operator passes to `hashtrail ledger trust` so this collector may enroll devices.
"""

from __future__ import annotations

import os
from typing import IO, Any, NamedTuple

from hashtrail import userfile
from hashtrail.collector.bundle import MAX_CURSOR, from_store, parse_cursor, write_bundle
from hashtrail.collector.store import Store
from hashtrail.errors import ConfigError, FormatError, InputError


def collector_key(store: str | os.PathLike[str]) -> str:
    """The verifier key of the collector whose store is `store`."""
    with Store.open(store, create=False) as st:
        return st.signer.verifier().to_string()


class Exported(NamedTuple):
    devices: int
    entries: int
    checkpoints: int
    out: str | None             # the file written; None for a stream
    collector_key: str

    def to_json(self) -> dict[str, Any]:
        return self._asdict()


def export_bundle(store: str | os.PathLike[str], out: str | os.PathLike[str] | IO[str] | None,
                  name: str = "", devices: list[str] | None = None,
                  since: str | os.PathLike[str] | None = None) -> Exported:
    """Write everything `store` holds (only `devices`, when given) as a bundle signed by
    the collector's key, to the file `out` or the text stream `out`. `since` names a
    cursor file (`hashtrail ledger cursor`): only what the ledger has not received from
    this collector goes (bundle.from_store)."""
    cursor_text = None
    if since is not None:
        cursor_text = userfile.read_text(since, "a cursor file (`hashtrail ledger cursor` "
                                         "writes it)", max_bytes=MAX_CURSOR)
    path: str | None = None
    stream: IO[str] | None = None
    if isinstance(out, (str, os.PathLike)):
        path = os.fspath(out)
        userfile.check_output(path, "a bundle file to write")
    else:
        stream = out
    with Store.open(store, create=False) as st:
        signer = st.signer
        if path is None and stream is None:
            raise ConfigError("export needs --out FILE (or '-' for stdout)")
        cut = None
        if cursor_text is not None:
            try:
                cut = parse_cursor(cursor_text, signer.verifier().to_string())
            except FormatError as e:
                raise InputError(f"{os.fspath(str(since))}: {e}", hint=e.hint) from None
        b = from_store(st, name=name, devices=devices, since=cut)
    if stream is not None:
        write_bundle(b, stream, signer)
    else:
        with open(str(path), "w", encoding="ascii") as f:
            write_bundle(b, f, signer)
    return Exported(len(b.enrollments), len(b.entries), len(b.checkpoints), path,
                    signer.verifier().to_string())
