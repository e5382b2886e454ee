"""Collector bundles: what a collector exports and a ledger reconciles (docs/BUNDLE.md).

Why JSON lines: a bundle is read by other parties' tools and by people, and it
streams (a collector with a million entries never holds one giant document). Each
line is one canonical JSON object (sorted keys, no spaces, ASCII); bytes are standard
base64. The parser is strict: a line that does not re-encode to the same bytes, an
unknown or missing field, a wrong type or size is a FormatError naming the line. The
bundle carries the raw device bytes exactly as collected, so every claim in it can be
re-verified from the bundle alone; nothing in it is trusted by the ledger.

Except who sent it: a bundle may end with a signature line by its collector's Ed25519
identity key (made with the collector store), over the exact bytes before it. Entries
and checkpoints are self-authenticating (device signatures), but an enrollment line is
only a claim, so the ledger counts enrollments only from bundles signed by a collector
it trusts (`ledger trust`). The parser checks the signature against the key the line
names and sets `Bundle.signer`; a signature that does not verify refuses the whole
bundle. Whether that key is trusted is the ledger's decision, not the parser's.

The bundle signature vouches for the bundle as a whole, once, at reconcile; the ledger
keeps nothing of it. So each enrollment line of a signed bundle also carries the
collector's signature over that one enrollment (formats.enrollment), which the ledger
keeps with the device and hands on in proofs: an auditor can then tell the collector's
enrollment from the ledger operator's edits. The parser checks each against the
bundle's signature key; one that does not verify refuses the whole bundle. In a bundle
without a signature line they are left unchecked (no key to check them against) and
count for nothing: reconcile takes an enrollment signature only from a bundle whose
`signer` is set, and so checked. Lines without one (bundles from before these
signatures) still read: their enrollments are unsigned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hashtrail.collector.store import Enrollment, RawEntry, Store, check_device_id, device_id_of
from hashtrail.errors import FormatError, VerificationError
from hashtrail.formats import note
from hashtrail.formats.enrollment import enrollment_signed, sign_enrollment
from hashtrail.formats.keys import parse_hex

FORMAT = "hashtrail-bundle/1"
MAX_LINE = 200_000          # an entry body is at most 65535 bytes (uint16 length on flash)
MAX_ENTRY = 65_535
MAX_COSE = 4096
MAX_TEXT = 200
SIG_CONTEXT = b"hashtrail-bundle-signature/1\n"
CURSOR_FORMAT = "hashtrail-cursor/1"
MAX_CURSOR = 1 << 20


@dataclass
class BundleCheckpoint:
    device_id: str
    cose: bytes
    nonce: bytes | None


@dataclass
class Bundle:
    collector_id: str
    collector_name: str
    created: int
    enrollments: list[Enrollment] = field(default_factory=list)
    entries: list[tuple[str, RawEntry]] = field(default_factory=list)
    checkpoints: list[BundleCheckpoint] = field(default_factory=list)
    # Per device: how many entry lines, and the highest seq among them (filled by the
    # parser, also when it streams the entries past instead of keeping them).
    counts: dict[str, int] = field(default_factory=dict)
    max_seq: dict[str, int] = field(default_factory=dict)
    # Set only by parse_bundle, after the signature line verified under this key;
    # reconcile relies on that (an in-memory Bundle you build yourself is unsigned).
    signer: note.Verifier | None = None


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _enrollment_sig(e: Enrollment, signer: note.Signer | None) -> bytes | None:
    """The collector's signature for an enrollment line: made now with `signer` (it is
    deterministic, so a bundle written again carries the same bytes); none without a
    signer, or for fields no enrollment text can carry (formats.enrollment: a label with
    DEL, say), which the ledger then shows as unsigned."""
    if signer is None:
        return None
    try:
        return sign_enrollment(signer, e.device_id, e.pub, e.label, e.board, e.fw,
                               e.enrolled_at)
    except FormatError:
        return None


def _lines(b: Bundle, signer: note.Signer | None = None) -> Iterator[str]:
    yield _line({"collector": {"id": b.collector_id, "name": b.collector_name},
                 "created": b.created, "format": FORMAT})
    for e in b.enrollments:
        line = {"type": "enrollment", "device": e.device_id, "pub": _b64(e.pub),
                "label": e.label, "board": e.board, "fw": e.fw,
                "enrolled_at": e.enrolled_at}
        sig = _enrollment_sig(e, signer)
        if sig is not None:
            line["sig"] = _b64(sig)
        yield _line(line)
    # Entry lines, the bulk of a bundle, are formatted here rather than by the JSON
    # encoder (a fifth of the cost): the same bytes as _line makes of them
    # (tests/host/test_bundle_write.py), since base64 needs no escaping and the
    # device id is encoded by json once per device.
    b2a = binascii.b2a_base64
    ids: dict[str, str] = {}
    for dev, r in b.entries:
        seq = r.seq
        did = ids.get(dev)
        if did is None:
            did = ids[dev] = json.dumps(dev, ensure_ascii=True)
        if type(seq) is not int or not isinstance(r.body, bytes):
            yield _line({"type": "entry", "device": dev, "seq": seq, "body": _b64(r.body),
                         "sig": _b64(r.sig)})
            continue
        s64 = "null" if r.sig is None else f'"{b2a(r.sig, newline=False).decode()}"'
        yield (f'{{"body":"{b2a(r.body, newline=False).decode()}","device":{did},'
               f'"seq":{seq},"sig":{s64},"type":"entry"}}')
    for c in b.checkpoints:
        yield _line({"type": "checkpoint", "device": c.device_id, "cose": _b64(c.cose),
                     "nonce": _b64(c.nonce)})


def signed_message(digest: bytes) -> bytes:
    """What a collector signs: a context line, then SHA-256 of every byte before the
    signature line (so a bundle of any size streams through one hash)."""
    return SIG_CONTEXT + digest


def write_bundle(b: Bundle, out: IO[str], signer: note.Signer | None = None) -> int:
    """Write the bundle's lines; with `signer`, sign each enrollment line and end with
    the signature line."""
    h = hashlib.sha256()
    block: list[str] = []

    def flush() -> int:
        """Write and hash the lines held (a block at a time: fewer, larger calls)."""
        data = "\n".join(block) + "\n"
        out.write(data)
        h.update(data.encode("ascii"))
        k = len(block)
        block.clear()
        return k

    n = 0
    for line in _lines(b, signer):
        block.append(line)
        if len(block) == 1024:
            n += flush()
    if block:
        n += flush()
    if signer is not None:
        sig = signer.sign(signed_message(h.digest()))
        out.write(_line({"type": "signature", "key": signer.verifier().to_string(),
                         "sig": _b64(sig)}) + "\n")
        n += 1
    return n


def from_store(st: Store, *, name: str = "", devices: list[str] | None = None,
               since: Mapping[str, int] | None = None) -> Bundle:
    """Everything the collector holds, as received (accepted and quarantined alike:
    the ledger re-verifies all of it, and a quarantined record may be fork evidence),
    devices in id order.

    `since` (device id -> seq, a ledger's cursor for this collector: docs/BUNDLE.md
    "Incremental export") leaves out what the ledger already received from it: of a
    listed device, only accepted entries above its seq, every quarantined record
    (few, and possibly the second half of fork evidence), and the checkpoints at or
    above its seq or not accepted by the collector. Enrollment lines always go."""
    b = Bundle(st.collector_id, name, int(time.time()))
    for e in sorted(st.enrollments(), key=lambda e: e.device_id):
        if devices is not None and e.device_id not in devices:
            continue
        b.enrollments.append(e)
        cut = None if since is None else since.get(e.device_id)
        if cut is None:
            b.entries.extend((e.device_id, r) for r in st.all_records(e.device_id))
            cps = st.checkpoints(e.device_id)
        else:
            recs = st.accepted_records(e.device_id, cut + 1) + st.quarantined(e.device_id)
            recs.sort(key=lambda r: r.seq)
            b.entries.extend((e.device_id, r) for r in recs)
            cps = [c for c in st.checkpoints(e.device_id) if c.seq >= cut or not c.accepted]
        b.checkpoints.extend(BundleCheckpoint(e.device_id, c.cose, c.nonce) for c in cps)
    return b


def bundle_digest(path: str | os.PathLike[str]) -> bytes:
    """What identifies a bundle file in a ledger's `bundles` table, read in O(1) for a
    signed bundle: SHA-256 of its last line, the collector's signature line, which
    commits to every byte before it (Ed25519 over their SHA-256). An unsigned bundle
    has no such line: SHA-256 of the whole file.

    A file that ends in a copy of a reconciled bundle's signature line but holds other
    lines is not that bundle's bytes; it is taken for it ("already reconciled") and
    so, like any bundle whose signature does not verify, it changes nothing."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - MAX_LINE - 2))
        tail = f.read()
        last = tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1:]
        if last.startswith(b'{"key":') and last.endswith(b'"type":"signature"}\n'):
            return hashlib.sha256(b"signature line\n" + last).digest()
        f.seek(0)
        h = hashlib.sha256(b"whole file\n")
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        return h.digest()


