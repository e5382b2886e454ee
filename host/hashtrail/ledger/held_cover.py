"""The device checkpoint over accepted entries that reaches them only through held ones.

Why: a device's own log-altered report disowns a range of its entries, which is then
never accepted, and the device signature that covers the entries below that range may
come only after it: a checkpoint over a later entry commits to them through the links
of the disowned range and of the report. reconcile accepts those entries (its
_altered_stop), but then no device signature among the ledger's accepted entries
covers them. A proof, `verify` and a fork's evidence reach that checkpoint through the
held rows the links pass, which stay in `pending`: nothing past the disowned range is
accepted while the report stands. The links are checked here from the bytes (each
body hashed, its prev read), not taken from the rows' stored columns."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from hashtrail.errors import HashtrailError
from hashtrail.formats.entry import parse_entry
from hashtrail.ledger.storage import LedgerStorage

BLOCK = 2_000          # held rows read at a time, walking down from the checkpoint


class HeldCover(NamedTuple):
    """A device checkpoint over seq `seq` whose chain links down to the device's tip
    through held entries: `chain`, their bodies (tip + 1 .. seq), when asked for."""

    seq: int
    cose: bytes
    chain: list[bytes]


def held_cover(db: LedgerStorage, did: str, tip_seq: int, tip_head: bytes,
               checkpoints: Iterable[tuple[int, bytes, bytes]], bodies: bool = True
               ) -> HeldCover | None:
    """The lowest of `checkpoints` ((seq, head, COSE) of the device's checkpoints above
    its tip, in seq order) whose head links down to `tip_head` at `tip_seq` through
    the device's held rows; None: none does."""
    for seq, head, cose in checkpoints:
        if seq <= tip_seq:
            continue
        chain = _down(db, did, tip_seq, tip_head, seq, head, bodies)
        if chain is not None:
            return HeldCover(seq, cose, chain)
    return None


def _down(db: LedgerStorage, did: str, tip_seq: int, tip_head: bytes, seq: int,
          head: bytes, keep: bool) -> list[bytes] | None:
    """The held bodies from `seq` (hashing to `head`) down to `tip_seq` + 1, linked one
    to the next and the lowest to `tip_head` (in seq order; empty unless `keep`);
    None: a link is not held."""
    out: list[bytes] = []
    want, at = head, seq
    while at > tip_seq:
        lo = max(tip_seq + 1, at - BLOCK + 1)
        rows: dict[int, list[bytes]] = defaultdict(list)
        for r in db.pending(did, lo, at):
            rows[r.seq].append(bytes(r.body))
        for q in range(at, lo - 1, -1):
            body = next((b for b in rows.get(q, ()) if hashlib.sha256(b).digest() == want),
                        None)
            if body is None:
                return None
            try:
                e = parse_entry(body)
            except HashtrailError:
                return None
            if e.seq != q:
                return None
            if keep:
                out.append(body)
            want = e.prev
        at = lo - 1
    if want != tip_head:
        return None
    out.reverse()
    return out
