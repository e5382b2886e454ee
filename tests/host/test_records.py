"""formats/records: the quick readers (record_fields, spans, seal) against parse_records.

Why: collect sorts streamed records with `record_fields`, and tests and tools edit
segments with `spans` and `seal`; each must see a record exactly as the full parser
does, or a test would edit one record while believing it edits another.
"""

from __future__ import annotations

from hashtrail.formats.records import (
    CRC_LEN,
    HEADER,
    MAGIC_CHECKPOINT,
    MAGIC_ENTRY,
    SIG_LEN,
    format_record,
    parse_records,
    record_fields,
    seal,
    spans,
    split_records,
)

RECS = [format_record(MAGIC_ENTRY, 7, b"\xa1\x01\x02"),
        format_record(MAGIC_ENTRY, 8, bytes(300), bytes(range(SIG_LEN))),
        format_record(MAGIC_CHECKPOINT, 8, b"\xd2\x84"),
        format_record(MAGIC_ENTRY, 2**32 - 1, b"")]
SEG = b"".join(RECS)


def test_record_fields_agree_with_the_parser() -> None:
    parsed, problems = parse_records(SEG)
    assert not problems
    assert [record_fields(r) for r in split_records(SEG)] == [
        (r.magic, r.seq, r.body, r.sig) for r in parsed]


def test_spans_locate_every_record() -> None:
    parsed, _ = parse_records(SEG)
    got = list(spans(SEG))
    assert [(s.magic, s.seq, s.offset) for s in got] == [(r.magic, r.seq, r.offset)
                                                         for r in parsed]
    assert [s.size for s in got] == [len(r) for r in RECS]
    assert [SEG[s.body_at:s.body_at + s.body_len] for s in got] == [r.body for r in parsed]
    assert list(spans(SEG + bytes(HEADER - 1))) == got      # a header cut short: no span


def test_seal_makes_an_edited_record_check_again() -> None:
    data = bytearray(SEG)
    s = list(spans(data))[1]
    data[s.body_at] ^= 0xFF
    _, problems = parse_records(bytes(data))
    assert [p.code for p in problems] == ["bad_crc"]
    seal(data, s.offset, s.size)
    parsed, problems = parse_records(bytes(data))
    assert not problems and parsed[1].body[0] == 0xFF
    assert data[:s.offset] == SEG[:s.offset]
    assert data[s.offset + s.size:] == SEG[s.offset + s.size:]
    assert data[s.offset + s.size - CRC_LEN:s.offset + s.size] != \
        SEG[s.offset + s.size - CRC_LEN:s.offset + s.size]