# -- cursors: what a ledger has received from one collector (docs/BUNDLE.md) -------------

def cursor_text(collector: str, seqs: Mapping[str, int]) -> str:
    """A cursor file: `{"collector": KEY, "devices": {ID: SEQ, ...}, "format": ...}`,
    one canonical JSON line."""
    return _line({"collector": collector, "devices": dict(seqs),
                  "format": CURSOR_FORMAT}) + "\n"


def parse_cursor(text: str, collector: str) -> dict[str, int]:
    """The device -> seq map of a cursor file made for the collector key `collector`.
    FormatError for anything else, including a cursor made for another collector
    (its seqs say nothing of what this one has sent)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError(f"not a {CURSOR_FORMAT} file (not JSON)") from None
    if not isinstance(obj, dict) or set(obj) != {"collector", "devices", "format"} \
            or obj["format"] != CURSOR_FORMAT:
        raise FormatError(f"not a {CURSOR_FORMAT} file (expected exactly the fields "
                          "collector, devices, format)")
    if obj["collector"] != collector:
        raise FormatError(f"the cursor is for collector key {str(obj['collector'])[:120]!r}, "
                          f"not this store's {collector}",
                          hint="ask the ledger for this collector's cursor: `hashtrail "
                               "ledger cursor --collector KEY`")
    devs = obj["devices"]
    if not isinstance(devs, dict):
        raise FormatError("cursor devices must be an object of device id -> seq")
    out: dict[str, int] = {}
    for did, seq in devs.items():
        if type(seq) is not int or not 0 <= seq < 1 << 63:
            raise FormatError(f"cursor seq of device {did[:40]!r} must be a non-negative "
                              "integer")
        out[check_device_id(did)] = seq
    return out


# -- strict reading --------------------------------------------------------------------

class _Line:
    """Typed field access for one parsed line; every error names the line."""

    def __init__(self, obj: Any, lineno: int, keys: AbstractSet[str]) -> None:
        self.n = lineno
        if not isinstance(obj, dict) or set(obj) != keys:
            raise self.err(f"expected exactly the fields {sorted(keys)}")
        self.obj: dict[str, Any] = obj

    def err(self, msg: str) -> FormatError:
        return FormatError(f"bundle line {self.n}: {msg}")

    def uint(self, k: str) -> int:
        v = self.obj[k]
        if type(v) is not int or v < 0 or v >= 1 << 63:
            raise self.err(f"{k} must be a non-negative integer")
        return v

    def text(self, k: str) -> str:
        v = self.obj[k]
        if not isinstance(v, str) or len(v) > MAX_TEXT or any(ord(c) < 0x20 for c in v):
            raise self.err(f"{k} must be a short single-line string")
        return v

    def collector_id(self) -> str:
        """16 lower-case hex characters, as the store makes it (one spelling per id)."""
        try:
            return parse_hex(self.obj["id"], 8, "collector id").hex()
        except FormatError as e:
            raise self.err(str(e)) from None

    def device(self) -> str:
        try:
            return check_device_id(self.obj["device"])
        except FormatError as e:
            raise self.err(str(e)) from None

    def blob(self, k: str, lo: int, hi: int, optional: bool = False) -> bytes | None:
        v = self.obj[k]
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise self.err(f"{k} must be base64")
        try:
            raw = base64.b64decode(v.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise self.err(f"{k} is not valid base64") from None
        if not lo <= len(raw) <= hi:
            raise self.err(f"{k} must be {lo}..{hi} bytes")
        return raw


def read_bundle(path: str | Path) -> Bundle:
    try:
        with open(path, "rb") as f:
            return parse_bundle(f)
    except OSError as e:
        raise FormatError(f"cannot read bundle {path}: {e.strerror}") from e


def parse_bundle(f: IO[bytes]) -> Bundle:
    """The whole bundle, entries included, in memory."""
    p = _Parser(_KEEP)
    for _ in p.run(f):
        pass
    return p.done()


class BundleFile:
    """A bundle file read in two streaming passes, so a bundle of any size is checked
    and reconciled in bounded memory.

    `scan()` reads every line strictly (as parse_bundle) and checks the signature, but
    keeps only the header, enrollments, checkpoints and per-device counts: a bad file
    is refused before anything is merged. `entries()` then streams the entry lines
    again, as strictly, in file order. Only enrollments depend on the collector's
    signature, and they come from the first pass; entries stand on device signatures."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def scan(self) -> Bundle:
        p = _Parser(_SCAN)
        try:
            with open(self.path, "rb") as f:
                for _ in p.run(f):
                    pass
        except OSError as e:
            raise FormatError(f"cannot read bundle {self.path}: {e.strerror}") from e
        return p.done()

    def entries(self) -> Iterator[tuple[str, RawEntry]]:
        for did, run in self.runs():
            for r in run:
                yield did, r

    def runs(self) -> Iterator[tuple[str, list[RawEntry]]]:
        """The entries as `entries()` gives them, a run of one device's lines at a time
        (device id, its entries in file order): a run of canonical lines comes as one
        list, so its reader (ledger.reconcile) takes no Python step per entry."""
        try:
            with open(self.path, "rb") as f:
                yield from _Parser(_ENTRIES).run(f)
        except OSError as e:
            raise FormatError(f"cannot read bundle {self.path}: {e.strerror}") from e


