"""Revocations as statements signed by the ledger key, served beside the tiles
(`hashtrail/revocations`), so a monitor of the served log sees them and can check
who made them.

Why signed statements and not leaves: a revocation is the operator's decision about
a key (`devices revoke`), not something a device said, and the tree's leaves are
device entries only (docs/LEDGER.md "Leaf bytes"; verify, proofs, mirrors and the Go
interop test rest on that). Signing each one with the ledger key is the smallest step
that makes a served revocation checkable: nobody without the key can forge or alter
one, and it names the log (origin), so it cannot be replayed into another. What it
does not give (docs/TILES.md "Revocations"): it is not in the tree, so witnesses do
not cosign it and a server can withhold it from one client; a monitor keeps every
revocation it has seen and raises an alarm if a later pass no longer shows it.

A statement is a signed note (c2sp.org/signed-note) whose text is

    hashtrail-revocation/1
    <origin>
    <device id>
    <revoked at: unix seconds, canonical decimal>
    <reason: a JSON string on one line>

Its first line is not an origin a checkpoint could have beside a size on the second,
so no checkpoint parser (ours, Go's tlog) takes it for a checkpoint. The served list
is JSON: {"format": "hashtrail-revocations/1", "revocations": [<note text>, ...]}.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import note
from hashtrail.formats.keys import parse_device_id

HEADER = "hashtrail-revocation/1"
LIST_FORMAT = "hashtrail-revocations/1"
MAX_LIST = 16 << 20
_DEC = re.compile(r"0|[1-9][0-9]{0,18}")


class Revocation(NamedTuple):
    origin: str
    device_id: str
    revoked_at: int
    reason: str


def format_revocation(r: Revocation) -> str:
    return (f"{HEADER}\n{note.check_origin(r.origin)}\n{parse_device_id(r.device_id)}\n"
            f"{r.revoked_at}\n{json.dumps(r.reason, ensure_ascii=True)}\n")


def parse_revocation(text: str) -> Revocation:
    """Strict: only text that format_revocation writes back byte for byte."""
    lines = text.split("\n")
    if len(lines) != 6 or lines[0] != HEADER or lines[5] != "":
        raise FormatError(f"not a {HEADER} statement")
    if not _DEC.fullmatch(lines[3]):
        raise FormatError("a revocation time is a canonical decimal")
    try:
        reason = json.loads(lines[4])
    except ValueError:
        reason = None
    if not isinstance(reason, str):
        raise FormatError("a revocation reason is a JSON string")
    r = Revocation(lines[1], lines[2], int(lines[3]), reason)
    try:
        again = format_revocation(r)
    except HashtrailError as e:
        raise FormatError(f"not a {HEADER} statement: {e}") from None
    if again != text:
        raise FormatError("revocation statement is not in canonical form")
    return r


def sign_revocation(r: Revocation, signer: note.Signer) -> bytes:
    return note.sign_note(format_revocation(r), [signer])


def open_revocation(data: bytes, verifier: note.Verifier, origin: str) -> Revocation:
    """The revocation `data` states, if signed by `verifier` for log `origin`."""
    n, _ = note.open_note(data, [verifier])
    r = parse_revocation(n.text)
    if r.origin != origin:
        raise VerificationError(f"a revocation of log {r.origin!r}, not {origin!r}")
    return r


def format_list(statements: list[bytes]) -> bytes:
    return json.dumps({"format": LIST_FORMAT,
                       "revocations": [s.decode("utf-8") for s in statements]},
                      separators=(",", ":")).encode()


def open_list(data: bytes, verifier: note.Verifier, origin: str) -> list[Revocation]:
    """Every statement of a served list, each checked (a bad one fails the list)."""
    if len(data) > MAX_LIST:
        raise FormatError("the revocation list is too large")
    try:
        doc: Any = json.loads(data)
    except ValueError as e:
        raise FormatError(f"the revocation list is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != LIST_FORMAT or \
            not isinstance(doc.get("revocations"), list) or \
            not all(isinstance(s, str) for s in doc["revocations"]):
        raise FormatError(f"not a {LIST_FORMAT} document")
    out = [open_revocation(s.encode("utf-8"), verifier, origin) for s in doc["revocations"]]
    if len({r.device_id for r in out}) != len(out):
        raise FormatError("the revocation list names a device twice")
    return out
