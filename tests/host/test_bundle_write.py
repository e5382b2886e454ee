"""write_bundle formats entry lines by hand (bundle._lines): every byte must be what the
JSON encoder makes of the same line (bundle._line), the canonical form a collector's
signature covers and the parser's fast path reads."""

from __future__ import annotations

import io
import json

import pytest
from hashtrail.collector.bundle import Bundle, _b64, _line, parse_bundle, write_bundle
from hashtrail.collector.store import RawEntry
from hashtrail.formats.note import Signer


def _by_encoder(b: Bundle) -> list[str]:
    return [_line({"type": "entry", "device": d, "seq": r.seq, "body": _b64(r.body),
                   "sig": _b64(r.sig)}) for d, r in b.entries]


@pytest.mark.parametrize("device", ["0123456789abcdef" * 2, 'a "quoted" id\\',
                                    "caf\u00e9\u2603", ""])
def test_entry_lines_are_the_json_encoders_bytes(device: str) -> None:
    b = Bundle("00" * 8, "c", 1_700_000_000)
    b.entries = [(device, RawEntry(s, body, sig)) for s, body, sig in [
        (0, b"", None), (1, b"\x00\xff" * 100, bytes(64)), (2 ** 63 - 1, b"x", b"\xfb" * 3),
        (7, bytearray(b"made of a bytearray"), None)]]
    b.entries.append((device, RawEntry(True, b"a bool for a seq", None)))  # type: ignore[arg-type]
    out = io.StringIO()
    n = write_bundle(b, out)
    lines = out.getvalue().splitlines()
    assert n == len(lines) == 1 + len(b.entries)
    assert lines[1:] == _by_encoder(b)
    assert [json.loads(x)["seq"] for x in lines[1:]] == [0, 1, 2 ** 63 - 1, 7, True]


def test_a_bundle_past_a_block_of_lines_signs_and_parses_back() -> None:
    """More lines than one written block (1024): the signature covers all of them."""
    b = Bundle("00" * 8, "c", 1_700_000_000)
    b.entries = [("ab" * 16, RawEntry(s, bytes([s % 256]) * 40, None)) for s in range(2500)]
    out = io.StringIO()
    signer = Signer("collector-test", bytes(range(32)))
    assert write_bundle(b, out, signer) == 2502
    back = parse_bundle(io.BytesIO(out.getvalue().encode("ascii")))
    assert back.signer is not None and back.entries == b.entries
