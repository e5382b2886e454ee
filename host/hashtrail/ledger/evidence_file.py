"""Evidence files: a device's fork evidence written out of a ledger (`ledger evidence`),
and an evidence file of either kind checked alone (`ledger check-evidence`).

Why apart from the two checkers: fork evidence (hashtrail.chain.evidence) needs no key
at all, it carries the device's own signatures; split-view evidence
(hashtrail.ledger.witness) is two checkpoints signed by a ledger key, so it proves
something only to a checker who brings that key. One file may hold either: its
`format` says which checker runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from hashtrail import userfile
from hashtrail.chain import evidence
from hashtrail.errors import ConfigError
from hashtrail.formats import note
from hashtrail.ledger import witness
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.trust import ledger_key

EVIDENCE_FILE = ("an evidence file (JSON, from `hashtrail ledger evidence`, or a witness's "
                 "split-view file)")


class Written(NamedTuple):
    device_id: str
    seq: int
    out: str


def write_fork_evidence(ledger: str | os.PathLike[str], device_id: str,
                        out: str | os.PathLike[str]) -> Written:
    """Write the fork evidence `ledger` holds for `device_id` to `out`; ConfigError when
    the ledger has not seen that device's key sign two histories."""
    userfile.check_output(out, "a file to write the fork evidence to")
    with Ledger.open(ledger) as led:
        doc = led.fork_evidence(device_id)
    if doc is None:
        raise ConfigError(f"no fork evidence for device {device_id}: the ledger has not "
                          "seen its key sign two histories",
                          hint="`hashtrail devices list --ledger FILE` shows which devices "
                               "are FORKED")
    Path(out).write_text(doc)
    v = evidence.check_evidence(doc)
    return Written(v.device_id, v.seq, os.fspath(out))


class ForkFound(NamedTuple):
    """A device proven to have signed two different entries for one seq."""

    device_id: str
    seq: int
    hashes: tuple[bytes, bytes]

    def to_json(self) -> dict[str, Any]:
        return {"fork": True, "device": self.device_id, "seq": self.seq,
                "hashes": [h.hex() for h in self.hashes]}


class SplitViewFound(NamedTuple):
    """A ledger key proven to have signed two views no single log explains."""

    origin: str
    sizes: tuple[int, int]
    roots: tuple[bytes, bytes]

    def to_json(self) -> dict[str, Any]:
        return {"split_view": True, "origin": self.origin, "sizes": list(self.sizes),
                "roots": [r.hex() for r in self.roots]}


def check_evidence_file(path: str | os.PathLike[str],
                        trusted: note.Verifier | None = None) -> ForkFound | SplitViewFound:
    """Check the evidence file `path` alone. Split-view evidence needs `trusted`, the
    ledger key both checkpoints must be signed by (without it: ConfigError, fail
    closed); fork evidence needs no key. Raises unless the file proves what it claims."""
    text = userfile.read_text(path, EVIDENCE_FILE, max_bytes=userfile.DOCUMENT)
    userfile.parse_json(text, path, EVIDENCE_FILE)      # junk, binary, too deep: bad input
    if evidence.evidence_format(text) == evidence.SPLIT_VIEW_FORMAT:
        sv = witness.check_split_view(text, trusted if trusted is not None
                                      else ledger_key(None, None))
        return SplitViewFound(sv.origin, sv.sizes, sv.roots)
    v = evidence.check_evidence(text)
    return ForkFound(v.device_id, v.seq, v.hashes)
