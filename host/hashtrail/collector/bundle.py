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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hashtrail.collector.store import Enrollment, RawEntry, Store, check_device_id, device_id_of
from hashtrail.errors import FormatError, VerificationError
from hashtrail.formats import note
from hashtrail.formats.keys import parse_hex

FORMAT = "hashtrail-bundle/1"
MAX_LINE = 200_000          # an entry body is at most 65535 bytes (uint16 length on flash)
MAX_ENTRY = 65_535
MAX_COSE = 4096
MAX_TEXT = 200
SIG_CONTEXT = b"hashtrail-bundle-signature/1\n"


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
    # Set only by parse_bundle, after the signature line verified under this key;
    # reconcile relies on that (an in-memory Bundle you build yourself is unsigned).
    signer: note.Verifier | None = None


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _lines(b: Bundle) -> Iterator[str]:
    yield _line({"collector": {"id": b.collector_id, "name": b.collector_name},
                 "created": b.created, "format": FORMAT})
    for e in b.enrollments:
        yield _line({"type": "enrollment", "device": e.device_id, "pub": _b64(e.pub),
                     "label": e.label, "board": e.board, "fw": e.fw,
                     "enrolled_at": e.enrolled_at})
    for dev, r in b.entries:
        yield _line({"type": "entry", "device": dev, "seq": r.seq, "body": _b64(r.body),
                     "sig": _b64(r.sig)})
    for c in b.checkpoints:
        yield _line({"type": "checkpoint", "device": c.device_id, "cose": _b64(c.cose),
                     "nonce": _b64(c.nonce)})


def signed_message(digest: bytes) -> bytes:
    """What a collector signs: a context line, then SHA-256 of every byte before the
    signature line (so a bundle of any size streams through one hash)."""
    return SIG_CONTEXT + digest


def write_bundle(b: Bundle, out: IO[str], signer: note.Signer | None = None) -> int:
    """Write the bundle's lines; with `signer`, end with its signature line."""
    n = 0
    h = hashlib.sha256()
    for line in _lines(b):
        data = line + "\n"
        out.write(data)
        h.update(data.encode("ascii"))
        n += 1
    if signer is not None:
        sig = signer.sign(signed_message(h.digest()))
        out.write(_line({"type": "signature", "key": signer.verifier().to_string(),
                         "sig": _b64(sig)}) + "\n")
        n += 1
    return n


def from_store(st: Store, *, name: str = "", devices: list[str] | None = None) -> Bundle:
    """Everything the collector holds, as received (accepted and quarantined alike:
    the ledger re-verifies all of it, and a quarantined record may be fork evidence)."""
    b = Bundle(st.collector_id, name, int(time.time()))
    for e in st.enrollments():
        if devices is not None and e.device_id not in devices:
            continue
        b.enrollments.append(e)
        b.entries.extend((e.device_id, r) for r in st.all_records(e.device_id))
        b.checkpoints.extend(BundleCheckpoint(e.device_id, c.cose, c.nonce)
                             for c in st.checkpoints(e.device_id))
    return b


# -- strict reading --------------------------------------------------------------------

class _Line:
    """Typed field access for one parsed line; every error names the line."""

    def __init__(self, obj: Any, lineno: int, keys: set[str]) -> None:
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
    b: Bundle | None = None
    hsh = hashlib.sha256()
    signed_at = 0
    for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE + 2), b""), 1):
        if not raw.endswith(b"\n") or len(raw) > MAX_LINE + 1:
            raise FormatError(f"bundle line {lineno}: too long or not newline-terminated")
        if signed_at:
            raise FormatError(f"bundle line {lineno}: data after the signature line "
                              f"{signed_at}")
        try:
            text = raw[:-1].decode("ascii")
            obj = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise FormatError(f"bundle line {lineno}: not ASCII JSON") from None
        if _line(obj) != text:
            raise FormatError(f"bundle line {lineno}: not in canonical form")
        if b is None:
            h = _Line(obj, lineno, {"collector", "created", "format"})
            if obj["format"] != FORMAT:
                raise h.err(f"not a {FORMAT} file")
            c = _Line(obj["collector"], lineno, {"id", "name"})
            b = Bundle(c.collector_id(), c.text("name"), h.uint("created"))
            hsh.update(raw)
            continue
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "signature":
            b.signer = _check_signature(_Line(obj, lineno, {"type", "key", "sig"}),
                                        hsh.digest())
            signed_at = lineno
            continue
        hsh.update(raw)
        if kind == "enrollment":
            x = _Line(obj, lineno, {"type", "device", "pub", "label", "board", "fw",
                                    "enrolled_at"})
            dev, pub = x.device(), x.blob("pub", 65, 65)
            assert pub is not None
            if device_id_of(pub) != dev:
                raise x.err("device id is not derived from the public key")
            b.enrollments.append(Enrollment(dev, pub, x.text("label"), x.text("board"),
                                            x.text("fw"), x.uint("enrolled_at")))
        elif kind == "entry":
            x = _Line(obj, lineno, {"type", "device", "seq", "body", "sig"})
            body = x.blob("body", 1, MAX_ENTRY)
            assert body is not None
            b.entries.append((x.device(), RawEntry(x.uint("seq"), body,
                                                   x.blob("sig", 64, 64, optional=True))))
        elif kind == "checkpoint":
            x = _Line(obj, lineno, {"type", "device", "cose", "nonce"})
            cose = x.blob("cose", 1, MAX_COSE)
            assert cose is not None
            b.checkpoints.append(BundleCheckpoint(x.device(), cose,
                                                  x.blob("nonce", 1, 32, optional=True)))
        else:
            raise FormatError(f"bundle line {lineno}: unknown record type {kind!r}")
    if b is None:
        raise FormatError("empty bundle: no header line")
    return b


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