# The one shape a canonical entry line can have (keys sorted, no spaces, base64 and
# hex need no escapes): such a line is read without the JSON parser. Any other line,
# and one of this shape whose values are out of range, takes the general path below,
# which accepts or refuses it with its own message.
_ENTRY_LINE = re.compile(
    rb'\{"body":"([A-Za-z0-9+/]+={0,2})","device":"([0-9a-f]{32})","seq":(0|[1-9][0-9]{0,18}),'
    rb'"sig":(?:null|"([A-Za-z0-9+/]{86}==)"),"type":"entry"\}\n')


# Each pass takes a run of such lines of one device at once (the exporter writes each
# device's entries together): one match checks the shape of every line in it, and the
# run is hashed, counted and its highest seq found without a Python step per line (the
# second pass, and parse_bundle, take its entries' fields with one findall, _RUN_FIELDS,
# and yield them as one list).
# What the one-line pattern also checks per line (a base64 length that is a multiple of
# 4 and at most _MAX_B64, a seq below 2**63) is checked over the run (_Parser._run);
# a run that fails it is read line by line, as before, which says what is wrong.
_RUN = re.compile(
    rb'\{"body":"[A-Za-z0-9+/]+={0,2}","device":"(?P<d>[0-9a-f]{32})","seq":'
    rb'(?:0|[1-9][0-9]{0,18}),"sig":(?:null|"[A-Za-z0-9+/]{86}=="),"type":"entry"\}\n'
    rb'(?:\{"body":"[A-Za-z0-9+/]+={0,2}","device":"(?P=d)","seq":'
    rb'(?:0|[1-9][0-9]{0,18}),"sig":(?:null|"[A-Za-z0-9+/]{86}=="),"type":"entry"\}\n)*+')
