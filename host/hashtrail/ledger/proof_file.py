"""Proofs between a ledger file and proof files: `ledger prove`, `ledger consistency`
and `ledger verify-proof` as functions.

Why apart from hashtrail.ledger.proof: that module builds and checks proof documents
(dicts); this one opens the ledger file, reads the files a user names (a checkpoint to
prove against, a proof file to check), and turns what is wrong with them into bad input
(InputError, exit 2) that names the file. The checker still trusts only the keys the
caller passes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from hashtrail import userfile
from hashtrail.errors import InputError
from hashtrail.formats import note
from hashtrail.formats.notefile import read_checkpoint
from hashtrail.ledger import proof
from hashtrail.ledger.ledger_db import Ledger

PROOF_FILE = "a proof file (JSON, from `hashtrail ledger prove` or `consistency`)"


def prove(ledger: str | os.PathLike[str], device_id: str, seq: int,
          checkpoint: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The inclusion proof of a device's entry `seq` (hashtrail-proof/3), under the
    signed (possibly cosigned) checkpoint in the file `checkpoint`, or else the latest
    stored one."""
    cp = None
    if checkpoint is not None:
        cp = read_checkpoint(checkpoint, "a signed checkpoint of this ledger")
    with Ledger.open(ledger) as led:
        return proof.build_inclusion_proof(led, device_id, seq, cp)


def consistency(ledger: str | os.PathLike[str], old: int,
                new: int | None = None) -> dict[str, Any]:
    """The consistency proof between tree sizes `old` and `new` (default: the ledger's)."""
    with Ledger.open(ledger) as led:
        return proof.build_consistency_proof(led, old, new)


def check_proof(doc: dict[str, Any], trusted: note.Verifier) -> str:
    """Check a proof document (either type) against the ledger key the caller trusts;
    returns its description."""
    return proof.check_proof_doc(doc, trusted)[0]


class CheckedProof(NamedTuple):
    description: str                  # first line: the result; then what it rests on
    check: proof.ProofCheck | None    # for an inclusion proof

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": True, "result": self.description.split("\n")[0]}
        if self.check is not None:
            data["proof"] = self.check.to_json()
        return data


def verify_proof_file(path: str | os.PathLike[str], trusted: note.Verifier,
                      witness_keys: Sequence[note.Verifier] = (),
                      min_witnesses: int | None = None,
                      device_id: str | None = None,
                      collector_keys: Sequence[note.Verifier] = ()) -> CheckedProof:
    """Check the proof file `path` offline against the ledger key `trusted`, with at
    least `min_witnesses` (default: every distinct witness key given) valid
    cosignatures by `witness_keys`; `device_id` pins the device it must be for;
    `collector_keys` (when given) are the collectors one of which must have signed the
    enrollment (proof.check_inclusion_proof)."""
    need = len({(w.name, w.pub) for w in witness_keys}) if min_witnesses is None \
        else min_witnesses
    if device_id is not None:
        proof.canonical_device_id(device_id)
    text = userfile.read_text(path, PROOF_FILE, max_bytes=userfile.DOCUMENT)
    try:
        doc = proof.load_proof(text)
    except proof.ProofFormatError as e:
        raise InputError(f"{os.fspath(path)}: {e}; expected {PROOF_FILE}",
                         hint=e.hint) from None
    msg, pc = proof.check_proof_doc(doc, trusted, witness_keys, need, device_id,
                                    collector_keys)
    return CheckedProof(msg, pc)
