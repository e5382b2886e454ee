"""Flash records (docs/FORMATS.md "Records on flash"): segment files as the device wrote them.

Why: collected segments and bundles carry records exactly as they sat on flash. The
parser never crashes on damage: a record whose magic, length or CRC does not check
ends the valid data of its segment and is reported with the file, the offset and the
seq when the header was readable, as a torn tail (the damaged record is the last
thing in the file, as after a power cut) or as corruption (more data follows).
`parse_records` is pure; `read_segments` is the only function here doing I/O.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from hashtrail.errors import FormatError, InputError

LOG_DIR = "/ht/log"  # where the device keeps its segment files (FORMATS.md)

MAGIC_ENTRY = 0xA7
MAGIC_CHECKPOINT = 0xC7
FLAG_SIG = 0x01
# Header: magic u8 | flags u8 | seq u32 LE | body length u16 LE; then body, the
# signature when FLAG_SIG is set, and CRC-32 LE of everything before it.
_HEAD = struct.Struct("<BBIH")
HEADER = _HEAD.size
SIG_LEN = 64
CRC_LEN = 4


class Record(NamedTuple):
    """One good record. A tuple (not a dataclass): one is made per record of every
    collected chain, and tuple construction is several times cheaper."""

    magic: int
    seq: int
    body: bytes
    sig: bytes | None
    source: str
    offset: int

    @property
    def is_entry(self) -> bool:
        return self.magic == MAGIC_ENTRY


@dataclass(frozen=True)
class RecordProblem:
    """Why a segment's valid data ended early. code: torn_tail | bad_magic | bad_crc."""

    code: str
    source: str
    offset: int
    seq: int | None
    text: str


def format_record(magic: int, seq: int, body: bytes, sig: bytes | None = None) -> bytes:
    """The record bytes for one entry or checkpoint (tests and mutation tools use it)."""
    if sig is not None and len(sig) != SIG_LEN:
        raise FormatError("entry signature must be 64 bytes")
    head = _HEAD.pack(magic, FLAG_SIG if sig else 0, seq, len(body))
    rec = head + body + (sig or b"")
    return rec + struct.pack("<I", zlib.crc32(rec))


class Span(NamedTuple):
    """Where one record sits in a segment, from its header alone (no CRC check)."""

    magic: int
    flags: int
    seq: int
    offset: int
    body_len: int
    size: int       # the whole record: header, body, signature, CRC

    @property
    def body_at(self) -> int:
        return self.offset + HEADER


def record_size(flags: int, body_len: int) -> int:
    return HEADER + body_len + (SIG_LEN if flags & FLAG_SIG else 0) + CRC_LEN


def spans(data: bytes | bytearray) -> Iterator[Span]:
    """Each record's place in `data` by its header, trusting lengths and flags.

    Why: device tools and tests that rewrite a segment as an attacker would (change a
    body, then fix the CRC with `seal`) must find records the way the device lays them
    out; they need offsets, not checked records. Stops at a header cut short; a last
    span may run past the end of `data` (the caller sees it from offset + size).
    """
    pos = 0
    end = len(data)
    while end - pos >= HEADER:
        magic, flags, seq, n = _HEAD.unpack_from(data, pos)
        size = record_size(flags, n)
        yield Span(magic, flags, seq, pos, n, size)
        pos += size


def seal(data: bytearray, offset: int, size: int) -> None:
    """Recompute the CRC of the record of `size` bytes at `offset`, in place (after
    editing its bytes)."""
    end = offset + size - CRC_LEN
    struct.pack_into("<I", data, end, zlib.crc32(data[offset:end]))


def split_records(data: bytes) -> Iterator[bytes]:
    """Cut a chunk into whole records using each record's own header (length, sig flag).

    Only framing is checked here (the record CRC is checked by `parse_records`), but a
    chunk must hold whole records: anything else is a FormatError.
    """
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < HEADER:
            raise FormatError("records chunk ends inside a record header")
        _, flags, _, n = _HEAD.unpack_from(data, pos)
        size = record_size(flags, n)
        if pos + size > end:
            raise FormatError("records chunk ends inside a record")
        yield bytes(data[pos:pos + size])
        pos += size


