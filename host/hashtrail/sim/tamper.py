"""The keyless flash rewrite, on a powered-off device's littlefs image: edit a reading,
recompute the later links and CRCs.

Why it exists: the demo (`hashtrail demo`, step 7) and the attack suite
(tests/threats/test_threats_trust.py) perform the same attack, someone who holds the
flash but not the device key: edit an entry on the image, then recompute the `prev`
link of every later entry and every record CRC, so the record layer and the hash chain
both check and only a device signature can tell. One implementation, so the demo shows
exactly the attack the tests judge.

    from hashtrail.device import imagefs
    from hashtrail.sim.tamper import change_first_value, rewrite_chain

    imagefs.edit_image(image, block_size,
                       lambda fs: rewrite_chain(fs, {seq: change_first_value(-2.5)}))

Nothing is re-encoded: an edit changes bytes in place (same length), a link is the 32
bytes after its `prev` key, and records are read with the host's own parser
(hashtrail.records) and written back with its encoder, so every record header, flag and
CRC is what the device writes. The surgery refuses (TamperError, never an assert, which
`python -O` would strip) whatever it cannot do cleanly: a damaged record, a device
checkpoint record over a changed entry, a link or value it cannot find.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

from littlefs import LittleFS

from hashtrail.errors import HashtrailError
from hashtrail.formats import cbor_strict
from hashtrail.formats.entry import KEY_PREV, parse_entry
from hashtrail.formats.records import LOG_DIR, Record, format_record, parse_records

# key 5 (prev), bstr of 32 bytes: what precedes the link
PREV_TAG = cbor_strict.head(0, KEY_PREV) + cbor_strict.head(2, 32)

Edit = Callable[[bytes], bytes]  # entry bytes -> edited entry bytes of the same length


class TamperError(HashtrailError):
    """The flash surgery cannot be done as asked (the image is not what it expects)."""

    hint = "the image must be a powered-off device's flash with whole records; pick " \
           "entries no device checkpoint record covers"


@dataclass(frozen=True)
class Rewrite:
    """What `rewrite_chain` changed: entries first..last (the edited ones and every
    later one, whose `prev` was recomputed), in `records` rewritten records."""

    first: int
    last: int
    relinked: int   # later entries whose prev link was recomputed
    records: int    # records re-encoded with a new CRC (entries first..last)
    signed: int     # changed entries that carried a signature (kept, stripped or re-signed)


# -- segment files ---------------------------------------------------------------------

def segments(fs: LittleFS) -> list[str]:
    """The log's segment file names, in log order."""
    return sorted(n for n in fs.listdir(LOG_DIR) if n.endswith(".seg"))


def read_seg(fs: LittleFS, name: str) -> bytes:
    with fs.open(f"{LOG_DIR}/{name}", "rb") as f:
        return bytes(f.read())


def write_seg(fs: LittleFS, name: str, data: bytes) -> None:
    with fs.open(f"{LOG_DIR}/{name}", "wb") as f:
        f.write(data)


def log_records(fs: LittleFS) -> list[Record]:
    """Every record of the log, in order; TamperError if any segment is damaged."""
    out: list[Record] = []
    for name in segments(fs):
        recs, probs = parse_records(read_seg(fs, name), name)
        if probs:
            raise TamperError(f"segment {name}: {probs[0].text}")
        out += recs
    return out


# -- the surgery ------------------------------------------------------------------------

