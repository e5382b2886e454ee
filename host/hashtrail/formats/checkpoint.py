"""Device checkpoints (docs/FORMATS.md "Checkpoint"): COSE_Sign1, ES256, kid = device id.

Why: a checkpoint is the device's signed statement of its chain head (and of the
host's fresh nonce, against replay). The signature is checked over the RFC 9052
Sig_structure built from the protected header and payload bytes exactly as received,
never re-encoded. Verb pair: `parse_checkpoint` (structure only) and
`verify_checkpoint` (structure + signature against a known device key); `signed_by`
is the signature half alone, for callers that report format and signature apart.
Every host path (collect, chain verifier, reconcile, `verify --ledger`, evidence)
reads checkpoints through these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from hashtrail.errors import FormatError, VerificationError
from hashtrail.formats import cbor_strict
from hashtrail.formats.cbor_strict import int_keys, is_uint
from hashtrail.formats.keys import DeviceId, DeviceKey, N

__all__ = [
    "ALG_ES256",
    "CP_DEVICE",
    "CP_HEAD",
    "CP_NONCE",
    "CP_SEQ",
    "CP_T",
    "CP_UP",
    "CP_V",
    "HDR_ALG",
    "HDR_KID",
    "TAG_COSE_SIGN1",
    "VERSION",
    "Checkpoint",
    "N",
    "check_signature",
    "parse_checkpoint",
    "sig_structure",
    "signed_by",
    "verify_checkpoint",
]

TAG_COSE_SIGN1 = 18
ALG_ES256 = -7
VERSION = 1
# Protected header keys (RFC 9052: alg, kid).
HDR_ALG = 1
HDR_KID = 4
# Payload map keys (FORMATS.md "Checkpoint"); CP_NONCE only when the host sent one.
CP_V, CP_DEVICE, CP_SEQ, CP_HEAD, CP_T, CP_UP, CP_NONCE = range(7)
_PAYLOAD_KEYS = {CP_V, CP_DEVICE, CP_SEQ, CP_HEAD, CP_T, CP_UP}


@dataclass(frozen=True)
class Checkpoint:
    device_id: DeviceId
    seq: int
    head: bytes
    t: int | None
    up: int
    nonce: bytes | None
    protected: bytes
    payload: bytes
    signature: bytes
    raw: bytes


def _uint(v: Any, name: str) -> int:
    if not is_uint(v):
        raise FormatError(f"checkpoint {name} must be an unsigned integer")
    return int(v)


def parse_checkpoint(raw: bytes) -> Checkpoint:
    """Structure only: FormatError unless raw is a canonical hashtrail checkpoint."""
    raw = bytes(raw)
    cp = _one_checkpoint(raw)
    if cp is not None:
        return cp
    return _parse_reference(raw)


# A checkpoint as every device writes it, as one pattern: the canonical encoding of
# tag 18 [protected {1: -7, 4: kid}, {}, payload, signature (64)], the payload the map
# {0: 1, 1: device (16), 2: seq, 3: head (32), 4: t or null, 5: up} with an optional
# 6: nonce of 1..32 bytes. Each integer is in its shortest head (_UINT, as the entry
# pattern in formats.entry), the nonce's byte-string head is the shortest for its
# length; what a pattern cannot say (the payload's length byte, the map's size, the
# payload's device being the kid) `_one_checkpoint` checks.
_UINT = (rb"(?:[\x00-\x17]|\x18[\x18-\xff]|\x19[\x01-\xff].|\x1a(?:[\x01-\xff].|\x00[\x01-\xff])..|"
         rb"\x1b(?:[\x01-\xff]...|\x00[\x01-\xff]..|\x00\x00[\x01-\xff].|\x00\x00\x00[\x01-\xff])....)")
_NONCE = b"(?:" + b"|".join((b"\\x%02x" % (0x40 + n) if n < 24 else b"\\x58\\x%02x" % n)
                           + b".{%d}" % n for n in range(1, 33)) + b")"
_ONE_CHECKPOINT = re.compile(
    rb"\xd2\x84\x55(\xa2\x01\x26\x04\x50(.{16}))\xa0\x58(.)"
    rb"(([\xa6\xa7])\x00\x01\x01\x50(.{16})\x02(" + _UINT + rb")\x03\x58\x20(.{32})"
    rb"\x04(\xf6|" + _UINT + rb")\x05(" + _UINT + rb")(?:\x06(" + _NONCE + rb"))?)"
    rb"\x58\x40(.{64})", re.S).fullmatch
# What a shortest head of 1, 2, 3, 5 or 9 bytes adds to its argument, read big-endian
# as one integer: its initial byte (0x18 to 0x1b, none for an argument below 24).
_BIAS = [0, 0, 0x18 << 8, 0x19 << 16, 0, 0x1A << 32, 0, 0, 0, 0x1B << 64]


def _uint_of(head: bytes) -> int:
    return int.from_bytes(head, "big") - _BIAS[len(head)]


def _one_checkpoint(raw: bytes) -> Checkpoint | None:
    """`_parse_reference` for the checkpoints `_ONE_CHECKPOINT` matches (None for any
    other: the reference then decides and words the error), at a fraction of its cost:
    the pattern and the checks below admit only the canonical encoding of a value the
    reference accepts, and the result is the reference's (tests/host/
    test_checkpoint_fast.py holds the two to each other on every mutation)."""
    m = _ONE_CHECKPOINT(raw)
    if m is None:
        return None
    protected, kid, size, payload, mapsize, dev, seq, head, t, up, nonce, sig = m.groups()
    if (size[0] != len(payload) or dev != kid
            or mapsize != (b"\xa6" if nonce is None else b"\xa7")):
        return None
    if nonce is not None:
        nonce = nonce[2:] if nonce[0] == 0x58 else nonce[1:]
    return Checkpoint(device_id=DeviceId(kid.hex()), seq=_uint_of(seq), head=head,
                      t=None if t == b"\xf6" else _uint_of(t), up=_uint_of(up), nonce=nonce,
                      protected=protected, payload=payload, signature=sig, raw=raw)


def _parse_reference(raw: bytes) -> Checkpoint:
    """parse_checkpoint, through the strict CBOR decoder (any checkpoint)."""
    msg = cbor_strict.loads(raw, tags=frozenset({TAG_COSE_SIGN1}), what="checkpoint")
    if type(msg) is not cbor2.CBORTag or msg.tag != TAG_COSE_SIGN1:
        raise FormatError("checkpoint must be a tagged COSE_Sign1 (tag 18)")
    parts = msg.value
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise FormatError("COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, sig = parts
    if type(protected) is not bytes or type(payload) is not bytes or type(sig) is not bytes:
        raise FormatError("COSE_Sign1 protected, payload and signature must be byte strings")
    if not isinstance(unprotected, Mapping) or len(unprotected) != 0:
        raise FormatError("checkpoint unprotected header must be empty")
    if len(sig) != 64:
        raise FormatError("ES256 signature must be 64 bytes (r || s)")
    hdr = cbor_strict.loads(protected, what="checkpoint protected header")
    if not int_keys(hdr) or set(hdr) != {HDR_ALG, HDR_KID} or type(hdr[HDR_ALG]) is not int \
            or hdr[HDR_ALG] != ALG_ES256 \
            or type(hdr[HDR_KID]) is not bytes or len(hdr[HDR_KID]) != 16:
        raise FormatError("checkpoint protected header must be {1: -7 (ES256), 4: kid (16)}")
    p = cbor_strict.loads(payload, what="checkpoint payload")
    if not int_keys(p) or set(p) not in (_PAYLOAD_KEYS, _PAYLOAD_KEYS | {CP_NONCE}):
        raise FormatError("checkpoint payload must be a map with keys 0..5 (6 optional)")
    if p[CP_V] != VERSION or type(p[CP_V]) is not int:
        raise FormatError(f"unsupported checkpoint version {p[CP_V]!r}")
    if p[CP_DEVICE] != hdr[HDR_KID]:
        raise FormatError("checkpoint kid and payload device id differ")
    head = p[CP_HEAD]
    if type(head) is not bytes or len(head) != 32:
        raise FormatError("checkpoint head must be 32 bytes")
    t = p[CP_T]
    if t is not None:
        _uint(t, "t")
    nonce = p.get(CP_NONCE)
    if nonce is not None and (type(nonce) is not bytes or not 1 <= len(nonce) <= 32):
        raise FormatError("checkpoint nonce must be 1 to 32 bytes")
    return Checkpoint(device_id=DeviceId(hdr[HDR_KID].hex()), seq=_uint(p[CP_SEQ], "seq"),
                      head=head, t=t, up=_uint(p[CP_UP], "up"), nonce=nonce, protected=protected,
                      payload=payload, signature=sig, raw=raw)


def _bstr(b: bytes) -> bytes:
    return cbor_strict.head(2, len(b)) + b


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 section 4.4: ["Signature1", protected, h'', payload] as CBOR."""
    return b"\x84\x6aSignature1" + _bstr(protected) + b"\x40" + _bstr(payload)


