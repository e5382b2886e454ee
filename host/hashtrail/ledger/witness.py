"""A witness: cosign only checkpoints that extend the last one it cosigned, and keep
split-view evidence when the ledger key signed two views no single log explains.

Why: a ledger operator holding the key can show one log to one party and another log
to another. A witness remembers the last checkpoint it cosigned (its state file) and
cosigns a new one only when the ledger's tree proves it extends that one; two signed
checkpoints that cannot both be views of one log are kept as a self-contained
`hashtrail-split-view/1` document anyone holding the ledger's verifier key can check
(`check_split_view`). Checkers trust the witness's cosigner key
(`note.Verifier.cosigner_string`), which `new_witness_key` prints.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from hashtrail import userfile
from hashtrail.chain.evidence import SPLIT_VIEW_FORMAT
from hashtrail.errors import ConfigError, FormatError, HashtrailError, VerificationError
from hashtrail.formats import merkle, note
from hashtrail.formats.notefile import read_checkpoint, read_signer
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_key import create_witness_key

__all__ = ["SPLIT_VIEW_FORMAT", "Cosigned", "SplitVerdict", "SplitView", "StaleCheckpoint",
           "WitnessKey", "check_split_view", "cosign", "new_witness_key", "witness_decide"]

_SPLIT_KEYS = frozenset({"format", "reason", "seen", "offered", "path"})
class StaleCheckpoint(HashtrailError):
    """A checkpoint older than the latest one the witness cosigned, and consistent with
    it: nothing wrong with the log, nothing new to cosign."""

    exit_code = 2
    hint = "offer the witness the ledger's latest checkpoint (`hashtrail ledger checkpoint`)"


class SplitView(VerificationError):
    """Two checkpoints under one ledger key that cannot both be views of one log."""

    def __init__(self, message: str, evidence: str) -> None:
        super().__init__(message)
        self.evidence = evidence


class SplitVerdict(NamedTuple):
    origin: str
    sizes: tuple[int, int]
    roots: tuple[bytes, bytes]


def _inconsistency(lo: note.Checkpoint, hi: note.Checkpoint, path: list[bytes]) -> str:
    """Why `lo` and `hi` (lo.size <= hi.size) cannot both hold; '' if `path` shows them
    consistent. Raises if `path` does not lead to hi's root (it proves nothing then)."""
    if lo.size == hi.size:
        if path:
            raise FormatError("two checkpoints of one size need no path")
        return "" if lo.root == hi.root else f"two different roots for tree size {lo.size}"
    if lo.size == 0:
        return ""           # the empty tree is a prefix of every tree
    old, new = merkle.consistency_roots(lo.size, hi.size, path)
    if new != hi.root:
        raise VerificationError(f"the consistency path does not lead to the root signed "
                                f"for size {hi.size}")
    return "" if old == lo.root else (
        f"the tree signed at size {hi.size} does not extend the one signed at size "
        f"{lo.size}: its first {lo.size} leaves have another root")


def witness_decide(get: merkle.GetNode, size: int, seen: bytes | None, offered: bytes,
                   trusted: note.Verifier) -> note.Checkpoint:
    """May a witness that last cosigned `seen` cosign `offered`? Both must be signed by
    the ledger key the witness trusts; `get`/`size` are the ledger's tree, used only to
    build the consistency path (every claim is checked against the signed roots).

    Returns the offered checkpoint when it is the seen one or extends it. Raises
    StaleCheckpoint for an older, consistent checkpoint; SplitView (with its evidence
    document) when the two are proven inconsistent; ConfigError when the tree given
    does not hold the larger checkpoint (then nothing can be decided)."""
    cp, _ = note.open_checkpoint(offered, [trusted])
    if seen is None:
        return cp
    old, _ = note.open_checkpoint(seen, [trusted])
    lo, hi = (cp, old) if cp.size < old.size else (old, cp)
    path: list[bytes] = []
    if 0 < lo.size < hi.size:
        if hi.size > size:
            raise ConfigError(f"the ledger file holds {size} leaves, fewer than the "
                              f"checkpoint at size {hi.size}: cannot check consistency",
                              hint="give the witness the ledger this checkpoint is from")
        path = merkle.full_consistency_path(get, lo.size, hi.size)
        if merkle.consistency_roots(lo.size, hi.size, path)[1] != hi.root:
            raise ConfigError(f"the ledger file is not the tree signed at size {hi.size}: "
                              "cannot check consistency",
                              hint="give the witness the ledger this checkpoint is from")
    why = _inconsistency(lo, hi, path)
    if why:
        doc = {"format": SPLIT_VIEW_FORMAT, "reason": why, "seen": seen.decode(),
               "offered": offered.decode(), "path": [h.hex() for h in path]}
        text = json.dumps(doc, indent=1)
        check_split_view(text, trusted)      # never write evidence that does not prove
        raise SplitView(f"split view: {why}", text)
    if cp.size < old.size:
        raise StaleCheckpoint(f"stale checkpoint: size {cp.size} is older than the "
                              f"checkpoint at size {old.size} this witness last cosigned "
                              "(and consistent with it): not cosigned again")
    return cp


