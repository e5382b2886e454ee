"""Log entries on the host (docs/FORMATS.md "Entry"): strict decoding, entry hashes.

Why: an entry is trusted only as the exact bytes the device chained. `parse_entry`
accepts only canonical version-1 entries whose fields have the documented types and
keeps the raw bytes, so `entry_hash` is always computed over what was received.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from . import cbor_strict
from .errors import FormatError

VERSION = 1
KIND_READING = 0
KIND_BOOT = 1
KIND_TIME_SET = 2
KIND_KEY_CREATED = 3
KIND_OVERFLOW = 4
KIND_ACK = 5
KIND_NAMES = {0: "reading", 1: "boot", 2: "time_set", 3: "key_created", 4: "overflow",
              5: "acknowledged"}
_KEYS = list(range(9))


@dataclass(frozen=True)
class Entry:
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


def _uint(v: Any, name: str) -> int:
    if type(v) is not int or v < 0:
        raise FormatError(f"entry field {name} must be an unsigned integer")
    return v


def int_keys(m: Any) -> bool:
    """A dict whose keys are all plain ints: canonical CBOR allows keys of any type, and
    Python compares True == 1, so `sorted(m)` alone can raise (bytes vs int) or be fooled
    (a `true` key standing in for key 1)."""
    return type(m) is dict and all(type(k) is int for k in m)


def parse_entry(raw: bytes) -> Entry:
    """Decode canonical entry bytes; FormatError for anything else."""
    raw = bytes(raw)
    m = cbor_strict.loads(raw, what="entry")
    if not int_keys(m) or sorted(m) != _KEYS:
        raise FormatError("entry must be a map with keys 0..8")
    if m[0] != VERSION or type(m[0]) is not int:
        raise FormatError(f"unsupported entry version {m[0]!r}")
    t = m[2]
    if t is not None:
        _uint(t, "t")
    prev = m[5]
    if type(prev) is not bytes or len(prev) != 32:
        raise FormatError("entry field prev must be 32 bytes")
    if type(m[6]) is not str:
        raise FormatError("entry field fw must be text")
    kind = _uint(m[7], "kind")
    if kind not in KIND_NAMES:
        raise FormatError(f"unknown entry kind {kind}")
    body = m[8]
    _check_body(kind, body)
    return Entry(seq=_uint(m[1], "seq"), t=t, up=_uint(m[3], "up"), boot=_uint(m[4], "boot"),
                 prev=prev, fw=m[6], kind=kind, body=body, raw=raw)


def _check_body(kind: int, body: Any) -> None:
    if kind == KIND_READING:
        if type(body) is not list:
            raise FormatError("reading body must be a SenML array")
        for rec in body:
            if not int_keys(rec) or not set(rec) <= {0, 1, 2} or 0 not in rec \
                    or 2 not in rec:
                raise FormatError("SenML record must be {0: name, 1?: unit, 2: value}")
            if type(rec[0]) is not str or (1 in rec and type(rec[1]) is not str):
                raise FormatError("SenML name and unit must be text")
            if type(rec[2]) not in (int, float):
                raise FormatError("SenML value must be a number")
        return
    if not int_keys(body):
        raise FormatError(f"{KIND_NAMES[kind]} body must be a map with integer keys")
    if kind == KIND_KEY_CREATED:
        pub = body.get(1)
        if set(body) != {1} or type(pub) is not bytes or len(pub) != 65:
            raise FormatError("key-created body must be {1: pub (65 bytes)}")
    elif kind == KIND_BOOT:
        if set(body) != {1} or type(body[1]) is not str:
            raise FormatError("boot body must be {1: reset cause}")
