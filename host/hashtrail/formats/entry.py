"""Log entries on the host (docs/FORMATS.md "Entry"): the one strict entry parser.

Why one: collect (chainverify), reconcile, `verify --ledger` and fork evidence must
judge the same bytes the same way, so they all call `parse_entry`. It accepts only
canonical version-1 entries whose fields and kind-specific bodies have the documented
types, and keeps the raw bytes, so `entry_hash` is always computed over what was
received.

Entries are the hot path (every entry of every chain), so `parse_entry` tries three
decoders, each of which only ever says "canonical and well-formed, here is the entry"
or "ask the next one":
  1. `_layout_entry` reads the one layout nearly every entry has (the nine keys in
     order, short ASCII `fw`, a reading body of SenML records with short ASCII names
     and units) straight from the bytes, checking every head is the shortest; the
     commonest case of it (one record, a float16 value) as one regular expression;
  2. `_fast_entry`: `cbor_strict.quick_loads` plus the schema, for any other body;
  3. the reference decoder `cbor_strict.loads` plus the schema, which decides the rest
     and words the error.
tests/host/test_devicecheck.py and the entry fuzz target hold 1 and 2 to the
reference's verdict and value on every mutation of real entries.
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Any, NamedTuple

from hashtrail.errors import FormatError
from hashtrail.formats import cbor_strict
from hashtrail.formats.cbor_strict import (
    int_keys as int_keys,  # (re-exported: callers check maps too)
)
from hashtrail.formats.cbor_strict import is_uint as _uint

VERSION = 1
# Map keys of an entry (FORMATS.md "Entry"), all present, in this order.
KEY_V, KEY_SEQ, KEY_T, KEY_UP, KEY_BOOT, KEY_PREV, KEY_FW, KEY_KIND, KEY_BODY = range(9)
# Map keys of a SenML record in a reading body (RFC 8428 CBOR labels).
SENML_N, SENML_U, SENML_V = 0, 1, 2
KIND_READING = 0
KIND_BOOT = 1
KIND_TIME_SET = 2
KIND_KEY_CREATED = 3
KIND_OVERFLOW = 4
KIND_ACK = 5
KIND_LOG_ALTERED = 6
KIND_UPDATE = 7
KIND_UPDATE_REVERTED = 8
KIND_NAMES = {KIND_READING: "reading", KIND_BOOT: "boot", KIND_TIME_SET: "time_set",
              KIND_KEY_CREATED: "key_created", KIND_OVERFLOW: "overflow",
              KIND_ACK: "acknowledged", KIND_LOG_ALTERED: "log_altered",
              KIND_UPDATE: "update", KIND_UPDATE_REVERTED: "update_reverted"}
# Body keys of an update entry (kind 7): the firmware it replaced, the one it installed,
# the release's security counter and the SHA-256 of the signed manifest.
UPDATE_OLD, UPDATE_NEW, UPDATE_COUNTER, UPDATE_MANIFEST = 1, 2, 3, 4
# Body keys of an update-reverted entry (kind 8), written by the firmware that runs
# again after boot.py took an update back: the version that failed, the version running
# again, the failed release's counter and manifest SHA-256, and why.
REVERTED_FAILED, REVERTED_RUNNING, REVERTED_COUNTER, REVERTED_MANIFEST, REVERTED_REASON = (
    1, 2, 3, 4, 5)
# Bytes every canonical update (or update-reverted) entry holds: key 7 (kind), the kind,
# key 8 (body). The ledger finds a device's update entries by them without parsing the
# others.
UPDATE_MARK = bytes([KEY_KIND, KIND_UPDATE, KEY_BODY])
REVERTED_MARK = bytes([KEY_KIND, KIND_UPDATE_REVERTED, KEY_BODY])
# Signing policy, recorded by the device in entry 0 (key-created body key 2).
POLICY_CHECKPOINTS = 0      # only checkpoints are signed (entries unprotected until one)
POLICY_EVERY_ENTRY = 1      # every entry carries its own device signature
_KEYS = [KEY_V, KEY_SEQ, KEY_T, KEY_UP, KEY_BOOT, KEY_PREV, KEY_FW, KEY_KIND, KEY_BODY]


class Entry(NamedTuple):
    """A parsed entry. A tuple (not a dataclass) because reconcile and the chain
    verifier make one per entry and tuple construction is several times cheaper."""

    seq: int
    t: int | None
    up: int
    boot: int
    prev: bytes
    fw: str
    kind: int
    body: Any
    raw: bytes

    @property
    def hash(self) -> bytes:
        return entry_hash(self.raw)


def entry_hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def parse_entry(raw: bytes) -> Entry:
    """Decode canonical entry bytes; FormatError for anything else."""
    if type(raw) is not bytes:
        raw = bytes(raw)
    e = _one_reading(raw)       # (_layout_entry's first step, without its call: per entry)
    if e is None:
        e = _layout_bytes(raw)
    if e is not None:
        return e
    e = _fast_entry(raw)
    if e is not None:
        return e
    return _entry_fields(cbor_strict.loads(raw, what="entry"), raw)


# Canonical size of an entry's fixed parts: map head, nine one-byte keys, version 1,
# prev (2-byte head + 32), kind (0..23).
_FIXED_SIZE = 1 + 9 + 1 + 34 + 1
_head_size = cbor_strict.head_size


def _fast_entry(raw: bytes) -> Entry | None:
    """The entry if `raw` is provably a canonical, well-formed entry, else None (then
    the reference decides and words the error). Never raises.

    Why it is as strict as the reference: `quick_decode` refuses every tag, indefinite
    length and duplicate key, so each item decoded to one value of its own type; the
    schema check then fixes every top-level type, and no item can be shorter than its
    canonical form, so `raw` is canonical exactly when its length is the canonical size
    of the value (the body's size, key order included, from cbor_strict.canonical_size;
    the fixed fields' from their values) - the argument of cbor_strict.quick_loads."""
    m = cbor_strict.quick_decode(raw)
    if type(m) is not dict:
        return None
    try:
        e = _entry_fields(m, raw)
    except FormatError:
        return None
    body = cbor_strict.canonical_size(e.body)
    if body < 0:
        return None
    fw = e.fw
    n = len(fw) if fw.isascii() else len(fw.encode())
    t = e.t
    size = (_FIXED_SIZE + body + _head_size(e.seq) + (1 if t is None else _head_size(t))
            + _head_size(e.up) + _head_size(e.boot) + _head_size(n) + n)
    return e if size == len(raw) else None


# -- 1. the canonical layout, read from the bytes ------------------------------------

class _Other(Exception):
    """Not the layout `_layout_entry` reads (the next decoder decides)."""


_START = b"\xa9\x00\x01\x01"        # map of 9; key 0: version 1; key 1 follows
_PREV = b"\x05\x58\x20"             # key 5: a byte string of 32
_U16, _U32, _U64S = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")
_HALF, _SINGLE, _DOUBLE = struct.Struct(">e"), struct.Struct(">f"), struct.Struct(">d")


def _uint_at(raw: bytes, p: int, major: int = 0) -> tuple[int, int]:
    """The argument of the head at p, and the position after the head; _Other unless
    the head is of major type `major` (as its top three bits: 0x00 unsigned, 0x20
    negative) and the shortest for its argument (RFC 8949 4.2.1)."""
    b = raw[p] - major
    if not 0 <= b < 28:
        raise _Other
    if b < 24:
        return b, p + 1
    if b == 24:
        v = raw[p + 1]
        if v >= 24:
            return v, p + 2
    elif b == 25:
        v = _U16.unpack_from(raw, p + 1)[0]
        if v >= 0x100:
            return v, p + 3
    elif b == 26:
        v = _U32.unpack_from(raw, p + 1)[0]
        if v >= 0x10000:
            return v, p + 5
    elif b == 27:
        v = _U64S.unpack_from(raw, p + 1)[0]
        if v >= 1 << 32:
            return v, p + 9
    raise _Other


def _text_at(raw: bytes, p: int) -> tuple[str, int]:
    """A text string of 0..23 ASCII bytes whose head is at p (a one-byte head is the
    shortest for such lengths; longer or non-ASCII text is left to the next decoder)."""
    n = raw[p] - 0x60
    if not 0 <= n < 24:
        raise _Other
    q = p + 1 + n
    s = raw[p + 1:q]
    if len(s) != n or not s.isascii():
        raise _Other
    return s.decode("ascii"), q


def _number_at(raw: bytes, p: int) -> tuple[int | float, int]:
    """A SenML value: an integer of 64 bits or a float in its shortest exact width
    (NaN, whose payloads have no one encoding, is left to the next decoder)."""
    b = raw[p]
    if b < 0x1C:
        return _uint_at(raw, p)
    if 0x20 <= b < 0x3C:
        v, q = _uint_at(raw, p, 0x20)
        return -1 - v, q
    # The shortest exact width is canonical: a float16 always is (but NaN), a float32
    # or float64 only when the value does not survive the trip through a narrower one.
    if b == 0xF9:
        v = _HALF.unpack_from(raw, p + 1)[0]
        if v != v:
            raise _Other
        return v, p + 3
    if b == 0xFA:
        v = _SINGLE.unpack_from(raw, p + 1)[0]
        if v != v or _fits(_HALF, v):
            raise _Other
        return v, p + 5
    if b == 0xFB:
        v = _DOUBLE.unpack_from(raw, p + 1)[0]
        if v != v or _fits(_SINGLE, v):
            raise _Other
        return v, p + 9
    raise _Other


def _fits(width: struct.Struct, v: float) -> bool:
    """Whether float `v` is exactly representable in the narrower `width`."""
    try:
        return bool(width.unpack(width.pack(v))[0] == v)
    except OverflowError:
        return False


# The commonest entry of all, as one pattern: the layout below with one SenML record
# {0: name, 1: unit, 2: float16}. Each group is a head the layout decoder would accept:
# an unsigned integer in its shortest form (a 1-, 2-, 4- or 8-byte argument whose
# leading bytes are not all zero), ASCII text of 0..23 bytes (its one-byte head says
# how many), and a float16 (a NaN is left to the next decoder, as below).
_UINT = (rb"(?:[\x00-\x17]|\x18[\x18-\xff]|\x19[\x01-\xff].|\x1a(?:[\x01-\xff].|\x00[\x01-\xff])..|"
         rb"\x1b(?:[\x01-\xff]...|\x00[\x01-\xff]..|\x00\x00[\x01-\xff].|\x00\x00\x00[\x01-\xff])....)")
_TEXT = b"(?:" + b"|".join(b"\\x%02x" % (0x60 + n) + (b"[\\x00-\\x7f]{%d}" % n if n else b"")
                           for n in range(24)) + b")"
_ONE_READING = re.compile(
    rb"\xa9\x00\x01\x01(" + _UINT + rb")\x02(\xf6|" + _UINT + rb")\x03(" + _UINT
    + rb")\x04(" + _UINT + rb")\x05\x58\x20(.{32})\x06(" + _TEXT + rb")\x07\x00\x08"
    rb"\x81\xa3\x00(" + _TEXT + rb")\x01(" + _TEXT + rb")\x02\xf9(..)", re.S).fullmatch


def _one_reading(raw: bytes) -> Entry | None:
    """`_layout_bytes` for the entries `_ONE_READING` matches (None for any other), with
    the same verdict and value at about half its cost: the pattern checks every
    head and byte `_layout_bytes` checks, the code below only converts them
    (tests/host/test_devicecheck.py holds the two to each other on every mutation).

    The conversions: a head the pattern took is the shortest for its argument, so its
    length says its initial byte and the argument is the rest (`_uint_of`). A device
    writes the same firmware version, names, units and, mostly, a handful of values
    entry after entry, so text and float16 heads are converted once and kept
    (`_TEXTS`, `_HALVES`, bounded): the same bytes always give the same value."""
    m = _ONE_READING(raw)
    if m is None:
        return None
    s, t, up, boot, prev, fw, name, unit, half = m.groups()
    v = _HALVES.get(half)
    if v is None:
        v = _HALF.unpack(half)[0]
        if v != v:
            return None
        if len(_HALVES) < _KEEP:
            _HALVES[half] = v
    texts = _TEXTS
    f, n, u = texts.get(fw), texts.get(name), texts.get(unit)
    if f is None:
        f = _text_of(fw)
    if n is None:
        n = _text_of(name)
    if u is None:
        u = _text_of(unit)
    return _new_entry(Entry, (
        _uint_of(s, "big") - _BIAS[len(s)],
        None if t == b"\xf6" else _uint_of(t, "big") - _BIAS[len(t)],
        _uint_of(up, "big") - _BIAS[len(up)],
        _uint_of(boot, "big") - _BIAS[len(boot)],
        prev, f, KIND_READING, [{SENML_N: n, SENML_U: u, SENML_V: v}], raw))


# What a shortest head of 1, 2, 3, 5 or 9 bytes adds to its argument, read big-endian
# as one integer: its initial byte (0x18 to 0x1b, none for an argument below 24).
_BIAS = [0, 0, 0x18 << 8, 0x19 << 16, 0, 0x1A << 32, 0, 0, 0, 0x1B << 64]
_uint_of = int.from_bytes
_KEEP = 1024                        # entries in each of the caches below, at most
_TEXTS: dict[bytes, str] = {}       # a text item's bytes (head included) -> its text
_HALVES: dict[bytes, float] = {}    # a float16's two bytes -> its value (never NaN)


def _text_of(item: bytes) -> str:
    """The text of an ASCII text item of 0..23 bytes (its one-byte head first)."""
    text = item[1:].decode("ascii")
    if len(_TEXTS) < _KEEP:
        _TEXTS[item] = text
    return text


def _layout_entry(raw: bytes) -> Entry | None:
    """The entry if `raw` is a canonical, well-formed entry in the usual layout, else
    None (then the next decoder decides). Never raises. The commonest entries are read
    by one pattern (`_one_reading`), the rest of the layout by `_layout_bytes`."""
    e = _one_reading(raw)
    return e if e is not None else _layout_bytes(raw)


def _layout_bytes(raw: bytes) -> Entry | None:
    """`_layout_entry`, read head by head.

    Why it is as strict as the reference: it reads the bytes as the canonical encoding
    of exactly the value the reference would return: the map head and every key are
    the fixed bytes canonical order requires, every integer and length head is checked
    to be the shortest, each float to be the width cbor2's canonical encoder picks for
    its value, strings ASCII (so valid UTF-8), and the item must end where `raw` ends.
    Whatever else is valid (long or non-ASCII text, other kinds, tags, NaN) is not read
    here but left to `_fast_entry` and the reference."""
    try:
        if not raw.startswith(_START):
            return None
        seq, p = _uint_at(raw, 4)
        if raw[p] != 2:
            return None
        if raw[p + 1] == 0xF6:
            t: int | None = None
            p += 2
        else:
            t, p = _uint_at(raw, p + 1)
        if raw[p] != 3:
            return None
        up, p = _uint_at(raw, p + 1)
        if raw[p] != 4:
            return None
        boot, p = _uint_at(raw, p + 1)
        if raw[p:p + 3] != _PREV:
            return None
        prev = raw[p + 3:p + 35]
        p += 35
        if raw[p] != 6:
            return None
        fw, p = _text_at(raw, p + 1)
        if raw[p] != 7 or raw[p + 1] != KIND_READING or raw[p + 2] != 8:
            return None
        k = raw[p + 3] - 0x80
        if not 0 <= k < 24:
            return None
        p += 4
        body = []
        for _ in range(k):
            b = raw[p]
            if raw[p + 1] != SENML_N or not 0xA2 <= b <= 0xA3:
                return None
            name, p = _text_at(raw, p + 2)
            if b == 0xA3:
                if raw[p] != SENML_U:
                    return None
                unit, p = _text_at(raw, p + 1)
                if raw[p] != SENML_V:
                    return None
                v, p = _number_at(raw, p + 1)
                body.append({SENML_N: name, SENML_U: unit, SENML_V: v})
            else:
                if raw[p] != SENML_V:
                    return None
                v, p = _number_at(raw, p + 1)
                body.append({SENML_N: name, SENML_V: v})
        if p != len(raw) or len(prev) != 32:
            return None
    except (_Other, IndexError, struct.error):
        return None
    return _new_entry(Entry, (seq, t, up, boot, prev, fw, KIND_READING, body, raw))


# -- 2. any canonical entry, by decoded size -----------------------------------------

_new_entry = tuple.__new__      # Entry without its Python-level __new__ (hot path)
_INTS = [int] * 9
_REC_KEYS = ([SENML_N, SENML_U, SENML_V], [SENML_N, SENML_V])   # {0: n, 1?: u, 2: v}
_REC_KEY_TYPES = ([int, int, int], [int, int])      # not `true` for 1 (True == 1)


def _entry_fields(m: Any, raw: bytes) -> Entry:
    """The schema check of a decoded entry (keys in canonical order: 0..8)."""
    if type(m) is not dict or list(m) != _KEYS or list(map(type, m)) != _INTS:
        raise FormatError("entry must be a map with keys 0..8")
    v0, seq, t, up, boot, prev, fw, kind, body = m.values()
    if type(v0) is not int or v0 != VERSION:
        raise FormatError(f"unsupported entry version {v0!r}")
    if not _uint(seq) or not _uint(up) or not _uint(boot) or not (t is None or _uint(t)):
        raise FormatError("entry fields seq, t, up and boot must be unsigned integers "
                          "(t may be null)")
    if type(prev) is not bytes or len(prev) != 32:
        raise FormatError("entry field prev must be 32 bytes")
    if type(fw) is not str:
        raise FormatError("entry field fw must be text")
    if type(kind) is not int or kind not in KIND_NAMES:
        raise FormatError(f"unknown entry kind {kind!r}")
    _check_body(kind, body)
    return _new_entry(Entry, (seq, t, up, boot, prev, fw, kind, body, raw))


def _check_body(kind: int, body: Any) -> None:
    if kind == KIND_READING:
        if type(body) is not list:
            raise FormatError("reading body must be a SenML array")
        for rec in body:
            if type(rec) is not dict or list(rec) not in _REC_KEYS \
                    or list(map(type, rec)) not in _REC_KEY_TYPES:
                raise FormatError("SenML record must be {0: name, 1?: unit, 2: value}")
            if type(rec[0]) is not str or (1 in rec and type(rec[1]) is not str):
                raise FormatError("SenML name and unit must be text")
            v = type(rec[2])
            if v is not int and v is not float:
                raise FormatError("SenML value must be a number")
        return
    if not int_keys(body):
        raise FormatError(f"{KIND_NAMES[kind]} body must be a map with integer keys")
    if kind == KIND_KEY_CREATED:
        pub = body.get(1)
        keys = list(body)
        if keys not in ([1], [1, 2]) or type(pub) is not bytes or len(pub) != 65 \
                or (keys == [1, 2] and (type(body[2]) is not int
                                        or body[2] not in _POLICIES)):
            raise FormatError("key-created body must be {1: pub (65 bytes), 2?: signing "
                              "policy (0 or 1)}")
    elif kind == KIND_LOG_ALTERED:
        if list(body) != [1, 2] or not _uint(body[1]) or type(body[2]) is not str:
            raise FormatError("log-altered body must be {1: first altered seq, 2: reason}")
    elif kind == KIND_BOOT:
        if list(body) != [1] or type(body[1]) is not str:
            raise FormatError("boot body must be {1: reset cause}")
    elif kind == KIND_UPDATE:
        if list(body) != [UPDATE_OLD, UPDATE_NEW, UPDATE_COUNTER, UPDATE_MANIFEST] \
                or type(body[1]) is not str or type(body[2]) is not str \
                or not _uint(body[3]) or type(body[4]) is not bytes or len(body[4]) != 32:
            raise FormatError("update body must be {1: old version, 2: new version, "
                              "3: security counter, 4: manifest SHA-256 (32 bytes)}")
    elif kind == KIND_UPDATE_REVERTED:
        if list(body) != [1, 2, 3, 4, 5] or type(body[1]) is not str \
                or type(body[2]) is not str or not _uint(body[3]) \
                or type(body[4]) is not bytes or len(body[4]) != 32 \
                or type(body[5]) is not str:
            raise FormatError("update-reverted body must be {1: failed version, 2: running "
                              "version, 3: security counter, 4: manifest SHA-256 (32 "
                              "bytes), 5: reason}")


_POLICIES = (POLICY_CHECKPOINTS, POLICY_EVERY_ENTRY)


def signing_policy(e: Entry) -> int:
    """The signing policy entry 0 declares; an entry 0 without one (format 1 before the
    policy existed) signed checkpoints only."""
    if e.kind != KIND_KEY_CREATED:
        raise FormatError("only the key-created entry declares a signing policy")
    return int(e.body.get(2, POLICY_CHECKPOINTS))   # parse_entry checked it is 0 or 1


def is_key_created_by(e: Entry, pub: bytes) -> bool:
    """Entry 0 must be the key-created entry carrying this very key (FORMATS.md)."""
    return e.kind == KIND_KEY_CREATED and e.body[1] == pub
