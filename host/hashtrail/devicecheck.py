"""Device statements as the ledger checks them: entries, per-entry signatures, checkpoints.

Why here and pure: reconcile, `verify --ledger` and `check-evidence` must all judge the
same raw bytes the same way, with no storage in the way. Everything is read with the
strict canonical decoder (docs/FORMATS.md: bytes that do not re-encode identically are
refused) and signatures are checked with OpenSSL (via `cryptography`) over the exact
bytes received: the entry hash for per-entry signatures, the RFC 9052 Sig_structure for
checkpoints. Keys are parsed once per device (`DeviceKey`) because that dominates the
cost of a per-entry-signed chain.

Entries are the hot path of reconcile, so `parse_entry` first tries `_fast_entry`, an
equally strict but narrower canonical check (it only ever says "canonical" or "ask the
reference"); anything it is unsure about goes to `cbor_strict.loads`, which decides.
tests/host/test_devicecheck.py holds the two to the same verdict on every mutation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from . import cbor_strict
from .errors import FormatError, VerificationError

GENESIS_TAG = b"hashtrail/genesis/v1"
KIND_TIME_SET = 2
KIND_KEY_CREATED = 3
_ENTRY_KEYS = list(range(9))
_COSE_TAG = 18
_SIG1_CONTEXT = b"\x84\x6aSignature1"
_ES256_PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
_U64 = 1 << 64
_CBOR_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
                MemoryError, LookupError)


class EntryFields(NamedTuple):
    seq: int
    t: int | None
    up: int
    boot: int
    prev: bytes
    fw: str
    kind: int
    body: Any


class CheckpointFields(NamedTuple):
    device_id: bytes
    seq: int
    head: bytes
    t: int | None
    up: int
    nonce: bytes | None


def genesis_prev(pub: bytes) -> bytes:
    return hashlib.sha256(GENESIS_TAG + pub).digest()


def _uint(v: Any) -> bool:
    return type(v) is int and 0 <= v < 1 << 64


_SCALARS = frozenset({str, bytes, float, bool, type(None)})


def _plain(v: Any) -> bool:
    """Only plain data whose canonical form cbor2 writes bytewise-sorted: 64-bit ints,
    text, bytes, floats, bools, null, arrays, and maps keyed by one-byte ints (-24..23)."""
    t = type(v)
    if t is int:
        return bool(-_U64 <= v < _U64)
    if t in _SCALARS:
        return True
    if t is list:
        for x in v:
            if not _plain(x):
                return False
        return True
    if t is dict:
        for k, x in v.items():
            if type(k) is not int or not -24 <= k <= 23:
                return False
            tx = type(x)     # scalars inline: SenML records are maps of scalars
            if tx not in _SCALARS and not (tx is int and -_U64 <= x < _U64) \
                    and not _plain(x):
                return False
        return True
    return False


def _fast_entry(body: bytes) -> EntryFields | None:
    """The entry's fields if `body` is provably a canonical version-1 entry, else None.

    Why it is as strict as the reference path: the top level must be the keys 0..8 in
    that order (the decoded dict keeps the encoded order) with the documented field
    types, the body (key 8) plain data (so cbor2's `canonical=True` key order is RFC
    8949 bytewise order and no semantic type hides behind a Python value), and the
    bytes after the map head must equal the canonical encoding of the array
    [0, v0, 1, v1, ..., 8, v8] after its head: byte for byte, the canonical map body
    (shortest heads and floats, sorted keys, no tags, simple values or trailing
    bytes). One array encode is used because cbor2 sorts map keys slowly. It never
    raises: anything else returns None and the reference path decides (and words the
    error)."""
    try:
        # an indefinite length or a duplicate key cannot survive the byte-exact
        # comparison below; nesting deeper than the reference allows could, so it is
        # limited here the same way
        m = cbor2.loads(body, max_depth=32)
    except _CBOR_ERRORS:
        return None
    if type(m) is not dict or list(m) != _ENTRY_KEYS or body[0] != 0xA9:
        return None
    v0, seq, t, up, boot, prev, fw, kind, payload = m.values()
    if type(v0) is not int or v0 != 1 or type(seq) is not int or not 0 <= seq < _U64 \
            or not (t is None or (type(t) is int and 0 <= t < _U64)) \
            or type(up) is not int or not 0 <= up < _U64 \
            or type(boot) is not int or not 0 <= boot < _U64 or type(prev) is not bytes \
            or len(prev) != 32 or type(fw) is not str or type(kind) is not int \
            or not 0 <= kind <= 5 or not _plain(payload):
        return None
    try:
        again = cbor2.dumps([0, v0, 1, seq, 2, t, 3, up, 4, boot, 5, prev, 6, fw, 7, kind,
                             8, payload], canonical=True)
    except _CBOR_ERRORS:
        return None
    if again[0] != 0x92 or body[1:] != again[1:]:
        return None
    return _new_fields(EntryFields, (seq, t, up, boot, prev, fw, kind, payload))


_new_fields = tuple.__new__     # NamedTuple construction without its Python-level __new__


def parse_entry(body: bytes) -> EntryFields:
    """Decode entry bytes strictly; FormatError if they are not a version-1 entry."""
    if type(body) is not bytes:
        body = bytes(body)
    fast = _fast_entry(body)
    if fast is not None:
        return fast
    return _entry_fields(cbor_strict.loads(body, what="entry"))


def _int_keys(m: Any) -> list[int]:
    """A map's keys in order if they are all integers, else []: text or bytes keys must
    not reach sorted() (TypeError), and a `true` key must not pass for 1 (True == 1)."""
    if not isinstance(m, dict) or any(type(k) is not int for k in m):
        return []
    return sorted(m)


def _entry_fields(m: Any) -> EntryFields:
    """The reference schema check of a strictly decoded entry."""
    if _int_keys(m) != _ENTRY_KEYS:
        raise FormatError("entry: not a map with keys 0..8")
    if type(m[0]) is not int or m[0] != 1 or not _uint(m[1]) \
            or not (m[2] is None or _uint(m[2])) \
            or not _uint(m[3]) or not _uint(m[4]) or not isinstance(m[5], bytes) \
            or len(m[5]) != 32 or not isinstance(m[6], str) or not _uint(m[7]) or m[7] > 5:
        raise FormatError("entry: a field has the wrong type, size or version")
    return EntryFields(m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8])


class DeviceKey:
    """A device's P-256 public key, parsed once, with the checks the ledger needs."""

    def __init__(self, pub: bytes) -> None:
        if len(pub) != 65 or pub[0] != 4:
            raise FormatError("device key is not a 65-byte SEC1 uncompressed point")
        try:
            self._key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
        except ValueError as e:
            raise FormatError("device key is not a point on P-256") from e
        self.pub = pub
        self.device_id = hashlib.sha256(pub).digest()[:16]
        self.genesis_prev = genesis_prev(pub)

    def signed(self, digest: bytes, sig: bytes) -> bool:
        """ECDSA P-256 verify of a 64-byte r||s over a SHA-256 digest."""
        if len(sig) != 64:
            return False
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        if not r or not s:
            return False
        try:
            self._key.verify(encode_dss_signature(r, s), digest, _ES256_PREHASHED)
        except InvalidSignature:
            return False
        return True

    def check_first_entry(self, e: EntryFields) -> None:
        """seq 0 is the key-created entry carrying this very key (docs/FORMATS.md)."""
        if e.kind != KIND_KEY_CREATED or not isinstance(e.body, dict) \
                or e.body.get(1) != self.pub:
            raise VerificationError("entry 0 is not the key-created entry of this key")

    def checkpoint(self, cose: bytes) -> CheckpointFields:
        """Parse a COSE_Sign1 checkpoint and check its ES256 signature by this key."""
        item = cbor_strict.loads(cose, tags=frozenset({_COSE_TAG}), what="checkpoint")
        tag = getattr(item, "tag", None)
        value = getattr(item, "value", None)
        if tag != _COSE_TAG or not isinstance(value, list | tuple) or len(value) != 4:
            raise FormatError("checkpoint: not a tagged COSE_Sign1")
        prot, unprot, payload, sig = value
        if not isinstance(prot, bytes) or not isinstance(unprot, Mapping) or unprot \
                or not isinstance(payload, bytes) \
                or not isinstance(sig, bytes) or len(sig) != 64:
            raise FormatError("checkpoint: malformed COSE_Sign1 fields")
        hdr = cbor_strict.loads(prot, what="checkpoint protected header")
        if hdr != {1: -7, 4: self.device_id}:
            raise VerificationError("checkpoint: not ES256 with this device's kid")
        p = cbor_strict.loads(payload, what="checkpoint payload")
        keys = _int_keys(p)
        if keys not in ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6]) or p[0] != 1 \
                or p[1] != self.device_id or not _uint(p[2]) or not isinstance(p[3], bytes) \
                or len(p[3]) != 32 or not (p[4] is None or _uint(p[4])) or not _uint(p[5]) \
                or (6 in p and not (isinstance(p[6], bytes) and 1 <= len(p[6]) <= 32)):
            raise FormatError("checkpoint: payload fields have the wrong types or device")
        h = hashlib.sha256(_SIG1_CONTEXT)
        h.update(_bstr_head(len(prot)) + prot + b"\x40" + _bstr_head(len(payload)) + payload)
        if not self.signed(h.digest(), sig):
            raise VerificationError("checkpoint: ES256 signature does not verify")
        return CheckpointFields(p[1], p[2], p[3], p[4], p[5], p.get(6))


def _bstr_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x40 | n])
    if n < 0x100:
        return bytes([0x58, n])
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")