def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def rewrite_chain(fs: LittleFS, edits: dict[int, Edit], strip_sigs: bool = False,
                  sign: Callable[[bytes], bytes] | None = None) -> Rewrite:
    """Apply `edits` (seq -> edit of that entry's bytes, same length) to the log on a
    powered-off device's filesystem, then recompute the `prev` link of every later
    entry and every record CRC, so the record layer and the hash chain both check.

    Per-entry signatures of the changed entries (the edited ones and every later one,
    whose prev changed) are kept as they were (now over other bytes) or, with
    `strip_sigs`, removed with their record flag. With `sign` (someone who read the
    device key off the flash), every changed entry that carried a signature gets a
    valid new one instead. A device checkpoint record over a changed entry would give
    the edit away: TamperError; the caller picks entries none covers.
    """
    if not edits:
        raise TamperError("no entry to edit")
    first = min(edits)
    old: dict[int, bytes] = {}
    new: dict[int, bytes] = {}
    last, relinked, records, signed = first, 0, 0, 0
    for name in segments(fs):
        data = read_seg(fs, name)
        recs, probs = parse_records(data, name)
        if probs:  # whole records, every CRC good, before the surgery
            raise TamperError(f"segment {name}: {probs[0].text}")
        out = bytearray()
        for r in recs:
            if not r.is_entry or r.seq < first:
                if not r.is_entry and r.seq >= first:
                    raise TamperError(f"device checkpoint record {r.seq} covers the "
                                      f"edited entry {first}")
                if r.is_entry:
                    old[r.seq] = new[r.seq] = _sha(r.body)
                out += format_record(r.magic, r.seq, r.body, r.sig)
                continue
            body = r.body
            old[r.seq] = _sha(body)
            if r.seq - 1 in new and new[r.seq - 1] != old[r.seq - 1]:
                link = PREV_TAG + old[r.seq - 1]
                if body.count(link) != 1:
                    raise TamperError(f"entry {r.seq}: its prev link was not found")
                body = body.replace(link, PREV_TAG + new[r.seq - 1])
                relinked += 1
            if r.seq in edits:
                edited = edits[r.seq](body)
                if len(edited) != len(body) or edited == body:
                    raise TamperError(f"the edit of entry {r.seq} changed its length or "
                                      "nothing")
                body = edited
            new[r.seq] = _sha(body)
            sig = r.sig
            if sig is not None:
                signed += 1
                if sign is not None:
                    sig = sign(body)
                elif strip_sigs:
                    sig = None
            out += format_record(r.magic, r.seq, body, sig)  # flags and CRC recomputed
            records += 1
            last = max(last, r.seq)
        if bytes(out) != data:
            write_seg(fs, name, bytes(out))
    missing = sorted(s for s in edits if s not in new)
    if missing:
        raise TamperError(f"entry {missing[0]} is not on the image")
    return Rewrite(first, last, relinked, records, signed)


# -- one edit: a reading's value ----------------------------------------------------------

def float64(v: float) -> bytes:
    """`v` as a CBOR float64 (major type 7, 0xfb)."""
    return b"\xfb" + struct.pack(">d", v)


def needs_float64(v: float) -> bool:
    """Does deterministic CBOR encode `v` as a float64 (not exact as a float32)?"""
    return bool(struct.unpack(">f", struct.pack(">f", v))[0] != v)


def first_value(body: bytes) -> tuple[str, float] | None:
    """The first SenML record's name and value of a reading entry, when
    `change_first_value` can move it in place (a float64); else None."""
    e = parse_entry(body)
    recs = e.body
    if not isinstance(recs, list) or not recs or not isinstance(recs[0], dict):
        return None
    v = recs[0].get(2)
    if not isinstance(v, float) or not needs_float64(v) or body.count(float64(v)) != 1:
        return None
    return str(recs[0].get(0)), v


def change_first_value(delta: float) -> Edit:
    """Move the first SenML value of a reading by about `delta`, in place: the value is a
    canonical float64 before and after (same length, still deterministic CBOR)."""
    def edit(body: bytes) -> bytes:
        got = first_value(body)
        if got is None:
            raise TamperError(f"entry {parse_entry(body).seq}: no float64 first value "
                              "to move in place")
        v = got[1]
        w = v + delta
        while not needs_float64(w):
            w += 0.001
        out = body.replace(float64(v), float64(w))
        if parse_entry(out).body[0][2] != w:
            raise TamperError(f"entry {parse_entry(body).seq}: the value did not move")
        return out
    return edit
