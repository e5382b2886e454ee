"""C2SP signed notes and tlog-checkpoints, with Ed25519 signatures.

Why the C2SP forms (c2sp.org/signed-note, c2sp.org/tlog-checkpoint): ledger checkpoints
are read by witnesses and auditors with tools that are not ours (Go's sumdb/note, the
transparency-dev witnesses), so the bytes follow the spec exactly:

    <origin>\\n<tree size, decimal>\\n<base64 root hash>\\n[<extension line>\\n...]
    \\n
    — <key name> <base64(key id (4) || Ed25519 signature (64))>\\n      (one or more)

key id = SHA-256(name || "\\n" || 0x01 || public key)[:4]; the signed message is the note
text (everything before the blank line, including its final newline). Verifier keys are
`<name>+<key id hex>+<base64(0x01 || public key)>`; signer keys (our key files) are
`PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || private seed)>`, as in Go's note package.

Witness cosignatures follow c2sp.org/tlog-cosignature (cosignature/v1, Ed25519): the
line is `— <witness name> base64(key id (4) || timestamp (u64 BE) || signature (64))`,
key id = SHA-256(name || "\n" || 0x04 || public key)[:4], and the signature covers
"cosignature/v1\ntime <timestamp>\n" followed by the checkpoint text. A witness keeps
one Ed25519 key file in the ordinary signer form; its cosigner verifier key is
`<name>+<key id hex>+<base64(0x04 || public key)>` (`Verifier.cosigner_string`).

Parsers are strict and canonical: anything that does not re-encode to the same bytes
("+2", "02", a missing blank line, non-canonical base64, stray whitespace) is a
FormatError. Verification fails closed: a note with no signature by a trusted key is a
VerificationError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from hashtrail.errors import ConfigError, FormatError, VerificationError

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
COSIGNATURE_V1 = b"cosignature/v1\n"
SIG_PREFIX = "\u2014 "   # em dash, space
MAX_NOTE = 1 << 16


class Checkpoint(NamedTuple):
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


class Signature(NamedTuple):
    name: str
    key_id: bytes
    sig: bytes


class Note(NamedTuple):
    text: str
    sigs: tuple[Signature, ...]


# -- base64 and names -----------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise FormatError(f"{what}: bad base64") from e
    if _b64(raw) != text:
        raise FormatError(f"{what}: non-canonical base64")
    return raw


ORIGIN_HINT = ("a checkpoint origin names the log: a schema-less URL with no spaces or "
               "'+', e.g. example.com/ledger (c2sp.org/tlog-checkpoint); it is also the "
               "ledger key's name (c2sp.org/signed-note)")


def check_origin(origin: str) -> str:
    """A checkpoint origin a new log may take: a valid signed-note key name (non-empty,
    no spaces, '+' or control characters) and schema-less (no 'https://')."""
    if not origin or any(c in "+" or not c.isprintable() or c.isspace() for c in origin) \
            or "://" in origin:
        raise ConfigError(f"--origin {origin!r} is not a checkpoint origin", hint=ORIGIN_HINT)
    return origin


def _check_name(name: str) -> str:
    if not name or any(c in "+ \n" or ord(c) < 0x21 for c in name):
        raise FormatError(f"bad key name {name!r}: non-empty, no spaces, '+' or newlines")
    try:    # a lone surrogate (a JSON "\ud800" in a proof) has no UTF-8: no key id
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"bad key name {name!r}: not valid Unicode text") from None
    return name


def key_id(name: str, pub: bytes, alg: int = ALG_ED25519) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + pub).digest()[:4]


# -- keys ------------------------------------------------------------------------------

def _kid_error(what: str, kid: str, want: bytes) -> str:
    """A key id is 8 lower-case hex characters; another spelling of the right id is
    named as such (one canonical form, docs decision 4), anything else a mismatch."""
    if kid.strip().lower().removeprefix("0x") == want.hex():
        return (f"{what} key id must be written as hashtrail prints it: 8 lower-case hex "
                f"characters (did you mean {want.hex()}?)")
    return f"{what} key id does not match its name and key"


class Verifier:
    """An Ed25519 note verifier key: `<name>+<hex key id>+<base64(0x01||pub)>`."""

    def __init__(self, name: str, pub: bytes) -> None:
        self.name = _check_name(name)
        if len(pub) != 32:
            raise FormatError("an Ed25519 public key is 32 bytes")
        self.pub = pub
        self.key_id = key_id(name, pub)
        self.cosigner_id = key_id(name, pub, ALG_COSIGNATURE_V1)
        self._key = Ed25519PublicKey.from_public_bytes(pub)

    @classmethod
    def from_string(cls, text: str) -> Verifier:
        """A verifier key of either type: Ed25519 note key (0x01) or cosignature/v1
        cosigner key (0x04); both hold the same kind of Ed25519 public key."""
        parts = text.strip().split("+", 2)   # base64 may itself contain '+'
        if len(parts) != 3:
            raise FormatError("a verifier key is <name>+<key id hex>+<base64 key>")
        name, kid, key = parts
        raw = _unb64(key, "verifier key")
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise FormatError("verifier key is not an Ed25519 (0x01) or cosignature/v1 "
                              "(0x04) key")
        v = cls(name, raw[1:])
        want = v.key_id if raw[0] == ALG_ED25519 else v.cosigner_id
        if want.hex() != kid:
            raise FormatError(_kid_error("verifier", kid, want))
        return v

    def to_string(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.pub)}"

    def cosigner_string(self) -> str:
        """This key as a c2sp.org/tlog-cosignature cosigner verifier key (type 0x04)."""
        return (f"{self.name}+{self.cosigner_id.hex()}+"
                f"{_b64(bytes([ALG_COSIGNATURE_V1]) + self.pub)}")

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 note signer; its key string is Go note's `PRIVATE+KEY+...` form."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = _check_name(name)
        if len(seed) != 32:
            raise FormatError("an Ed25519 private key is 32 bytes")
        self._priv = Ed25519PrivateKey.from_private_bytes(seed)
        self.pub = self._priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, self.pub)

    @classmethod
    def generate(cls, name: str) -> Signer:
        seed = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, seed)

    @classmethod
    def from_string(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise FormatError("a signer key is PRIVATE+KEY+<name>+<key id hex>+<base64 key>",
                              hint="make one with `hashtrail ledger init` or `ledger keygen`")
        _, _, name, kid, key = parts
        raw = _unb64(key, "signer key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("signer key is not an Ed25519 (0x01) key")
        s = cls(name, raw[1:])
        if s.key_id.hex() != kid:
            raise FormatError(_kid_error("signer", kid, s.key_id))
        return s

    def to_string(self) -> str:
        seed = self._priv.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return (f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+"
                f"{_b64(bytes([ALG_ED25519]) + seed)}")

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.pub)

    def sign(self, msg: bytes) -> bytes:
        return self._priv.sign(msg)


# -- notes -----------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")    # every control but newline


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end with a newline")
    if "\n\n" in text or text.startswith("\n"):
        raise FormatError("note text must not contain blank lines")
    if _CONTROL.search(text):
        raise FormatError("note text contains control characters")


def format_note(note: Note) -> bytes:
    _check_text(note.text)
    if not note.sigs:
        raise FormatError("a signed note needs at least one signature")
    lines = [f"{SIG_PREFIX}{_check_name(s.name)} {_b64(s.key_id + s.sig)}\n" for s in note.sigs]
    return (note.text + "\n" + "".join(lines)).encode("utf-8")


def parse_note(data: bytes) -> Note:
    """Strict parse of a signed note; the result re-encodes to exactly `data`."""
    if len(data) > MAX_NOTE:
        raise FormatError("signed note is too large")
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("signed note is not UTF-8") from e
    cut = s.rfind("\n\n")
    if cut < 0:
        raise FormatError("signed note has no blank line before its signatures")
    text, block = s[:cut + 1], s[cut + 2:]
    _check_text(text)
    if not block.endswith("\n"):
        raise FormatError("signature block must end with a newline")
    sigs = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise FormatError("signature line must start with an em dash and a space")
        fields = line[len(SIG_PREFIX):].split(" ")
        if len(fields) != 2:
            raise FormatError("signature line is `— <name> <base64>`")
        name, b64 = fields
        raw = _unb64(b64, "signature")
        if len(raw) < 5:
            raise FormatError("signature is too short")
        sigs.append(Signature(_check_name(name), raw[:4], raw[4:]))
    note = Note(text, tuple(sigs))
    if format_note(note) != data:
        raise FormatError("signed note is not in canonical form")
    return note


def sign_note(text: str, signers: list[Signer]) -> bytes:
    _check_text(text)
    msg = text.encode("utf-8")
    return format_note(Note(text, tuple(Signature(s.name, s.key_id, s.sign(msg))
                                        for s in signers)))


def add_signature(data: bytes, signer: Signer) -> bytes:
    """Cosign: append `signer`'s signature to a note, keeping the existing ones."""
    note = parse_note(data)
    if any(s.key_id == signer.key_id and s.name == signer.name for s in note.sigs):
        return data
    new = Signature(signer.name, signer.key_id, signer.sign(note.text.encode("utf-8")))
    return format_note(Note(note.text, (*note.sigs, new)))


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header line, time line, then the checkpoint text."""
    return COSIGNATURE_V1 + f"time {timestamp}\n".encode() + text.encode("utf-8")


def cosign(data: bytes, signer: Signer, timestamp: int) -> bytes:
    """Add `signer`'s c2sp.org/tlog-cosignature cosignature/v1 line to a signed note.

    Existing lines stay as they are; a note this key already cosigned is returned
    unchanged (one cosignature per cosigner key, as verifiers count them)."""
    if not 0 <= timestamp < 1 << 63:
        raise FormatError("cosignature timestamp must be 0..2^63-1")
    note = parse_note(data)
    kid = key_id(signer.name, signer.pub, ALG_COSIGNATURE_V1)
    if any(s.name == signer.name and s.key_id == kid for s in note.sigs):
        return data
    sig = signer.sign(cosignature_message(note.text, timestamp))
    new = Signature(signer.name, kid, timestamp.to_bytes(8, "big") + sig)
    return format_note(Note(note.text, (*note.sigs, new)))


def open_cosignatures(data: bytes, cosigners: list[Verifier]) -> dict[str, int]:
    """The cosignature/v1 lines of `cosigners` on a note: {cosigner name: timestamp}.

    Lines of other keys are ignored; a line that claims a given cosigner's name and key
    id but is malformed or does not verify is a VerificationError (fail closed)."""
    note = parse_note(data)
    out: dict[str, int] = {}
    for s in note.sigs:
        for v in cosigners:
            if v.name != s.name or v.cosigner_id != s.key_id:
                continue
            if len(s.sig) != 72:
                raise VerificationError(f"cosignature by {s.name} is not 8 + 64 bytes")
            ts = int.from_bytes(s.sig[:8], "big")
            if ts >= 1 << 63 or not v.verify(cosignature_message(note.text, ts), s.sig[8:]):
                raise VerificationError(f"cosignature by {s.name} does not verify")
            out[v.name] = ts
    return out


def open_note(data: bytes, verifiers: list[Verifier]) -> tuple[Note, list[str]]:
    """Parse and check a note; returns it with the names of verifiers that signed it.

    Signatures by unknown keys are ignored (others may have cosigned); a signature that
    claims a known key but does not verify is an error; no verified signature at all
    is an error (fail closed).
    """
    note = parse_note(data)
    msg = note.text.encode("utf-8")
    ok: list[str] = []
    for s in note.sigs:
        for v in verifiers:
            if v.name == s.name and v.key_id == s.key_id:
                if len(s.sig) != 64 or not v.verify(msg, s.sig):
                    raise VerificationError(f"signature by {s.name} does not verify")
                ok.append(v.name)
    if not ok:
        raise VerificationError("no signature by a trusted key on this note")
    return note, ok


# -- tlog checkpoints ------------------------------------------------------------------

def format_checkpoint(cp: Checkpoint) -> str:
    if not cp.origin or "\n" in cp.origin or cp.size < 0 or len(cp.root) != 32:
        raise FormatError("bad checkpoint fields")
    for ext in cp.extensions:
        if not ext or "\n" in ext:
            raise FormatError("checkpoint extension lines are non-empty single lines")
    return "".join(f"{line}\n" for line in (cp.origin, str(cp.size), _b64(cp.root),
                                           *cp.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """Strict parse of a checkpoint body (a note's text)."""
    _check_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise FormatError("checkpoint needs origin, tree size and root hash lines")
    origin, size_s, root_s, *ext = lines
    if not size_s.isascii() or not size_s.isdigit() or (size_s != "0" and size_s[0] == "0"):
        raise FormatError(f"bad tree size {size_s!r}")
    root = _unb64(root_s, "root hash")
    if len(root) != 32:
        raise FormatError("root hash is not 32 bytes")
    cp = Checkpoint(origin, int(size_s), root, tuple(ext))
    if format_checkpoint(cp) != text:
        raise FormatError("checkpoint is not in canonical form")
    return cp


def sign_checkpoint(cp: Checkpoint, signers: list[Signer]) -> bytes:
    return sign_note(format_checkpoint(cp), signers)


def open_checkpoint(data: bytes, verifiers: list[Verifier]) -> tuple[Checkpoint, list[str]]:
    note, names = open_note(data, verifiers)
    return parse_checkpoint(note.text), names
