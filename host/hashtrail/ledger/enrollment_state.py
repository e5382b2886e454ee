"""What a stored enrollment rests on, for the places that list devices (`hashtrail
devices list`, the fleet view): the signature of a collector the ledger trusts, nobody's
(the operator's word), or a signature that does not verify.

Why here and not only in `verify --ledger`: a device list that shows a label and board
should also say whether a collector signed them, and must not say "signed" for a row
whose signature the operator broke. The rules are `ledger_verify._enrollments`'s (a
key the ledger trusts, verifying over the row's own id, key, label, board, firmware
and time: formats.enrollment); one Ed25519 verify per device, so a list of thousands
of devices stays fast. The signer is named as the proof checkers name it,
`<key name>+<key id>` (`verify-proof`, the page's proof check), with the name the
ledger trusts the key under beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hashtrail.errors import HashtrailError
from hashtrail.formats import note
from hashtrail.formats.enrollment import enrollment_signed
from hashtrail.ledger.storage import Device

SIGNED = "signed"
UNSIGNED = "unsigned"
INVALID = "invalid"


@dataclass(frozen=True)
class EnrollmentState:
    """One device's enrollment: `state` SIGNED (then `signer` and `collector` are set),
    UNSIGNED (no signature stored: enrolled before collectors signed enrollments, or
    stripped) or INVALID (a signature that does not verify, or by a key the ledger does
    not trust: `verify --ledger` names it as a problem)."""

    state: str
    signer: str | None = None       # "<key name>+<key id hex>" of the collector key
    collector: str | None = None    # the name the ledger trusts that key under

    def text(self) -> str:
        if self.state == SIGNED:
            return f"enrollment signed by collector {self.signer}"
        if self.state == UNSIGNED:
            return "unsigned enrollment (operator's word)"
        return "enrollment signature does not verify (operator's word; see verify)"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "signer": self.signer, "collector": self.collector,
                "text": self.text()}


def enrollment_state(dev: Device, trusted: Mapping[str, str]) -> EnrollmentState:
    """`dev`'s enrollment checked against the collectors the ledger trusts (`trusted`:
    verifier key string -> name, as `Ledger.trusted_collectors` lists them)."""
    if dev.enroll_key is None and dev.enroll_sig is None:
        return EnrollmentState(UNSIGNED)
    if dev.enroll_key is None or dev.enroll_sig is None:
        return EnrollmentState(INVALID)
    name = trusted.get(dev.enroll_key)
    try:
        v = note.Verifier.from_string(dev.enroll_key)
    except HashtrailError:
        return EnrollmentState(INVALID)
    if name is None or not enrollment_signed(v, bytes(dev.enroll_sig), dev.device_id,
                                             dev.pub, dev.label, dev.board, dev.fw,
                                             dev.enrolled_at):
        return EnrollmentState(INVALID)
    return EnrollmentState(SIGNED, f"{v.name}+{v.key_id.hex()}", name)


def trusted_map(rows: list[tuple[str, str, int]]) -> dict[str, str]:
    """`Ledger.trusted_collectors()` rows as the mapping `enrollment_state` takes."""
    return {k: n for k, n, _ in rows}
