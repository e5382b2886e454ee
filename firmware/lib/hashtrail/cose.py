# Checkpoints (docs/FORMATS.md "Checkpoint"): a tagged COSE_Sign1 (RFC 9052, tag 18,
# alg ES256 = -7, kid = device id) over {v, device id, seq, head, t, up, nonce?}.
#
# API
#   checkpoint(key, device_id, seq, head, t, up, nonce=None) -> bytes
#       key: an object with .sign(digest) -> 64-byte r||s (identity.Identity), or a
#       P-256 private scalar (int) signed with p256.sign. device_id: 16 bytes,
#       head: 32 bytes (entry_hash of entry seq), t: uint or None, up: uint,
#       nonce: None or 1..32 bytes from the host.
#   sig_structure_digest(protected, payload) -> bytes(32)
#       SHA-256 of Sig_structure = ["Signature1", protected, h'', payload], hashed in
#       pieces (the structure itself is never built in RAM).
#   CoseError (ValueError)
#
# Allocation: the 64-byte signature, the returned bytes, and whatever p256.sign
# allocates. The protected header, payload and final message are written into one
# 400-byte scratch buffer made at import: made per call, a 400-byte block is often
# no longer found in a heap fragmented by signing's bigints (the device runs near
# its heap budget; tests/firmware/test_app_budget.py). Not reentrant (no threads).
import hashlib

from micropython import const

from hashtrail import cbor

_TAG_COSE_SIGN1 = const(18)
_ALG_ES256 = const(-7)
_HDR_ALG = const(1)
_HDR_KID = const(4)
# Payload keys
_P_V = const(0)
_P_DEVICE = const(1)
_P_SEQ = const(2)
_P_HEAD = const(3)
_P_T = const(4)
_P_UP = const(5)
_P_NONCE = const(6)

_CONTEXT = b"\x84\x6aSignature1"  # array(4) header + tstr "Signature1"
_EMPTY_BSTR = b"\x40"


_SCRATCH = bytearray(400)


class CoseError(ValueError):
    pass


def _bstr_head(n):
    w = cbor.Writer(bytearray(9))
    w._head(2, n)
    return bytes(w.buf[:w.n])


def sig_structure_digest(protected, payload):
    h = hashlib.sha256(_CONTEXT)
    h.update(_bstr_head(len(protected)))
    h.update(protected)
    h.update(_EMPTY_BSTR)
    h.update(_bstr_head(len(payload)))
    h.update(payload)
    return h.digest()


def _sign(key, digest):
    if isinstance(key, int):
        from hashtrail import p256

        return p256.sign(key, digest)
    return key.sign(digest)


def checkpoint(key, device_id, seq, head, t, up, nonce=None):
    if len(device_id) != 16:
        raise CoseError("device id must be 16 bytes")
    if len(head) != 32:
        raise CoseError("head must be 32 bytes")
    if nonce is not None and not 1 <= len(nonce) <= 32:
        raise CoseError("nonce must be 1 to 32 bytes")
    if seq < 0 or up < 0 or (t is not None and t < 0):
        raise CoseError("seq, t and up must be unsigned")
    buf = _SCRATCH
    mv = memoryview(buf)
    # protected header at [0:p_end)
    w = cbor.Writer(buf)
    w.map(2)
    w.uint(_HDR_ALG)
    w.int(_ALG_ES256)
    w.uint(_HDR_KID)
    w.bytes(device_id)
    p_end = w.n
    # payload at [p_end:q_end)
    w.map(7 if nonce is not None else 6)
    w.uint(_P_V)
    w.uint(1)
    w.uint(_P_DEVICE)
    w.bytes(device_id)
    w.uint(_P_SEQ)
    w.uint(seq)
    w.uint(_P_HEAD)
    w.bytes(head)
    w.uint(_P_T)
    if t is None:
        w.null()
    else:
        w.uint(t)
    w.uint(_P_UP)
    w.uint(up)
    if nonce is not None:
        w.uint(_P_NONCE)
        w.bytes(nonce)
    q_end = w.n
    protected = mv[0:p_end]
    payload = mv[p_end:q_end]
    sig = _sign(key, sig_structure_digest(protected, payload))
    if len(sig) != 64:
        raise CoseError("signature must be 64 bytes")
    # message after the two pieces: 18([protected, {}, payload, signature])
    out = cbor.Writer(mv[q_end:])
    out.tag(_TAG_COSE_SIGN1)
    out.array(4)
    out.bytes(protected)
    out.map(0)
    out.bytes(payload)
    out.bytes(sig)
    return bytes(mv[q_end:q_end + out.n])
