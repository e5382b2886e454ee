"""What a stored enrollment rests on, for the places that list devices (`hashtrail
devices list`, the fleet view): the signature of a collector the ledger trusts, nobody's
(the operator's word), or a signature that does not verify.

Why here and not only in `verify --ledger`: a device list that shows a label and board
should also say whether a collector signed them, and must not say "signed" for a row
whose signature the operator broke. The rules live here once (`check_enrollment`: a
key the ledger trusts, verifying over the row's own id, key, label, board, firmware
and time: formats.enrollment), and `ledger_verify._enrollments` applies them to the
raw rows it reads, naming the reason as its problem; one Ed25519 verify per device,
so a list of thousands of devices stays fast. The signer is named as the proof checkers name it,
`<key name>+<key id>` (`verify-proof`, the page's proof check), with the name the
ledger trusts the key under beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    # why an INVALID one is invalid, as `verify --ledger` names the problem (None else);
    # not in to_json: lists show `text`
    reason: str | None = field(default=None, compare=False)

    def text(self) -> str:
        if self.state == SIGNED:
            return f"enrollment signed by collector {self.signer}"
        if self.state == UNSIGNED:
            return "unsigned enrollment (operator's word)"
        return "enrollment signature does not verify (operator's word; see verify)"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "signer": self.signer, "collector": self.collector,
                "text": self.text()}


def check_enrollment(device_id: str, pub: bytes, label: Any, board: Any, fw: Any,
                     enrolled_at: Any, enroll_key: Any, enroll_sig: Any,
                     trusted: Mapping[str, str]) -> EnrollmentState:
    """What a stored enrollment rests on, by the one set of rules (module doc): its
    fields as stored (a raw row's values: of any type, as an operator's SQL may leave
    them), checked against the collectors the ledger trusts (`trusted`: verifier key
    string -> name). UNSIGNED without key and signature; SIGNED when the key is a
    collector verifier key the ledger trusts and its signature verifies over exactly
    this device's id, key, label, board, firmware and time; INVALID otherwise, with the
    reason."""
    if enroll_key is None and enroll_sig is None:
        return EnrollmentState(UNSIGNED)
    if not isinstance(enroll_key, str) or not isinstance(enroll_sig, bytes | memoryview):
        return EnrollmentState(INVALID, reason="enrollment signature without its collector "
                                               "key, or of the wrong type")
    try:
        v = note.Verifier.from_string(enroll_key)
    except HashtrailError as e:
        return EnrollmentState(INVALID, reason="enrollment signed by a key that is not a "
                                               f"collector verifier key: {e}")
    signer = f"{v.name}+{v.key_id.hex()}"
    name = trusted.get(enroll_key)
    if name is None:
        return EnrollmentState(INVALID, reason=f"enrollment signed by collector key "
                                               f"{signer}, which this ledger does not trust")
    ok = all(isinstance(x, str) for x in (label, board, fw)) and type(enrolled_at) is int \
        and enrollment_signed(v, bytes(enroll_sig), device_id, pub, label, board, fw,
                              enrolled_at)
    if not ok:
        return EnrollmentState(INVALID, reason=f"the enrollment signature by collector "
                                               f"{name} ({signer}) does not verify over the "
                                               "stored enrollment: its label, board, "
                                               "firmware or time was changed after the "
                                               "collector signed it, or the signature is "
                                               "another enrollment's")
    return EnrollmentState(SIGNED, signer, name)


def enrollment_state(dev: Device, trusted: Mapping[str, str]) -> EnrollmentState:
    """`dev`'s enrollment checked against the collectors the ledger trusts (`trusted`:
    verifier key string -> name, as `Ledger.trusted_collectors` lists them)."""
    return check_enrollment(dev.device_id, dev.pub, dev.label, dev.board, dev.fw,
                            dev.enrolled_at, dev.enroll_key, dev.enroll_sig, trusted)


def trusted_map(rows: list[tuple[str, str, int]]) -> dict[str, str]:
    """`Ledger.trusted_collectors()` rows as the mapping `enrollment_state` takes."""
    return {k: n for k, n, _ in rows}