def record_fields(rec: bytes) -> tuple[int, int, bytes, bytes | None]:
    """(magic, seq, body, sig) of one whole record as `split_records` cuts it.

    Why no checks: the collector sorts records as they stream in (entry or checkpoint,
    which seq) and keeps them as received; `parse_records` judges the same bytes
    (magic, flags, CRC) before anything is accepted.
    """
    magic, flags, seq, n = _HEAD.unpack_from(rec)
    body = rec[HEADER:HEADER + n]
    sig = rec[HEADER + n:HEADER + n + SIG_LEN] if flags & FLAG_SIG else None
    return magic, seq, body, sig


_new_record = tuple.__new__     # Record without its Python-level __new__ (hot path)


def parse_records(data: bytes, source: str = "") -> tuple[list[Record], list[RecordProblem]]:
    """All good records up to the first damaged one, and what ended the segment."""
    data = bytes(data)
    out: list[Record] = []
    pos = 0
    end = len(data)
    mv = memoryview(data)
    while pos < end:
        magic = data[pos]
        if magic not in (MAGIC_ENTRY, MAGIC_CHECKPOINT):
            return out, [RecordProblem("bad_magic", source, pos, None,
                                       f"bad record magic 0x{magic:02x}")]
        if end - pos < HEADER:
            return out, [RecordProblem("torn_tail", source, pos, None,
                                       "record header cut short at the end of the segment")]
        _, flags, seq, n = _HEAD.unpack_from(data, pos)
        size = HEADER + n + (SIG_LEN if flags & FLAG_SIG else 0) + CRC_LEN
        if flags & ~FLAG_SIG:
            return out, [RecordProblem("bad_magic", source, pos, seq,
                                       f"record with unknown flags 0x{flags:02x}")]
        if pos + size > end:
            return out, [RecordProblem("torn_tail", source, pos, seq,
                                       "record cut short at the end of the segment")]
        crc = struct.unpack_from("<I", data, pos + size - CRC_LEN)[0]
        if zlib.crc32(mv[pos:pos + size - CRC_LEN]) != crc:
            code = "torn_tail" if pos + size == end else "bad_crc"
            what = "last record" if code == "torn_tail" else "record"
            return out, [RecordProblem(code, source, pos, seq, f"{what} fails its CRC")]
        body = data[pos + HEADER:pos + HEADER + n]
        sig = data[pos + HEADER + n:pos + HEADER + n + SIG_LEN] if flags & FLAG_SIG else None
        out.append(_new_record(Record, (magic, seq, body, sig, source, pos)))
        pos += size
    return out, []


def segment_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to their *.seg files; order segments by their first seq."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.seg")))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file; expected a log segment file or a "
                             "directory of them")
    return sorted(files, key=lambda f: (f.name, str(f)))


def parse_segments(
    segments: Iterable[tuple[str, bytes]],
) -> tuple[list[Record], list[RecordProblem]]:
    """The records of named segment contents, concatenated in the order given."""
    records: list[Record] = []
    problems: list[RecordProblem] = []
    for name, data in segments:
        recs, probs = parse_records(data, name)
        records.extend(recs)
        problems.extend(probs)
    return records, problems


def log_segments(files: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    """The log segments (`/ht/log/*.seg`) of a device filesystem's files, by absolute
    path (as `imagefs.read_image` returns them), in name order."""
    return sorted((p, b) for p, b in files.items()
                  if p.startswith(LOG_DIR + "/") and p.endswith(".seg"))


def read_segments(paths: Sequence[str | Path]) -> tuple[list[Record], list[RecordProblem]]:
    segments: list[tuple[str, bytes]] = []
    for f in segment_files(paths):
        try:
            segments.append((str(f), f.read_bytes()))
        except OSError as e:
            raise FormatError(f"{f}: cannot read ({e.strerror})") from None
    return parse_segments(segments)