_RUN_SEQS = re.compile(rb'"seq":([0-9]+)')     # (base64, hex and "null" hold no quote)
_RUN_BODIES = re.compile(rb'\{"body":"([^"]*)"')
# The second pass (and parse_bundle) also takes each line's fields from the run, with
# one findall over it: (body, seq, sig or b"" for null), a tuple per line.
_RUN_FIELDS = re.compile(rb'\{"body":"([^"]*)","device":"[0-9a-f]{32}","seq":([0-9]+),'
                         rb'"sig":(?:null|"([^"]*)")')
_BLOCK = 1 << 18        # bytes read at a time

# A canonical checkpoint line, likewise read without the JSON parser (a bundle has one
# for every hundred entries or so, and the JSON path and its canonical-form check cost
# about 16 us a line in each pass). Base64 whose length is not a multiple of 4, and a
# cose or nonce of a length out of range, take the general path, which says why.
_CHECKPOINT_LINE = re.compile(
    rb'\{"cose":"([A-Za-z0-9+/]+={0,2})","device":"([0-9a-f]{32})","nonce":'
    rb'(?:null|"([A-Za-z0-9+/]+={0,2})"),"type":"checkpoint"\}\n')


_KEEP, _SCAN, _ENTRIES = range(3)
_new = tuple.__new__        # RawEntry without its Python-level __new__ (per entry line)