def check_signature(pub: bytes, message: bytes, sig: bytes) -> bool:
    """ECDSA P-256 / SHA-256 over message with a 64-byte r || s signature."""
    return DeviceKey(pub).signs(message, sig)


def signed_by(cp: Checkpoint, key: DeviceKey) -> bool:
    """Whether this device key made the checkpoint (its kid and its signature)."""
    return cp.device_id == key.id and key.signs(sig_structure(cp.protected, cp.payload),
                                                cp.signature)


def verify_checkpoint(raw: bytes, key: DeviceKey | bytes, *,
                      nonce: bytes | None = None) -> Checkpoint:
    """Parse, then check kid and signature against the device key (a DeviceKey or its
    65-byte public key), and the nonce when given."""
    cp = parse_checkpoint(raw)
    if not isinstance(key, DeviceKey):
        key = DeviceKey(key)
    if key.id != cp.device_id:
        raise VerificationError(f"checkpoint is from device {cp.device_id}, not {key.id}")
    if not signed_by(cp, key):
        raise VerificationError(f"checkpoint seq {cp.seq} of device {cp.device_id}: "
                                "bad signature")
    if nonce is not None and cp.nonce != nonce:
        raise VerificationError(f"checkpoint seq {cp.seq}: nonce does not match the "
                                "challenge (replayed checkpoint?)")
    return cp
