"""The log's side of C2SP tlog-witness: gather cosignatures on the ledger's newest
checkpoint from the witnesses it is configured with, and hand back the checkpoint only
if at least k of them cosigned (`ledger publish --witness URL ... --min-cosignatures k`).

Why publish only with k cosignatures: a client that requires witnesses
(`verify-proof --witness-key`) accepts a checkpoint only if they cosigned it, and each
witness cosigns only a tree that extends the one it saw last, so an operator cannot
show one client one log and another client another without a witness noticing. A log
that published without enough cosignatures would just be refused by such clients.

Each witness is asked with the old size it last cosigned: not known in advance, so the
first request says 0 and a 409 answer gives the witness's size; the consistency proof
from that size is built from the ledger's own tree. A witness whose size is above the
checkpoint's has seen a bigger tree of this log than the ledger now signs (a rollback,
or another view): it is never asked again in this run and counts as not cosigned.
Every cosignature is checked with the witness keys given before it counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from hashtrail.errors import HashtrailError, VerificationError
from hashtrail.formats import merkle, note
from hashtrail.ledger import tiles
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.witness_http import WitnessConflict, WitnessRefused, request_cosignature


class TooFewCosignatures(VerificationError):
    """Fewer witnesses than required cosigned the checkpoint: nothing is published."""

    hint = "check the witnesses named above (`hashtrail witness serve` prints its URL)"


class Gathered(NamedTuple):
    checkpoint: bytes           # the ledger's checkpoint with every valid cosignature
    cosigned: tuple[str, ...]   # witness names whose cosignature verified
    failed: tuple[str, ...]     # "<url>: why" for each witness that did not


def gather_cosignatures(ledger: Ledger, urls: Sequence[str],
                        witness_keys: Sequence[note.Verifier], need: int,
                        timeout: float = 10.0) -> Gathered:
    """The ledger's newest checkpoint cosigned by the witnesses at `urls`; raises
    TooFewCosignatures when fewer than `need` distinct trusted witnesses cosigned."""
    cp_bytes = ledger.latest_checkpoint()
    cp, _ = note.open_checkpoint(cp_bytes, [ledger.verifier])
    signed, failed = cp_bytes, []
    for url in urls:
        try:
            try:
                lines = request_cosignature(url, cp_bytes, 0, [], timeout)
            except WitnessConflict as c:
                if c.size > cp.size:
                    raise WitnessRefused(f"it has cosigned tree size {c.size}, above this "
                                         f"checkpoint's {cp.size}") from None
                proof = merkle.prove_consistency(ledger.node, c.size, cp.size) \
                    if 0 < c.size < cp.size else []
                lines = request_cosignature(url, cp_bytes, c.size, proof, timeout)
        except WitnessRefused as e:
            failed.append(f"{url}: {e}")
            continue
        before = note.open_cosignatures(signed, list(witness_keys))
        try:
            candidate = signed + lines
            got = note.open_cosignatures(candidate, list(witness_keys))
        except HashtrailError as e:
            failed.append(f"{url}: its answer is not a valid cosignature: {e}")
            continue
        if len(got) <= len(before):
            failed.append(f"{url}: no cosignature by a witness key given")
            continue
        signed = candidate
    names = tuple(sorted(note.open_cosignatures(signed, list(witness_keys))))
    if len(names) < need:
        raise TooFewCosignatures(
            f"{len(names)} of the {need} witness cosignatures required on tree size "
            f"{cp.size}: nothing published" + "".join(f"\n  {f}" for f in failed))
    return Gathered(signed, names, tuple(failed))


def publish_witnessed(ledger: Ledger, out: Path, urls: Sequence[str],
                      witness_keys: Sequence[note.Verifier], need: int,
                      words: bool = False) -> tuple[tiles.Published, Gathered]:
    """`ledger publish` with witnesses: gather at least `need` cosignatures first; the
    folder's checkpoint is the cosigned one. Nothing is written when too few cosign."""
    g = gather_cosignatures(ledger, urls, witness_keys, need)
    return tiles.publish(ledger, out, words=words, checkpoint=g.checkpoint), g