def check_split_view(text: str, trusted: note.Verifier) -> SplitVerdict:
    """Check split-view evidence alone: both checkpoints signed by `trusted`, and proven
    inconsistent (same size, other roots; or a path to the larger root that gives the
    smaller size another root). Raises unless it proves a split view."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != SPLIT_VIEW_FORMAT:
            raise FormatError(f"not a {SPLIT_VIEW_FORMAT} document")
        extra = set(doc) - _SPLIT_KEYS
        if extra:
            raise FormatError(f"unknown field {sorted(extra)[0]!r} in split-view evidence")
        notes = [doc["seen"].encode("utf-8"), doc["offered"].encode("utf-8")]
        path = [bytes.fromhex(h) for h in doc.get("path", [])]
        if any(len(h) != 32 or h.hex() != x for h, x in zip(path, doc.get("path", []),
                                                           strict=True)):
            raise FormatError("path hashes are 64 lower-case hex characters")
    except HashtrailError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"malformed split-view evidence: {e}") from None
    a, _ = note.open_checkpoint(notes[0], [trusted])
    b, _ = note.open_checkpoint(notes[1], [trusted])
    if a.origin != b.origin:
        raise VerificationError("the two checkpoints name different origins")
    lo, hi = (a, b) if a.size <= b.size else (b, a)
    why = _inconsistency(lo, hi, path)
    if not why:
        raise VerificationError("the two checkpoints are consistent: this is not a split "
                                "view")
    return SplitVerdict(a.origin, (lo.size, hi.size), (lo.root, hi.root))


# -- the witness's operations ---------------------------------------------------------------

class WitnessKey(NamedTuple):
    name: str
    key_file: str
    cosigner_key: str       # what proof checkers trust (verify-proof --witness-key)


def new_witness_key(name: str, out: str | os.PathLike[str]) -> WitnessKey:
    """A new witness signing key named `name`, written to `out` (mode 0600, never
    overwritten)."""
    signer = create_witness_key(name, Path(out))
    return WitnessKey(signer.name, os.fspath(out), signer.verifier().cosigner_string())


class Cosigned(NamedTuple):
    cosigned: bytes             # the checkpoint note with this witness's cosignature added
    checkpoint: note.Checkpoint
    witness: str                # the witness's key name
    cosigner_key: str
    out: str | None             # where the cosigned checkpoint was also written


def cosign(ledger: str | os.PathLike[str], key: str | os.PathLike[str],
           state: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
           trusted: note.Verifier, out: str | os.PathLike[str] | None = None,
           now: int | None = None) -> Cosigned:
    """As the witness whose signing key is in `key`, cosign the checkpoint file
    `checkpoint` if it is the one in `state` (the last checkpoint this witness cosigned;
    missing on its first run) or extends it in `ledger`'s tree. Both checkpoints must be
    signed by `trusted`, the ledger key this witness was configured with (never the one
    in the ledger file). Updates `state`; writes the cosigned checkpoint to `out` too.

    A split view raises VerificationError and keeps its evidence next to the state file
    (<state>.inconsistent.json); an older, consistent checkpoint is StaleCheckpoint."""
    key_what = "a witness signer key file (PRIVATE+KEY+...)"
    witness = read_signer(key, key_what)
    data = read_checkpoint(checkpoint, "a signed checkpoint to cosign")
    state_p = Path(state)
    state_what = "the witness state file (the last checkpoint it cosigned)"
    # missing: this witness's first cosignature; anything else must be readable
    old_data = read_checkpoint(state_p, state_what) if state_p.exists() else None
    userfile.check_output(state_p, state_what)
    if out:
        userfile.check_output(out, "a file to write the cosigned checkpoint to")
    with Ledger.open(ledger) as led:
        try:
            cp = witness_decide(led.node, led.size, old_data, data, trusted)
        except SplitView as e:
            ev = state_p.with_suffix(".inconsistent.json")
            ev.write_text(e.evidence)
            raise VerificationError(f"refused to cosign: {e}",
                                    hint=f"split-view evidence (both signed checkpoints) "
                                         f"kept in {ev}; anyone holding the ledger's "
                                         f"verifier key can check it with `hashtrail ledger "
                                         f"check-evidence --verifier-key VKEY {ev}`") from e
    signed = note.cosign(data, witness, int(time.time()) if now is None else now)
    state_p.write_bytes(data)
    if out:
        Path(out).write_bytes(signed)
    return Cosigned(signed, cp, witness.name, witness.verifier().cosigner_string(),
                    os.fspath(out) if out else None)
