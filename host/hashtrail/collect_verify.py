"""Verification of one collection run, before anything is accepted.

Why a separate module: `collect` must decide accept-or-quarantine from the bytes as
received, and that decision is pure (no I/O): records from the anchor, the checkpoint
records found in the log, and the fresh checkpoint made for our nonce. It checks what
the collector relies on: record CRCs, seq continuity from the anchor, every `prev`
link (genesis bound to the key), per-entry signatures when present, every checkpoint's
ES256 signature (RFC 9052 Sig_structure over the exact bytes), and that the fresh
checkpoint carries our nonce and signs the head of the last entry we hold.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    encode_dss_signature,
)

from .errors import FormatError, VerificationError
from .store import Anchor

_GENESIS_TAG = b"hashtrail/genesis/v1"


@dataclass(frozen=True)
class CheckpointFields:
    device_id: bytes
    seq: int
    head: bytes
    t: int | None
    nonce: bytes | None


@dataclass(frozen=True)
class RawCheckpoint:
    cose: bytes
    nonce: bytes | None
    seq: int
    head: bytes
    verified: bool


@dataclass
class Report:
    fresh: CheckpointFields
    checkpoints: list[RawCheckpoint]
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _public_key(pub: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    except ValueError as e:
        raise VerificationError(f"device public key is not a valid P-256 point: {e}") from e


def _ecdsa_ok(key: ec.EllipticCurvePublicKey, digest: bytes, sig: bytes) -> bool:
    if len(sig) != 64:
        return False
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except InvalidSignature:
        return False


def _cose_parts(cose: bytes) -> tuple[bytes, bytes, bytes]:
    try:
        obj = cbor2.loads(cose)
    except Exception as e:
        raise FormatError(f"checkpoint is not CBOR: {e}") from e
    if (not isinstance(obj, cbor2.CBORTag) or obj.tag != 18 or not isinstance(obj.value, list)
            or len(obj.value) != 4):
        raise FormatError("checkpoint is not a tagged COSE_Sign1")
    prot, _unprot, payload, sig = obj.value
    if not all(isinstance(x, bytes) for x in (prot, payload, sig)):
        raise FormatError("checkpoint COSE_Sign1 fields have the wrong types")
    return prot, payload, sig


def checkpoint_fields(cose: bytes) -> CheckpointFields:
    """The signed claims of a checkpoint (not yet verified)."""
    _prot, payload, _sig = _cose_parts(cose)
    try:
        m: Any = cbor2.loads(payload)
    except Exception as e:
        raise FormatError(f"checkpoint payload is not CBOR: {e}") from e
    if not isinstance(m, dict):
        raise FormatError("checkpoint payload is not a map")
    did, seq, head = m.get(1), m.get(2), m.get(3)
    if (not isinstance(did, bytes) or not isinstance(seq, int) or not isinstance(head, bytes)
            or len(head) != 32 or m.get(0) != 1):
        raise FormatError("checkpoint payload lacks version, device id, seq or head")
    nonce = m.get(6)
    t = m.get(4)
    return CheckpointFields(did, seq, head, t if isinstance(t, int) else None,
                            nonce if isinstance(nonce, bytes) else None)


def checkpoint_signature_ok(key: ec.EllipticCurvePublicKey, cose: bytes) -> bool:
    prot, payload, sig = _cose_parts(cose)
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    return _ecdsa_ok(key, hashlib.sha256(tbs).digest(), sig)


def _record_crc_ok(rec: bytes) -> bool:
    return len(rec) >= 12 and struct.unpack_from("<I", rec, len(rec) - 4)[0] == zlib.crc32(
        rec[:-4])


def verify(pub: bytes, device_id: str, anchor: Anchor | None,
           entries: dict[int, tuple[bytes, bytes]], checkpoint_records: list[bytes],
           fresh_cose: bytes, nonce: bytes) -> Report:
    """Check a collection; findings name the seq and the reason of every problem."""
    key = _public_key(pub)
    fresh = checkpoint_fields(fresh_cose)
    rep = Report(fresh=fresh, checkpoints=[])
    f = rep.findings
    did = bytes.fromhex(device_id)
    if not checkpoint_signature_ok(key, fresh_cose):
        f.append("fresh checkpoint: bad signature")
    if fresh.nonce != nonce:
        f.append("fresh checkpoint does not carry our nonce (replayed?)")
    if fresh.device_id != did:
        f.append("fresh checkpoint names another device")
    start = 0 if anchor is None else anchor.seq + 1
    prev = (hashlib.sha256(_GENESIS_TAG + pub).digest() if anchor is None else anchor.head)
    heads: dict[int, bytes] = {} if anchor is None else {anchor.seq: anchor.head}
    for seq in range(start, fresh.seq + 1):
        got = entries.get(seq)
        if got is None:
            f.append(f"seq {seq}: missing (gap)")
            break
        rec, body = got
        if not _record_crc_ok(rec):
            f.append(f"seq {seq}: record CRC mismatch (edited)")
            break
        try:
            e: Any = cbor2.loads(body)
        except Exception:
            f.append(f"seq {seq}: entry is not CBOR")
            break
        if not isinstance(e, dict) or e.get(1) != seq:
            f.append(f"seq {seq}: entry carries another seq")
            break
        if e.get(5) != prev:
            f.append(f"seq {seq}: prev hash does not link to seq {seq - 1}"
                     + (" (wrong genesis)" if seq == 0 else " (edited or spliced)"))
            break
        h = hashlib.sha256(body).digest()
        if rec[1] & 1:
            n = struct.unpack_from("<H", rec, 6)[0]
            if not _ecdsa_ok(key, h, rec[8 + n:8 + n + 64]):
                f.append(f"seq {seq}: bad per-entry signature")
                break
        heads[seq] = h
        prev = h
    extra = sorted(s for s in entries if s > fresh.seq or s < start)
    if extra:
        rep.warnings.append(f"ignored {len(extra)} entries outside {start}..{fresh.seq}")
    if not f:
        if fresh.seq < start - 1:
            f.append(f"device head seq {fresh.seq} is behind our anchor {start - 1} "
                     "(rolled back or cloned device)")
        elif heads.get(fresh.seq) != fresh.head:
            f.append(f"fresh checkpoint head at seq {fresh.seq} does not match the chain")
    for rec in checkpoint_records:
        n = struct.unpack_from("<H", rec, 6)[0]
        cose = rec[8:8 + n]
        try:
            cf = checkpoint_fields(cose)
        except FormatError as ex:
            f.append(f"checkpoint record: {ex}")
            continue
        ok = _record_crc_ok(rec) and checkpoint_signature_ok(key, cose) and cf.device_id == did
        if not ok:
            f.append(f"checkpoint at seq {cf.seq}: bad CRC or signature")
        elif cf.seq in heads and heads[cf.seq] != cf.head:
            f.append(f"checkpoint at seq {cf.seq}: signs another head than the chain's")
            ok = False
        rep.checkpoints.append(RawCheckpoint(cose, cf.nonce, cf.seq, cf.head,
                                             ok and cf.seq in heads))
    return rep
