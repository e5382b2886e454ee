"""Strict canonical CBOR decoding: the one way hashtrail reads device CBOR.

Why: hosts verify the exact bytes a device signed or chained. A parser that accepts
two encodings of one value lets an attacker change bytes (and so hashes) without
changing meaning, or smuggle data past a re-encoding check. So an item is accepted
only when it re-encodes to the very same bytes under RFC 8949 section 4.2.1 core
deterministic encoding: shortest heads, definite lengths, shortest exact floats, map
keys sorted bytewise, no duplicates, no trailing bytes, and only the tags the caller
expects. Anything else raises FormatError.

cbor2's `canonical=True` sorts map keys length-first (RFC 7049); that order equals
RFC 8949's bytewise order whenever a map's keys all encode to the same length, which
is true of every hashtrail format. For other maps a bytewise re-encoder decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2

from .errors import FormatError

_U64 = (1 << 64) - 1


def loads(data: bytes, *, tags: frozenset[int] = frozenset(), what: str = "CBOR") -> Any:
    """Decode one canonical CBOR item that must fill `data` exactly."""
    data = bytes(data)
    try:
        value = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False,
                            max_depth=32)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
            MemoryError, LookupError) as e:
        raise FormatError(f"{what}: not valid CBOR ({e})") from None
    small_keys = _check_types(value, tags, what)
    # cbor2's length-first key order equals bytewise order when every map key is a
    # one-byte integer (-24..23); otherwise only the bytewise re-encoder decides.
    again = _encode_fast(value) if small_keys else _encode_rfc8949(value)
    if again != data:
        raise FormatError(f"{what}: not canonical CBOR (or trailing bytes)")
    return value


def _check_types(v: Any, tags: frozenset[int], what: str) -> bool:
    """Only plain CBOR data items: no semantic types (dates, bignums, simple values).

    Returns whether every map key inside is a one-byte integer (-24..23).
    """
    t = type(v)
    if t is int:
        if not -(_U64 + 1) <= v <= _U64:
            raise FormatError(f"{what}: integer out of the 64-bit range")
        return True
    if t in (bytes, str, float, bool) or v is None:
        return True
    small = True
    if t is list or t is tuple:  # tuples: arrays used as map keys or inside tags
        for x in v:
            small = _check_types(x, tags, what) and small
        return small
    if isinstance(v, Mapping):  # dict, or cbor2's frozendict for maps used as keys
        for k, x in v.items():
            if type(k) is not int or not -24 <= k <= 23:
                small = False
            small = _check_types(k, tags, what) and small
            small = _check_types(x, tags, what) and small
        return small
    if t is cbor2.CBORTag:
        if v.tag not in tags:
            raise FormatError(f"{what}: unexpected CBOR tag {v.tag}")
        return _check_types(v.value, tags, what)
    raise FormatError(f"{what}: unexpected CBOR item of type {t.__name__}")


def _encode_fast(v: Any) -> bytes:
    try:
        return bytes(cbor2.dumps(v, canonical=True))
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return b""


def _head(major: int, n: int) -> bytes:
    mt = major << 5
    if n < 24:
        return bytes([mt | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([mt | ai]) + n.to_bytes(size, "big")
    raise FormatError("CBOR length out of range")


def _encode_rfc8949(v: Any) -> bytes:
    """Deterministic encoding with bytewise key order (slow path, rarely used)."""
    if isinstance(v, Mapping):
        items = sorted((_encode_rfc8949(k), _encode_rfc8949(x)) for k, x in v.items())
        return _head(5, len(items)) + b"".join(k + x for k, x in items)
    if isinstance(v, (list, tuple)):
        return _head(4, len(v)) + b"".join(_encode_rfc8949(x) for x in v)
    if isinstance(v, cbor2.CBORTag):
        return _head(6, v.tag) + _encode_rfc8949(v.value)
    return _encode_fast(v)
