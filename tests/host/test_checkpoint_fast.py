"""The one-pattern checkpoint reader gives the strict reader's verdict and value.

Why: parse_checkpoint reads the checkpoint every device writes with one pattern
(formats.checkpoint._one_checkpoint) instead of the strict CBOR decoder, about an
eighth of its cost (a reconcile checks one checkpoint per 100 entries or so). A
checkpoint it accepts must be one the reference accepts, read to the same value; any
other it must leave to the reference (None), which then words the error. Every head
width of every integer, with and without a nonce of each head width, and every
mutation of them (each byte changed several ways, deleted, doubled, the bytes cut
short or lengthened) is held to the reference here."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hashtrail.errors import FormatError
from hashtrail.formats import checkpoint as cp

KID = bytes(range(16))
HEAD = bytes(range(100, 132))
SIG = bytes(range(64))
WIDTHS = [0, 23, 24, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 64) - 1]


def _canon(obj: Any) -> bytes:
    return bytes(cbor2.dumps(obj, canonical=True))


def _checkpoint(seq: int = 7, t: int | None = 1_700_000_000, up: int = 5,
                nonce: bytes | None = None, *, kid: bytes = KID,
                device: bytes = KID, v: Any = 1, extra: dict[int, Any] | None = None
                ) -> bytes:
    prot = _canon({cp.HDR_ALG: cp.ALG_ES256, cp.HDR_KID: kid})
    p: dict[int, Any] = {cp.CP_V: v, cp.CP_DEVICE: device, cp.CP_SEQ: seq,
                         cp.CP_HEAD: HEAD, cp.CP_T: t, cp.CP_UP: up}
    if nonce is not None:
        p[cp.CP_NONCE] = nonce
    p.update(extra or {})
    return _canon(cbor2.CBORTag(cp.TAG_COSE_SIGN1, [prot, {}, _canon(p), SIG]))


def _reference(raw: bytes) -> cp.Checkpoint | None:
    try:
        return cp._parse_reference(raw)
    except FormatError:
        return None


def _same(raw: bytes) -> bool:
    """Whether the fast reader took `raw` (asserting it agrees with the reference)."""
    fast = cp._one_checkpoint(raw)
    ref = _reference(raw)
    assert fast is None or fast == ref, raw.hex()
    if ref is None:
        with pytest.raises(FormatError):
            cp.parse_checkpoint(raw)
    else:
        assert cp.parse_checkpoint(raw) == ref
    return fast is not None


def _mutations(raw: bytes) -> list[bytes]:
    out = []
    for i in range(len(raw)):
        for b in {raw[i] ^ 1, raw[i] ^ 0x80, raw[i] ^ 0x20, (raw[i] + 1) & 0xFF,
                  (raw[i] - 1) & 0xFF, 0, 0xFF, 0xF6, 0x18}:
            out.append(raw[:i] + bytes([b]) + raw[i + 1:])
        out.append(raw[:i] + raw[i + 1:])
        out.append(raw[:i] + raw[i:i + 1] + raw[i:])
        out.append(raw[:i])
    out.append(raw + b"\0")
    return out


def _canonical() -> list[bytes]:
    out = [_checkpoint(seq=w) for w in WIDTHS]
    out += [_checkpoint(t=w) for w in WIDTHS] + [_checkpoint(t=None)]
    out += [_checkpoint(up=w) for w in WIDTHS]
    out += [_checkpoint(nonce=bytes([n]) * n) for n in range(1, 33)]
    return out


def test_every_canonical_checkpoint_is_read_by_the_pattern() -> None:
    for raw in _canonical():
        assert _same(raw), raw.hex()


def test_every_mutation_gets_the_reference_verdict() -> None:
    taken = refused = 0
    for raw in [_checkpoint(), _checkpoint(seq=1 << 40, t=None, nonce=bytes(24)),
                _checkpoint(seq=300, up=70000, nonce=b"n" * 5)]:
        for bad in _mutations(raw):
            if _same(bad):
                taken += 1
            elif _reference(bad) is None:
                refused += 1
    # many mutations stay canonical (a changed byte of the head, the kid, the
    # signature) and are read by the pattern; many are refused
    assert taken > 500 and refused > 2000, (taken, refused)


@pytest.mark.parametrize("raw", [
    _checkpoint(device=bytes(16)),                      # payload device is not the kid
    _checkpoint(v=2),
    _checkpoint(t=-1),
    _checkpoint(t=1.5),
    _checkpoint(nonce=b""),
    _checkpoint(nonce=bytes(33)),
    _checkpoint(extra={6: None}),                        # a null nonce: the reference's
    _checkpoint(extra={7: 1}),
    _checkpoint(kid=bytes(15), device=bytes(15)),
], ids=["payload id", "version", "negative t", "float t", "empty nonce", "long nonce",
        "null nonce", "key 7", "short kid"])
def test_what_the_pattern_leaves_to_the_reference(raw: bytes) -> None:
    assert cp._one_checkpoint(raw) is None
    _same(raw)
