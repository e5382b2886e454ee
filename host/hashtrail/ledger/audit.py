"""`hashtrail verify` as a function: re-verify a ledger file, and tie it to the key the
caller trusts.

Why the second part: hashtrail.ledger.ledger_verify re-derives every table from
device-signed data and checks the stored checkpoints against the key the ledger file
itself carries. That proves the file is self-consistent, not whose it is: anyone can
build a replica with a key of their own and sign whatever history they like. A party
re-verifying a replica it does not control brings the ledger key it trusts; then every
signed checkpoint in the file must verify under that key and match the stored tree, and
a file without any such checkpoint fails (nothing ties it to the key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hashtrail.errors import HashtrailError
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import LedgerReport, verify_ledger


@dataclass
class TrustedReport:
    """What the trusted key vouches for: how many checkpoints, up to which tree size."""

    key: str
    checkpoints: int = 0
    size: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "checkpoints": self.checkpoints, "size": self.size,
                "problems": self.problems}


def _label(data: bytes) -> str:
    """Which checkpoint, for a message (its size is read unverified: a label only)."""
    try:
        return f"checkpoint at size {note.parse_checkpoint(note.parse_note(data).text).size}"
    except HashtrailError:
        return "a stored checkpoint (not a checkpoint note)"


def check_trusted(led: Ledger, trusted: note.Verifier) -> TrustedReport:
    """Every stored checkpoint must be signed by `trusted` and match the stored tree.

    The tree itself is re-derived from the leaves by verify_ledger; this ties it to the
    key the caller trusts, whatever key the file names as its own."""
    rep = TrustedReport(trusted.to_string())
    for data in led.checkpoints():
        try:
            cp, _ = note.open_checkpoint(data, [trusted])
        except HashtrailError as e:
            rep.problems.append(f"{_label(data)} is not signed by the trusted key "
                                f"{trusted.name}+{trusted.key_id.hex()} ({e})")
            continue
        try:
            if cp.size > led.size or led.root(cp.size) != cp.root:
                raise HashtrailError("its root is not the ledger's")
        except HashtrailError as e:
            rep.problems.append(f"checkpoint at size {cp.size} signed by the trusted key "
                                f"does not match the log: {e}")
            continue
        rep.checkpoints += 1
        rep.size = cp.size if rep.size is None else max(rep.size, cp.size)
    if rep.checkpoints == 0 and not rep.problems:
        rep.problems.append("the ledger holds no signed checkpoint, so nothing ties it to "
                            "the trusted key (the operator signs one with "
                            "`hashtrail ledger checkpoint`)")
    return rep


@dataclass
class Audit:
    """The whole-ledger report, and (with a trusted key) what that key vouches for."""

    report: LedgerReport
    trusted: TrustedReport | None = None

    @property
    def ok(self) -> bool:
        return self.report.ok and (self.trusted is None or not self.trusted.problems)

    @property
    def expected_anomalies(self) -> int:
        """Anomalies that are no integrity problem (a device's own report, held
        entries...), counted over devices that raise no alarm."""
        return sum(len(d.anomalies) for d in self.report.devices if not d.alarm)

    def as_json(self) -> dict[str, Any]:
        out = self.report.as_json()
        out["ok"] = self.ok
        if self.trusted is not None:
            out["trusted"] = self.trusted.as_json()
        return out


def audit(ledger: str | os.PathLike[str], device: str | None = None,
          trusted: note.Verifier | None = None) -> Audit:
    """Re-verify the ledger file `ledger` from raw bytes (every table is checked;
    `device` only narrows the devices reported); with `trusted`, also check every
    stored checkpoint against that key."""
    with Ledger.open(ledger) as led:
        rep = verify_ledger(led, device)
        trust = check_trusted(led, trusted) if trusted is not None else None
    return Audit(rep, trust)
