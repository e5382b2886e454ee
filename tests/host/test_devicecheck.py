"""The fast strict entry decoder never accepts what the reference decoder refuses.

entry._layout_entry (the usual layout read from the bytes) and entry._fast_entry
(cbor_strict.quick_loads + the schema) are the hot path of every entry parser on the
host (collect, reconcile, verify); cbor_strict.loads is the reference. Every mutation
of real entries (truncations, byte increments, xors, insertions), every float16 and a
spread of float32/float64 values, random SenML bodies and a set of hand-made
non-canonical encodings must get the same verdict and the same value from both fast
decoders as from the reference, and each must actually be taken for ordinary entries
(or it would be dead code hiding behind the reference).
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2
import pytest
from hashtrail.errors import FormatError
from hashtrail.formats import cbor_strict
from hashtrail.formats import entry as entry_mod
from hashtrail.formats.entry import (
    _entry_fields,
    _fast_entry,
    _layout_bytes,
    _layout_entry,
    _number_at,
    _one_reading,
    _Other,
    parse_entry,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from ledgerkit import Device


def _entries() -> list[bytes]:
    d = Device(4242)
    d.readings(3)
    d.entry(1, {1: "power on"})
    d.entry(0, [{0: "rh", 1: "%RH", 2: 40}, {0: "temp", 2: -3.5}, {0: "v", 2: 1e300}], t=None)
    d.entry(0, [{0: "x", 2: 2**64 - 1}, {0: "y", 2: -2**64}])
    return [raw for _, raw, _ in d.entries]


def _same_as_reference(raw: bytes) -> bool:
    """Check both fast decoders against the reference; True if `_fast_entry` decided
    (`_layout_entry`'s decisions are counted in LAYOUT_DECIDED)."""
    fast, layout = _fast_entry(raw), _layout_entry(raw)
    # the one-pattern reader of the commonest entries is the head-by-head one, faster:
    # it may only pass an entry on to it, never decide otherwise
    one = _one_reading(raw)
    if one is not None:
        by_heads = _layout_bytes(raw)
        assert by_heads is not None and one == by_heads and \
            list(map(type, one)) == list(map(type, by_heads)) and \
            cbor2.dumps(one.body, canonical=True) == cbor2.dumps(by_heads.body,
                                                                 canonical=True), raw.hex()
        ONE_READING_DECIDED[0] += 1
    try:
        ref = _entry_fields(cbor_strict.loads(raw, what="entry"), raw)
    except FormatError:
        assert fast is None and layout is None, raw.hex()
        return False
    for got in (fast, layout):
        # == alone holds 1 == 1.0 and -0.0 == 0.0: the canonical bytes tell them apart
        assert got is None or (got == ref and cbor2.dumps(got.body, canonical=True)
                               == cbor2.dumps(ref.body, canonical=True)
                               and list(map(type, got)) == list(map(type, ref))), raw.hex()
    LAYOUT_DECIDED[0] += layout is not None
    return fast is not None


LAYOUT_DECIDED = [0]
ONE_READING_DECIDED = [0]


def _mutations(raw: bytes) -> list[bytes]:
    out = [raw[:i] for i in range(len(raw))] + [raw + b"\x00", b"\x00" + raw]
    for i in range(len(raw)):
        for v in {(raw[i] + 1) & 0xFF, raw[i] ^ 0xFF, raw[i] ^ 0x20, raw[i] ^ 0x01}:
            out.append(raw[:i] + bytes([v]) + raw[i + 1:])
        out.append(raw[:i] + b"\x00" + raw[i:])
    return out


def test_fast_path_is_taken_for_ordinary_entries() -> None:
    for raw in _entries():
        assert _fast_entry(raw) is not None
        assert parse_entry(raw) == _entry_fields(cbor2.loads(raw), raw)
    layout = [raw for raw in _entries() if _layout_entry(raw) is not None]
    assert len(layout) == len(_entries()) - 2       # all but key-created and boot
    assert sum(_one_reading(raw) is not None for raw in layout) == 3    # d.readings(3)
    for raw in layout:
        assert parse_entry(raw) == _entry_fields(cbor2.loads(raw), raw)


def test_every_mutation_gets_the_reference_verdict() -> None:
    checked = decided = 0
    LAYOUT_DECIDED[0] = ONE_READING_DECIDED[0] = 0
    for raw in _entries():
        for bad in _mutations(raw):
            decided += _same_as_reference(bad)
            checked += 1
    # many mutations stay canonical (a changed digit, a changed string byte) and so
    # exercise the fast paths' acceptance, the rest their refusal
    assert checked > 3000 and 100 < decided < checked
    assert 100 < LAYOUT_DECIDED[0] < decided
    assert 100 < ONE_READING_DECIDED[0] < LAYOUT_DECIDED[0]


def _reading(*values: bytes, name: bytes = b"\x61x") -> bytes:
    """An entry whose SenML records hold these encoded values (any bytes)."""
    return _with_body(bytes([0x80 + len(values)])
                      + b"".join(b"\xa2\x00" + name + b"\x02" + v for v in values))


def _number_same_as_reference(enc: bytes) -> bool:
    """entry._number_at (the layout decoder's SenML value) against the reference on one
    encoded number; True if it accepted."""
    try:
        v, end = _number_at(enc, 0)
        got = v if end == len(enc) else None
    except (_Other, IndexError, struct.error):
        got = None
    try:
        ref = cbor_strict.loads(enc)
    except FormatError:
        assert got is None, enc.hex()
        return False
    assert got is None or (type(got) is type(ref) and _canon(got) == _canon(ref) == enc), \
        enc.hex()
    return got is not None


def test_every_float16_and_float_widths_get_the_reference_verdict() -> None:
    """Every float16 (NaNs and infinities included), written as float16, float32 and
    float64, and float32 / float64 values at and around the widths' edges, in each
    width: the layout decoder accepts exactly the width the reference's canonical
    encoder picks (value by value; a spread of them also inside whole entries)."""
    taken = 0
    for h in range(0x10000):
        enc = h.to_bytes(2, "big")
        taken += _number_same_as_reference(b"\xf9" + enc)
        x = struct.unpack(">e", enc)[0]
        assert not _number_same_as_reference(b"\xfa" + struct.pack(">f", x))
        assert not _number_same_as_reference(b"\xfb" + struct.pack(">d", x))
        if h % 97 == 0:
            _same_as_reference(_reading(b"\xf9" + enc))
    assert taken == 0x10000 - 0x7FE          # all but the 2 x 1023 NaNs
    values = [0.0, -0.0, 1.0, 65504.0, 65505.0, 65520.0, 2.0**-24, 2.0**-25, 2.0**-14,
              1.5 * 2.0**-24, 3.4028234663852886e38, 2.0**-149, 2.0**-150, 0.1, 21.25,
              1e300, -1e-300, 5e-324, float("inf"), float("-inf"), 16777217.0, 1 / 3]
    for x in list(values):
        values += [struct.unpack(">f", struct.pack(">f", x))[0] if abs(x) < 3.4e38 else x]
    for f32 in range(0, 1 << 32, 0x0010F0F1):
        values.append(struct.unpack(">f", f32.to_bytes(4, "big"))[0])
    for i, x in enumerate(values):
        for fmt, head in ((">e", b"\xf9"), (">f", b"\xfa"), (">d", b"\xfb")):
            try:
                enc = head + struct.pack(fmt, x)
            except OverflowError:
                continue
            _number_same_as_reference(enc)
            if i % 13 == 0:
                _same_as_reference(_reading(enc))
    for n in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
        for major in (0x00, 0x20):                   # integers: every head width
            for ai, size in ((n, 0), (24, 1), (25, 2), (26, 4), (27, 8)):
                if n < 24 and size == 0:
                    _number_same_as_reference(bytes([major | n]))
                elif size and n < 1 << (8 * size):
                    _number_same_as_reference(bytes([major | ai]) + n.to_bytes(size, "big"))


_senml_value = (st.integers(-2**64, 2**64 - 1) | st.floats(width=16) | st.floats(width=32)
                | st.floats())
_senml = st.fixed_dictionaries({0: st.text(max_size=30)},
                               optional={1: st.text(max_size=30), 2: _senml_value})


@settings(max_examples=400, deadline=None)
@given(st.lists(_senml, max_size=4), st.booleans(), st.integers(0, 200), st.integers(0, 255),
       st.sampled_from(["0.1.0", "", "é", "x" * 23, "x" * 24]), st.none() | st.integers(0))
def test_any_reading_same_verdict_as_reference(body: list[dict[int, Any]], canonical: bool,
                                               at: int, byte: int, fw: str,
                                               t: int | None) -> None:
    """Random SenML bodies (short and long, ASCII and not), canonical or not, and each
    with one byte set anywhere, truncated there, or a byte inserted there."""
    raw = bytes(cbor2.dumps(_top(k8=body, k6=fw, k2=t), canonical=canonical))
    _same_as_reference(raw)
    i = at % len(raw)
    _same_as_reference(raw[:i] + bytes([byte]) + raw[i + 1:])
    _same_as_reference(raw[:i])
    _same_as_reference(raw[:i] + bytes([byte]) + raw[i:])


def _top(**over: Any) -> dict[int, Any]:
    m: dict[int, Any] = {0: 1, 1: 5, 2: 1_700_000_005, 3: 5000, 4: 1, 5: b"\x11" * 32,
                         6: "0.1.0", 7: 0, 8: [{0: "temp", 1: "Cel", 2: 21.25}]}
    m.update({int(k[1:]): v for k, v in over.items()})
    return m


def _nest(depth: int) -> Any:
    v: Any = 0
    for _ in range(depth):
        v = [v]
    return v


def _canon(v: Any) -> bytes:
    return bytes(cbor2.dumps(v, canonical=True))


def _with_body(body: bytes) -> bytes:
    """A canonical entry head (keys 0..7) followed by hand-written key-8 bytes."""
    empty = _canon(_top(k8=[]))
    assert empty.endswith(b"\x08\x80")
    return empty[:-1] + body


NONCANONICAL = {
    # seq 5 written as a 1-byte-argument integer (18 05 instead of 05)
    "long-int": cbor2.dumps(_top()).replace(b"\x01\x05\x02", b"\x01\x18\x05\x02", 1),
    "float-double": cbor2.dumps(_top()),              # 21.25 as a float64, not float16
    "unsorted-top": b"\xa9" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in
                                       sorted(_top().items(), key=lambda kv: -kv[0])),
    "unsorted-body": cbor2.dumps(_top(k8=[{2: 21, 0: "temp"}])),
    "tagged-body": cbor2.dumps(_top(k8=cbor2.CBORTag(55799, [1])), canonical=True),
    "bignum": cbor2.dumps(_top(k8=[{0: "x", 2: 2**64}]), canonical=True),
    "undefined": cbor2.dumps(_top(k8=[{0: "x", 2: cbor2.undefined}]), canonical=True),
    "indefinite": cbor2.dumps(_top(), canonical=True)[:-1].replace(b"\x81\xa3", b"\x9f\xa3")
    + cbor2.dumps(21.25, canonical=True) + b"\xff",
    "trailing": cbor2.dumps(_top(), canonical=True) + b"\x00",
    "version-true": cbor2.dumps(_top(k0=True), canonical=True),
    # {0: "x", 0: "temp", 1: "Cel", 2: 21.25}: a duplicate key the fast path's lenient
    # decode collapses; the re-encoding is shorter, so it must stand aside
    "duplicate-key": cbor2.dumps(_top(), canonical=True).replace(
        b"\x81\xa3\x00", b"\x81\xa4\x00\x61x\x00"),
    "deep-nesting": cbor2.dumps(_top(k8=_nest(40)), canonical=True),
    "seq-float": cbor2.dumps(_top(k1=5.0), canonical=True),
    # tags that cbor2 decodes to plain values: without refusing every tag, the fast
    # path's "length equals canonical size" argument would not hold (a shared or
    # string reference is shorter than writing the value out again)
    "self-described": _with_body(b"\xd9\xd9\xf7" + _canon([{0: "t", 2: 1}])),
    "shared-ref-shorter": _with_body(b"\x82\xa2\x00\xd8\x1c" + _canon("a" * 26) + b"\x02\x01"
                                     + b"\xa2\x00\xd8\x1d\x00\x02\x01"),
    "bignum-small": _canon(_top()).replace(b"\x01\x05\x02", b"\x01\xc2\x41\x05\x02", 1),
    "nan-payload": _with_body(b"\x81\xa2\x00\x61x\x02\xf9\x7e\x01"),
    "float32-for-float16": _canon(_top()).replace(_canon(21.25),
                                                  b"\xfa" + struct.pack(">f", 21.25)),
}