_MAX_B64 = (MAX_ENTRY + 2) // 3 * 4     # the longest base64 of at most MAX_ENTRY bytes
_KEEP_IDS = 4096                        # device ids one pass keeps decoded, at most


class _Parser:
    """One strict pass over a bundle's lines; yields the entries, keeps the rest.

    Modes: _KEEP (parse_bundle) keeps everything in the Bundle; _SCAN (the first pass
    over a file) checks every line and the signature but only counts the entries,
    without decoding the ones of the fast path's shape; _ENTRIES (the second pass)
    yields the entries and skips the signature check: the first pass did it, and
    entries stand on device signatures, not on the collector's."""

    def __init__(self, mode: int) -> None:
        self.b: Bundle | None = None
        self.mode = mode

    def done(self) -> Bundle:
        if self.b is None:
            raise FormatError("empty bundle: no header line")
        return self.b

    def run(self, f: IO[bytes]) -> Iterator[tuple[str, list[RawEntry]]]:
        """Yields the entries (but in _SCAN mode), a run of one device's lines at a time:
        a run of canonical entry lines as one list, any other entry line alone."""
        hsh = hashlib.sha256()
        signed_at = 0
        match, mode = _ENTRY_LINE.match, self.mode
        cp_match = _CHECKPOINT_LINE.match
        # what b64decode does for bytes, without its Python wrapper: the line's shape
        # already admits only the base64 alphabet and padding
        a2b = binascii.a2b_base64
        fast = False        # after the header and before any signature line
        counts: dict[str, int] = {}
        max_seq: dict[str, int] = {}
        signed_enrollments: list[tuple[int, Enrollment]] = []
        # (a bundle names a few devices line after line: each id is decoded once, and
        # the same str object keys every dict below; `ids.get(k) or device(k)`)
        ids: dict[bytes, str] = {}

        def device(dkey: bytes) -> str:
            did = dkey.decode("ascii")
            if len(ids) < _KEEP_IDS:
                ids[dkey] = did
            return did

        # The file is read a block at a time and its lines found in the block (instead
        # of a readline call per line); a line the general path reads is what
        # readline(MAX_LINE + 2) would return at `pos`: through the newline, at most
        # MAX_LINE + 2 bytes, or what is left at the end of the file.
        buf, pos, eof = b"", 0, False
        lineno = 0
        run = _RUN.match
        fields = _RUN_FIELDS.findall
        no_run = 0          # (a run that failed its checks is read line by line)
        while True:
            # (the buffer holds MAX_LINE + 2 bytes from `pos`, or the rest of the file:
            # every line that may be read here is whole in it)
            if not eof and len(buf) - pos < MAX_LINE + 2:
                more = f.read(_BLOCK)
                buf, pos = buf[pos:] + more, 0
                eof = not more
                continue
            if pos == len(buf):
                break
            if fast and pos >= no_run:
                rm = run(buf, pos)
                if rm is not None:
                    end = rm.end()
                    got: list[tuple[bytes, bytes, bytes]] = []
                    if mode == _SCAN:
                        seg = buf[pos:end]
                        seqs = _RUN_SEQS.findall(seg)
                        top = max(map(int, seqs))
                        ok = top < 1 << 63 and all(not w & 3 and w <= _MAX_B64 for w in
                                                   set(map(len, _RUN_BODIES.findall(seg))))
                        k = len(seqs)
                    else:
                        # one tuple per line: (body, seq, sig or b"" for null)
                        got = fields(buf, pos, end)
                        nums = [int(x[1]) for x in got]
                        top = max(nums)
                        ok = top < 1 << 63 and all(not w & 3 and w <= _MAX_B64 for w in
                                                   {len(x[0]) for x in got})
                        k = len(got)
                    if ok:
                        dkey = rm.group("d")
                        did = ids.get(dkey) or device(dkey)
                        lineno += k
                        if mode != _ENTRIES:
                            hsh.update(buf[pos:end])
                            counts[did] = counts.get(did, 0) + k
                            if top > max_seq.get(did, -1):
                                max_seq[did] = top
                        pos = end
                        if mode == _SCAN:
                            continue
                        rs = [_new(RawEntry, (q, a2b(b64), a2b(s64) if s64 else None))
                              for q, (b64, _, s64) in zip(nums, got, strict=True)]
                        if mode == _KEEP:
                            self.b.entries.extend(  # type: ignore[union-attr]
                                [(did, r) for r in rs])
                        yield did, rs
                        continue
                    no_run = end
            # (the pattern ends at the line's newline, as fullmatch of the line would)
            m = match(buf, pos) if fast else None
            lineno += 1
            if m is None and fast:
                cm = cp_match(buf, pos)
                if cm is not None:
                    c64, dkey, n64 = cm.groups()
                    if not len(c64) & 3 and (n64 is None or not len(n64) & 3):
                        cb, nonce = a2b(c64), None if n64 is None else a2b(n64)
                        if 1 <= len(cb) <= MAX_COSE and (nonce is None
                                                          or 1 <= len(nonce) <= 32):
                            pos = cm.end()
                            if mode == _ENTRIES:
                                continue
                            hsh.update(cm.group())
                            did = ids.get(dkey) or device(dkey)
                            self.b.checkpoints.append(  # type: ignore[union-attr]
                                BundleCheckpoint(did, cb, nonce))
                            continue
            if m is None:
                nl = buf.find(b"\n", pos, pos + MAX_LINE + 2)
                raw = buf[pos:pos + MAX_LINE + 2 if nl < 0 else nl + 1]
                pos += len(raw)
            else:
                # The fast path: a canonical entry line (its shape implies the newline
                # and the length checks below); its body's decoded length follows from
                # the base64 length, which must be a multiple of 4 to decode at all.
                b64, dkey, sq, s64 = m.groups()
                n64, seq = len(b64), int(sq)
                if not n64 & 3 and n64 <= _MAX_B64 and seq < 1 << 63:
                    pos = m.end()
                    did = ids.get(dkey) or device(dkey)
                    if mode != _ENTRIES:
                        hsh.update(m.group())
                        counts[did] = counts.get(did, 0) + 1
                        if seq > max_seq.get(did, -1):
                            max_seq[did] = seq
                        if mode == _SCAN:
                            continue
                    r = _new(RawEntry, (seq, a2b(b64), None if s64 is None else a2b(s64)))
                    if mode == _KEEP:
                        self.b.entries.append((did, r))  # type: ignore[union-attr]
                    yield did, [r]
                    continue
                raw = m.group()       # (out of range: the general path says why)
                pos = m.end()
            if not raw.endswith(b"\n") or len(raw) > MAX_LINE + 1:
                raise FormatError(f"bundle line {lineno}: too long or not newline-terminated")
            if signed_at:
                raise FormatError(f"bundle line {lineno}: data after the signature line "
                                  f"{signed_at}")
            obj = self._json(raw, lineno)
            if self.b is None:
                h = _Line(obj, lineno, {"collector", "created", "format"})
                if obj["format"] != FORMAT:
                    raise h.err(f"not a {FORMAT} file")
                c = _Line(obj["collector"], lineno, {"id", "name"})
                self.b = Bundle(c.collector_id(), c.text("name"), h.uint("created"),
                                counts=counts, max_seq=max_seq)
                hsh.update(raw)
                fast = True
                continue
            b = self.b
            kind = obj.get("type") if isinstance(obj, dict) else None
            if kind == "signature":
                fast = False
            if kind == "signature" and mode == _ENTRIES:
                signed_at = lineno
                continue
            if kind == "signature":
                b.signer = _check_signature(_Line(obj, lineno, {"type", "key", "sig"}),
                                            hsh.digest())
                _check_enrollments(b.signer, signed_enrollments)
                signed_at = lineno
                continue
            hsh.update(raw)
            if kind == "enrollment":
                x = _Line(obj, lineno, _ENROLL_SIGNED if "sig" in obj else _ENROLL)
                dev, pub = x.device(), x.blob("pub", 65, 65)
                assert pub is not None
                if device_id_of(pub) != dev:
                    raise x.err("device id is not derived from the public key")
                e = Enrollment(dev, pub, x.text("label"), x.text("board"), x.text("fw"),
                               x.uint("enrolled_at"),
                               x.blob("sig", 64, 64) if "sig" in obj else None)
                b.enrollments.append(e)
                if e.sig is not None:
                    signed_enrollments.append((lineno, e))
            elif kind == "entry":
                x = _Line(obj, lineno, {"type", "device", "seq", "body", "sig"})
                blob = x.blob("body", 1, MAX_ENTRY)
                assert blob is not None
                did = x.device()
                r = RawEntry(x.uint("seq"), blob, x.blob("sig", 64, 64, optional=True))
                self._count(did, r.seq)
                if mode == _KEEP:
                    b.entries.append((did, r))
                if mode != _SCAN:
                    yield did, [r]
            elif kind == "checkpoint":
                x = _Line(obj, lineno, {"type", "device", "cose", "nonce"})
                cose = x.blob("cose", 1, MAX_COSE)
                assert cose is not None
                b.checkpoints.append(BundleCheckpoint(x.device(), cose,
                                                      x.blob("nonce", 1, 32, optional=True)))
            else:
                raise FormatError(f"bundle line {lineno}: unknown record type {kind!r}")

    @staticmethod
    def _json(raw: bytes, lineno: int) -> Any:
        try:
            text = raw[:-1].decode("ascii")
            obj = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise FormatError(f"bundle line {lineno}: not ASCII JSON") from None
        if _line(obj) != text:
            raise FormatError(f"bundle line {lineno}: not in canonical form")
        return obj

    def _count(self, did: str, seq: int) -> None:
        b = self.b
        assert b is not None
        b.counts[did] = b.counts.get(did, 0) + 1
        if seq > b.max_seq.get(did, -1):
            b.max_seq[did] = seq


