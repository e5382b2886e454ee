"""Enrollment statements: a collector's signature over "this key is device D, enrolled as
label L on board B with firmware F at time T" (docs/BUNDLE.md "Enrollment signatures").

Why: entries and checkpoints carry the device's own signature, but an enrollment is a
claim about the device made by the collector that met it. Without a signature of its
own, whoever runs a ledger can change a stored label or board, or say a collector
enrolled a device it never did, and no proof shows it. So the collector signs each
enrollment it exports with its identity key (the Ed25519 key that signs its bundles),
and the ledger keeps that signature with the device and hands it on in proofs.

The signed bytes are a C2SP signed-note text (c2sp.org/signed-note), UTF-8, one field
a line, in this order, each line ending in a newline:

    hashtrail enrollment v1
    device <device id: 32 lower-case hex>
    pub <SEC1 uncompressed P-256 key: 130 lower-case hex>
    label <label>
    board <board>
    fw <firmware version>
    enrolled_at <unix seconds, decimal, no leading zeros>

The first line separates these signatures from everything else the collector key signs
(a bundle signature covers "hashtrail-bundle-signature/1\\n" || SHA-256, never a text
starting with this line). The signature is Ed25519 over exactly these bytes, which is
what a note signer makes: `note.sign_note(text, [collector key])` is a signed note any
C2SP verifier opens with the collector's verifier key. Texts are what a bundle admits
(at most 200 characters, no control character), and no DEL (a note text has none);
a value that cannot be written so is a FormatError, never a second spelling.
"""

from __future__ import annotations

import re

from hashtrail.errors import FormatError
from hashtrail.formats import note
from hashtrail.formats.keys import device_id, parse_device_id

CONTEXT = "hashtrail enrollment v1"
MAX_TEXT = 200
SIG_SIZE = 64
_BAD = re.compile("[\x00-\x1f\x7f]")


def _text(what: str, value: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or _BAD.search(value):
        raise FormatError(f"enrollment {what} cannot be signed: at most {MAX_TEXT} "
                          "characters, no control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"enrollment {what} is not valid Unicode text") from None
    return value


def enrollment_text(device: str, pub: bytes, label: str, board: str, fw: str,
                    enrolled_at: int) -> str:
    """The note text a collector signs for this enrollment (module doc). The device id
    must be the canonical one of `pub`."""
    did = parse_device_id(device)
    if len(pub) != 65 or device_id(pub) != did:
        raise FormatError(f"enrollment of device {did}: the key is not that device's")
    if type(enrolled_at) is not int or not 0 <= enrolled_at < 1 << 63:
        raise FormatError("enrollment time must be a non-negative integer")
    return (f"{CONTEXT}\ndevice {did}\npub {pub.hex()}\nlabel {_text('label', label)}\n"
            f"board {_text('board', board)}\nfw {_text('fw', fw)}\n"
            f"enrolled_at {enrolled_at}\n")


def sign_enrollment(signer: note.Signer, device: str, pub: bytes, label: str, board: str,
                    fw: str, enrolled_at: int) -> bytes:
    """The collector's 64-byte Ed25519 signature over the enrollment's text."""
    text = enrollment_text(device, pub, label, board, fw, enrolled_at)
    return signer.sign(text.encode("utf-8"))


def enrollment_signed(verifier: note.Verifier, sig: bytes, device: str, pub: bytes,
                      label: str, board: str, fw: str, enrolled_at: int) -> bool:
    """Whether `sig` is `verifier`'s signature over exactly this enrollment. Fields that
    no text can carry are False (nothing signed them)."""
    try:
        text = enrollment_text(device, pub, label, board, fw, enrolled_at)
    except FormatError:
        return False
    return len(sig) == SIG_SIZE and verifier.verify(text.encode("utf-8"), sig)


def enrollment_note(verifier: note.Verifier, sig: bytes, device: str, pub: bytes,
                    label: str, board: str, fw: str, enrolled_at: int) -> bytes:
    """The enrollment as a C2SP signed note (its text and one signature line by the
    collector key), for tools that speak signed notes (Go's note.Open)."""
    text = enrollment_text(device, pub, label, board, fw, enrolled_at)
    return note.format_note(note.Note(text, (note.Signature(verifier.name, verifier.key_id,
                                                            sig),)))