def test_noncanonical_vectors_are_what_they_claim() -> None:
    # each hand-made vector really differs from the canonical bytes and still decodes
    # (leniently) to an entry-shaped map, so the refusal below is about canonical form
    for name in ("self-described", "shared-ref-shorter", "bignum-small", "nan-payload",
                 "float32-for-float16"):
        raw = NONCANONICAL[name]
        assert raw != cbor2.dumps(cbor2.loads(raw), canonical=True), name
        assert sorted(cbor2.loads(raw)) == list(range(9)), name
        assert cbor_strict.quick_loads(raw) is None, name
    shared = cbor2.loads(NONCANONICAL["shared-ref-shorter"])[8]
    assert shared[0][0] is shared[1][0]           # the reference really resolved
    assert len(NONCANONICAL["shared-ref-shorter"]) < len(
        cbor2.dumps(cbor2.loads(NONCANONICAL["shared-ref-shorter"]), canonical=True))


@pytest.mark.parametrize("name", sorted(NONCANONICAL))
def test_noncanonical_or_mistyped_entries_are_refused(name: str) -> None:
    raw = NONCANONICAL[name]
    assert _fast_entry(raw) is None and _layout_entry(raw) is None
    with pytest.raises(FormatError):
        parse_entry(raw)


_leaf = (st.integers(-2**64, 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=5)
         | st.binary(max_size=5) | st.booleans() | st.none())