_ENROLL = frozenset({"type", "device", "pub", "label", "board", "fw", "enrolled_at"})
_ENROLL_SIGNED = _ENROLL | {"sig"}


def _check_enrollments(v: note.Verifier, signed: list[tuple[int, Enrollment]]) -> None:
    """Every enrollment signature of the bundle, by its signature key `v`: one that does
    not verify refuses the bundle (the collector signed something else, or the line was
    edited before the bundle was signed again by another key)."""
    for lineno, e in signed:
        assert e.sig is not None
        if not enrollment_signed(v, e.sig, e.device_id, e.pub, e.label, e.board, e.fw,
                                 e.enrolled_at):
            raise VerificationError(f"bundle line {lineno}: the enrollment signature of "
                                    f"device {e.device_id} by collector {v.name} does not "
                                    "verify over that enrollment",
                                    hint="the whole bundle is refused; get a fresh export "
                                         "from its collector")


def _check_signature(x: _Line, digest: bytes) -> note.Verifier:
    key = x.obj["key"]
    if not isinstance(key, str):
        raise x.err("key must be a collector verifier key")
    try:
        v = note.Verifier.from_string(key)
    except FormatError as e:
        raise x.err(f"bad collector key: {e}") from None
    if v.to_string() != key:
        raise x.err("collector key must be an Ed25519 note key (type 0x01)")
    sig = x.blob("sig", 64, 64)
    assert sig is not None
    if not v.verify(signed_message(digest), sig):
        raise VerificationError(f"bundle line {x.n}: the collector signature by {v.name} does "
                                "not verify: the bundle was altered after export, or forged",
                                hint="the whole bundle is refused; get a fresh export from "
                                     "its collector")
    return v
