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

Two decoders, one verdict: `loads` is the reference (decode, walk the types, re-encode,
compare bytes), and `quick_loads` is the hot path for entries, about three times
cheaper, which only ever answers "this is canonical plain data, here is the value"
or "ask `loads`" (None). Why its shortcut is sound: with every tag refused and
indefinite lengths and duplicate keys off, each CBOR item decodes to exactly one
Python value of the item's own major type, and no item can be encoded in fewer bytes
than its canonical form; ints, lengths and floats have exactly one encoding of that
minimum size (NaN payloads do not, so NaN is left to `loads`). So bytes whose length
equals the canonical size of what they decode to, with every map's keys already in
bytewise order, are the canonical encoding. Trailing bytes make the length differ.
tests/host/test_devicecheck.py holds the two to the same verdict on every mutation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import cbor2

from hashtrail.errors import FormatError

_U64 = (1 << 64) - 1
_DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError,
                  RecursionError, MemoryError, LookupError)
_MAX_DEPTH = 32


def is_uint(v: Any) -> bool:
    """A CBOR unsigned integer as decoded: an int (not a bool) in 0 .. 2**64 - 1."""
    return type(v) is int and 0 <= v <= _U64


def int_keys(m: Any) -> bool:
    """A dict whose keys are all plain ints: canonical CBOR allows keys of any type, and
    Python compares True == 1, so `sorted(m)` alone can raise (bytes vs int) or be fooled
    (a `true` key standing in for key 1)."""
    return type(m) is dict and all(type(k) is int for k in m)  # (bool is not int)


def loads(data: bytes, *, tags: frozenset[int] = frozenset(), what: str = "CBOR") -> Any:
    """Decode one canonical CBOR item that must fill `data` exactly."""
    data = bytes(data)
    try:
        value = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False,
                            max_depth=_MAX_DEPTH)
    except _DECODE_ERRORS as e:
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


def head(major: int, n: int) -> bytes:
    """The shortest head for major type `major` and argument n (RFC 8949 4.2.1)."""
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
        return head(5, len(items)) + b"".join(k + x for k, x in items)
    if isinstance(v, (list, tuple)):
        return head(4, len(v)) + b"".join(_encode_rfc8949(x) for x in v)
    if isinstance(v, cbor2.CBORTag):
        return head(6, v.tag) + _encode_rfc8949(v.value)
    return _encode_fast(v)


# -- the fast path ---------------------------------------------------------------------

class _Tagged(Exception):
    """Raised inside cbor2 for any tag: the fast path knows only untagged data."""


def _refuse_tag(_decoder: Any) -> NoReturn:
    raise _Tagged


class _EveryTag(Mapping[int, Any]):
    """cbor2 semantic decoders for every tag number, all refusing.

    Some tags decode to plain values (self-described CBOR to its content, bignums to
    ints, shared and string references to repeated values, shorter than writing them
    out); refusing them all keeps the one-item-one-value correspondence."""

    def __getitem__(self, tag: int) -> Any:
        return _refuse_tag

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_TAGS = _EveryTag()


def head_size(n: int) -> int:
    """Size of the shortest head for argument n (0 <= n < 2**64)."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 1 << 32 else 9


def canonical_size(v: Any) -> int:
    """Canonical encoded size of plain data, or -1 when the fast path should not judge:
    NaN, ints beyond 64 bits, map keys other than ascending ints 0..23 (the only keys
    hashtrail writes), anything but int/float/str/bytes/bool/None/list/dict."""
    t = type(v)
    if t is dict:
        n = len(v)
        total = (1 if n < 24 else head_size(n)) + n     # the head, one byte per key
        last = -1
        for k in v:
            if type(k) is not int or not last < k < 24:  # (so also bytewise order)
                return -1
            last = k
        for x in v.values():
            tx = type(x)                                # the usual scalars inline
            if tx is str and x.isascii():
                n = len(x)
                total += n + (1 if n < 24 else head_size(n))
            elif tx is int and 0 <= x <= _U64:
                total += 1 if x < 24 else head_size(x)
            elif tx is float and x == x:
                total += len(cbor2.dumps(x, canonical=True))
            else:
                n = canonical_size(x)
                if n < 0:
                    return -1
                total += n
        return total
    if t is list:
        n = len(v)
        total = 1 if n < 24 else head_size(n)
        for x in v:
            n = canonical_size(x)
            if n < 0:
                return -1
            total += n
        return total
    if t is int:
        n = v if v >= 0 else -1 - v
        return head_size(n) if n <= _U64 else -1
    if t is str:
        n = len(v) if v.isascii() else len(v.encode())
        return head_size(n) + n
    if t is bytes:
        return head_size(len(v)) + len(v)
    if t is float:
        return -1 if v != v else len(cbor2.dumps(v, canonical=True))   # cbor2's choice,
    if t is bool or v is None:                                         # as in loads
        return 1
    return -1


def quick_decode(data: bytes) -> Any:
    """Decode with every tag refused, indefinite lengths and duplicate keys off; None
    when that fails. Not a canonical check by itself: see `quick_loads`."""
    try:
        return cbor2.loads(data, semantic_decoders=_NO_TAGS, allow_indefinite=False,
                           allow_duplicate_keys=False, max_depth=_MAX_DEPTH)
    except (_Tagged, *_DECODE_ERRORS):
        return None


def quick_loads(data: bytes) -> Any:
    """The value if `data` is provably canonical plain CBOR, else None (ask `loads`;
    also for CBOR null itself).

    Never raises and never accepts what `loads` refuses; it may pass on data `loads`
    accepts (tags, NaN, other map keys), so None is not a verdict."""
    value = quick_decode(data)
    return value if canonical_size(value) == len(data) else None