_data = st.recursive(_leaf, lambda c: st.lists(c, max_size=3)
                     | st.dictionaries(st.integers(-30, 30), c, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(_data, st.booleans())
def test_any_body_same_verdict_as_reference(body: Any, canonical: bool) -> None:
    raw = cbor2.dumps(_top(k8=body), canonical=canonical)
    _same_as_reference(raw)


@pytest.mark.parametrize("key", [b"k", "k", True, 9, -1], ids=repr)
def test_a_key_of_another_type_is_a_format_error(key: Any) -> None:
    """Text/bytes keys (sorted() would raise TypeError) and a `true` key (True == 1)
    in an entry or a checkpoint payload are FormatErrors, never tracebacks."""
    raw = cbor2.dumps(_top(), canonical=True)
    extra = b"\xaa" + raw[1:] + cbor2.dumps(key) + b"\x00"         # ten pairs
    with pytest.raises(FormatError):
        parse_entry(extra)
    swapped = raw.replace(b"\x01\x05\x02", b"\xf5\x05\x02", 1)      # key 1 written as true
    assert swapped != raw
    with pytest.raises(FormatError):
        parse_entry(swapped)


def _quick_same_as_reference(raw: bytes) -> None:
    quick = cbor_strict.quick_loads(raw)
    try:
        ref = cbor_strict.loads(raw)
    except FormatError:
        assert quick is None, raw.hex()
        return
    if quick is not None:
        assert cbor_strict._encode_rfc8949(quick) == cbor_strict._encode_rfc8949(ref) == raw


@settings(max_examples=300, deadline=None)
@given(_data, st.booleans(), st.integers(0, 64), st.integers(0, 255))
def test_quick_loads_never_accepts_what_loads_refuses(body: Any, canonical: bool, at: int,
                                                       byte: int) -> None:
    """Any plain data, canonical or not, and with one byte set anywhere."""
    raw = bytes(cbor2.dumps(body, canonical=canonical))
    _quick_same_as_reference(raw)
    if raw:
        i = at % len(raw)
        _quick_same_as_reference(raw[:i] + bytes([byte]) + raw[i + 1:])
        _quick_same_as_reference(raw[:i])


def test_the_one_pattern_reader_on_every_head_width() -> None:
    """`_one_reading` on integers at each head width's edges (1, 2, 3, 5 and 9 bytes,
    each side of the shortest-form bounds), t null, empty and 23-byte texts, and every
    mutation of them: the reference's verdict and `_layout_bytes`' value."""
    edges = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]
    raws = []
    for i, v in enumerate(edges):
        fields = {0: 1, 1: v, 2: None if i % 3 == 0 else edges[-1 - i], 3: v, 4: edges[i // 2],
                  5: bytes(range(i, i + 32)), 6: "x" * (i * 23 // 9), 7: 0,
                  8: [{0: "" if i % 2 else "t" * 23, 1: "u" * i, 2: 0.5 + i}]}
        raws.append(cbor2.dumps(fields, canonical=True))
    assert all(_one_reading(raw) is not None for raw in raws)
    ONE_READING_DECIDED[0] = 0
    for raw in raws:
        for bad in [raw, *_mutations(raw)]:
            _same_as_reference(bad)
    assert ONE_READING_DECIDED[0] > 10 * len(raws)


def test_the_one_pattern_readers_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """`_one_reading` keeps the texts and float16 values it converted, at most _KEEP
    of each: past that it converts without keeping, with the same values."""
    monkeypatch.setattr(entry_mod, "_KEEP", 20)
    monkeypatch.setattr(entry_mod, "_TEXTS", {})
    monkeypatch.setattr(entry_mod, "_HALVES", {})
    for i in range(60):
        raw = cbor2.dumps({0: 1, 1: i, 2: None, 3: i, 4: 1, 5: bytes(32), 6: f"fw{i}",
                           7: 0, 8: [{0: f"n{i}", 1: f"u{i}", 2: 1 + i / 64}]},
                          canonical=True)
        one = _one_reading(raw)
        assert one is not None and one == _layout_bytes(raw)
        assert (one.fw, one.body[0][0], one.body[0][1]) == (f"fw{i}", f"n{i}", f"u{i}")
    assert len(entry_mod._TEXTS) == 20 and len(entry_mod._HALVES) == 20
