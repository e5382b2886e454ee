"""The device signature over accepted entries that reaches them only through held ones.

Why: a device's own log-altered report disowns a range of its entries, which is then
never accepted, and the device signature that covers the entries below that range may
come only after it: a checkpoint over a later entry (or that entry's own signature)
commits to them through the links of the disowned range and of the report. reconcile
accepts those entries (its _altered_stop), but then no device signature among the
ledger's accepted entries covers them. A proof, `verify` and a fork's evidence reach
that signature through the held rows the links pass, which stay in `pending`: nothing
past the disowned range is accepted while the report stands. The links are checked
here from the bytes (each body hashed, its prev read), not taken from the rows' stored
columns."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from hashtrail.errors import HashtrailError
from hashtrail.formats.entry import parse_entry
from hashtrail.ledger.storage import LedgerStorage

BLOCK = 2_000          # held rows read at a time, walking down from the checkpoint
SIGNED_TRIED = 8       # signed held rows above the tip tried, the lowest first


class HeldCover(NamedTuple):
    """A device signature over the entry at `seq` (hash `head`) whose chain links down
    to the device's tip through held entries: a checkpoint (`statement`: its COSE
    bytes) or the held entry's own signature (kind "entry-sig", `statement`: the 64
    bytes, not checked here); `chain`: the held bodies tip + 1 .. seq, when asked for."""

    seq: int
    head: bytes
    kind: str
    statement: bytes
    chain: list[bytes]


def held_cover(db: LedgerStorage, did: str, tip_seq: int, tip_head: bytes,
               checkpoints: Iterable[tuple[int, bytes, bytes]], bodies: bool = True,
               signed: bool = True) -> HeldCover | None:
    """The lowest device signature above the tip (of `checkpoints`, (seq, head, COSE)
    of the device's checkpoints above its tip, and with `signed`, the first
    SIGNED_TRIED signed held rows) whose entry links down to `tip_head` at `tip_seq`
    through the device's held rows; None: none does."""
    found: list[tuple[int, bytes, str, bytes]] = [
        (seq, head, "checkpoint", cose) for seq, head, cose in checkpoints if seq > tip_seq]
    if signed:
        found += _signed_rows(db, did, tip_seq)
    for seq, head, kind, statement in sorted(found, key=lambda c: c[0]):
        chain = _down(db, did, tip_seq, tip_head, seq, head, bodies)
        if chain is not None:
            return HeldCover(seq, head, kind, statement, chain)
    return None


def _signed_rows(db: LedgerStorage, did: str, tip_seq: int
                 ) -> list[tuple[int, bytes, str, bytes]]:
    """(seq, hash, "entry-sig", signature) of the lowest SIGNED_TRIED signed held rows
    above the tip, read a block of links at a time."""
    out: list[tuple[int, bytes, str, bytes]] = []
    s = tip_seq + 1
    while len(out) < SIGNED_TRIED:
        nxt = db.next_pending_seq(did, s)
        if nxt is None:
            break
        rows = db.pending_links(did, nxt, nxt + BLOCK - 1)
        for q, h, is_signed, _, _ in rows:
            if is_signed and len(out) < SIGNED_TRIED:
                out += [(q, h, "entry-sig", bytes(r.sig)) for r in db.pending(did, q, q)
                        if r.entry_hash == h and r.sig is not None]
        s = (rows[-1][0] if rows else nxt) + 1
    return out


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
