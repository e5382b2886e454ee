"""Firmware update packages (docs/FORMATS.md "Update package"): the one parser.

Why one module: the release tool writes packages, `hashtrail update` reads them
before sending, and the tests forge them as an attacker would; all of them must agree
on the bytes the device checks (firmware/lib/hashtrail/update.py keeps its own
`const()` copies, cross-checked by tests/host/test_format_constants.py).

A package is one file:

    magic "HTU1" | manifest length u32 LE | manifest | file contents, in manifest order

The manifest is a tagged COSE_Sign1 (RFC 9052, ES256, like the device checkpoints in
checkpoint.py) signed with the owner's release key, kid = the key's 16-byte id (the
derivation of a device id). Its payload is a canonical CBOR map:

    {0: format version 1, 1: firmware version (tstr), 2: security counter (uint),
     3: board (tstr), 4: [[device path (tstr), size (uint), SHA-256 (bstr 32)], ...]}

or, for a full firmware image (the MicroPython app image with the firmware frozen in,
written to the board's next OTA partition: firmware/lib/hashtrail/board_ota.py), key 5
in place of key 4:

    {0: 1, 1: version, 2: counter, 3: board, 5: [image size (uint), SHA-256 (bstr 32)]}

and the package carries the image's bytes after the manifest. Which of the two a
package is, is signed: a device never takes an image for files or files for an image.

The device trusts only keys pinned on it (`RELEASE_KEYS_PATH`); a package never brings
its own trust: the kid only says which pinned key to try first.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from hashtrail.errors import FormatError, VerificationError
from hashtrail.formats import cbor_strict
from hashtrail.formats.cbor_strict import int_keys, is_uint
from hashtrail.formats.checkpoint import ALG_ES256, HDR_ALG, HDR_KID, TAG_COSE_SIGN1, sig_structure
from hashtrail.formats.keys import DeviceKey, device_id_bytes

__all__ = [
    "FW_DIR",
    "MAGIC",
    "MAX_FILES",
    "MAX_MANIFEST",
    "MAX_VERSION",
    "M_BOARD",
    "M_COUNTER",
    "M_FILES",
    "M_IMAGE",
    "M_V",
    "M_VERSION",
    "RELEASE_KEYS_PATH",
    "VERSION",
    "FileEntry",
    "ImageEntry",
    "Manifest",
    "Package",
    "encode_image_payload",
    "encode_payload",
    "pack",
    "parse_manifest",
    "parse_package",
    "release_keys_file",
    "sign_manifest",
    "verify_manifest",
]

MAGIC = b"HTU1"
VERSION = 1
M_V, M_VERSION, M_COUNTER, M_BOARD, M_FILES, M_IMAGE = range(6)
# Bounds the device holds a package to: the manifest is written to its flash as it comes
# and checked whole before any file byte is taken. 4096 holds MAX_FILES rows (~80 bytes
# each); it was 2048 until the firmware's 27th module (board_ota) made its own package's
# manifest 2,099 bytes, which a device from before refuses (update it with a package of
# at most 2048, or by USB).
MAX_MANIFEST = 4096
MAX_FILES = 48
MAX_VERSION = 32
MAX_COUNTER = 0xFFFFFFFF
# An app image: at most what a u32 size says; the device refuses one larger than its
# next OTA partition (1.5 MiB in MicroPython's 4 MiB OTA layout).
MAX_IMAGE = 0xFFFFFFFF
# Where the files go: only the firmware's own package folder, flat.
FW_DIR = "/lib/hashtrail/"
# The pinned release public keys on the device: 65-byte SEC1 keys, concatenated.
RELEASE_KEYS_PATH = "/ht/release_keys"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_VERSION_TEXT = re.compile(r"[\x21-\x7e]{1,32}")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: bytes


@dataclass(frozen=True)
class ImageEntry:
    size: int
    sha256: bytes


@dataclass(frozen=True)
class Manifest:
    version: str
    counter: int
    board: str
    files: tuple[FileEntry, ...]  # empty for an image package
    kid: bytes
    protected: bytes
    payload: bytes
    signature: bytes
    raw: bytes
    image: ImageEntry | None = None  # a full firmware image instead of files

    @property
    def hash(self) -> bytes:
        """SHA-256 of the signed manifest bytes: what the device's update entry names."""
        return hashlib.sha256(self.raw).digest()


@dataclass(frozen=True)
class Package:
    manifest: Manifest
    files: dict[str, bytes]
    raw: bytes
    image: bytes | None = None


def release_keys_file(keys: Sequence[bytes]) -> bytes:
    """The bytes of RELEASE_KEYS_PATH: each release public key (65 bytes SEC1, checked
    to be a P-256 point) once, in the order given."""
    out: list[bytes] = []
    for k in keys:
        pub = DeviceKey(k).pub
        if pub not in out:
            out.append(pub)
    return b"".join(out)


def check_version(text: str) -> str:
    if not _VERSION_TEXT.fullmatch(text):
        raise FormatError(f"firmware version {text!r} must be 1 to {MAX_VERSION} printable "
                          "ASCII characters without spaces")
    return text


def check_path(path: str) -> str:
    if not path.startswith(FW_DIR) or not _NAME.fullmatch(path[len(FW_DIR):]) \
            or path[len(FW_DIR):] in (".", ".."):
        raise FormatError(f"update file {path!r} must be a plain name in {FW_DIR}")
    return path


def _check_head(version: str, counter: int) -> None:
    check_version(version)
    if not 0 < counter <= MAX_COUNTER:
        raise FormatError(f"security counter must be 1..{MAX_COUNTER}")


def encode_payload(version: str, counter: int, board: str,
                   files: Mapping[str, bytes]) -> bytes:
    """The manifest payload for these files (device path -> contents)."""
    _check_head(version, counter)
    if not files or len(files) > MAX_FILES:
        raise FormatError(f"a package holds 1 to {MAX_FILES} files")
    rows = [[check_path(p), len(d), hashlib.sha256(d).digest()] for p, d in files.items()]
    return cbor2.dumps({M_V: VERSION, M_VERSION: version, M_COUNTER: counter,
                        M_BOARD: board, M_FILES: rows}, canonical=True)


def encode_image_payload(version: str, counter: int, board: str, image: bytes) -> bytes:
    """The manifest payload for a full firmware image (key 5 in place of the files)."""
    _check_head(version, counter)
    if not 0 < len(image) <= MAX_IMAGE:
        raise FormatError("a firmware image must not be empty")
    return cbor2.dumps({M_V: VERSION, M_VERSION: version, M_COUNTER: counter,
                        M_BOARD: board, M_IMAGE: [len(image), hashlib.sha256(image).digest()]},
                       canonical=True)


def sign_manifest(payload: bytes, pub: bytes, sign: Any) -> bytes:
    """COSE_Sign1 over `payload`; `sign(message) -> 64-byte r || s` (ES256)."""
    protected = cbor2.dumps({HDR_ALG: ALG_ES256, HDR_KID: device_id_bytes(pub)},
                            canonical=True)
    sig = sign(sig_structure(protected, payload))
    if len(sig) != 64:
        raise FormatError("ES256 signature must be 64 bytes")
    return cbor2.dumps(cbor2.CBORTag(TAG_COSE_SIGN1, [protected, {}, payload, sig]))


def pack(manifest: bytes, files: Sequence[bytes]) -> bytes:
    return MAGIC + struct.pack("<I", len(manifest)) + manifest + b"".join(files)


def _str(v: Any, what: str, limit: int) -> str:
    if type(v) is not str or not 0 < len(v) <= limit:
        raise FormatError(f"manifest {what} must be text of 1 to {limit} characters")
    return v


def parse_manifest(raw: bytes) -> Manifest:
    """Structure only: FormatError unless `raw` is a canonical signed manifest."""
    raw = bytes(raw)
    if len(raw) > MAX_MANIFEST:
        raise FormatError(f"manifest is {len(raw)} bytes, at most {MAX_MANIFEST}")
    msg = cbor_strict.loads(raw, tags=frozenset({TAG_COSE_SIGN1}), what="manifest")
    if type(msg) is not cbor2.CBORTag or msg.tag != TAG_COSE_SIGN1 \
            or not isinstance(msg.value, (list, tuple)) or len(msg.value) != 4:
        raise FormatError("manifest must be a tagged COSE_Sign1 (tag 18) of 4 items")
    protected, unprotected, payload, sig = msg.value
    if type(protected) is not bytes or type(payload) is not bytes or type(sig) is not bytes \
            or not isinstance(unprotected, Mapping) or unprotected or len(sig) != 64:
        raise FormatError("manifest COSE_Sign1 must be [bstr, {}, bstr, bstr 64]")
    hdr = cbor_strict.loads(protected, what="manifest protected header")
    if not int_keys(hdr) or set(hdr) != {HDR_ALG, HDR_KID} or hdr[HDR_ALG] != ALG_ES256 \
            or type(hdr[HDR_ALG]) is not int or type(hdr[HDR_KID]) is not bytes \
            or len(hdr[HDR_KID]) != 16:
        raise FormatError("manifest protected header must be {1: -7 (ES256), 4: kid (16)}")
    p = cbor_strict.loads(payload, what="manifest payload")
    if not int_keys(p) or list(p) not in ([M_V, M_VERSION, M_COUNTER, M_BOARD, M_FILES],
                                          [M_V, M_VERSION, M_COUNTER, M_BOARD, M_IMAGE]):
        raise FormatError("manifest payload must be a map with keys 0..4, or 0..3 and 5")
    if type(p[M_V]) is not int or p[M_V] != VERSION:
        raise FormatError(f"unsupported manifest version {p[M_V]!r}")
    version = check_version(_str(p[M_VERSION], "version", MAX_VERSION))
    counter = p[M_COUNTER]
    if not is_uint(counter) or not 0 < counter <= MAX_COUNTER:
        raise FormatError("manifest counter must be 1..2^32-1")
    board = _str(p[M_BOARD], "board", 64)
    if M_IMAGE in p:
        img = p[M_IMAGE]
        if type(img) is not list or len(img) != 2 or not is_uint(img[0]) \
                or not 0 < img[0] <= MAX_IMAGE or type(img[1]) is not bytes \
                or len(img[1]) != 32:
            raise FormatError("manifest image must be [size (1..2^32-1), SHA-256 (32 bytes)]")
        return Manifest(version=version, counter=int(counter), board=board, files=(),
                        kid=hdr[HDR_KID], protected=protected, payload=payload,
                        signature=sig, raw=raw, image=ImageEntry(int(img[0]), img[1]))
    rows = p[M_FILES]
    if type(rows) is not list or not 0 < len(rows) <= MAX_FILES:
        raise FormatError(f"manifest must list 1 to {MAX_FILES} files")
    files = []
    for row in rows:
        if type(row) is not list or len(row) != 3 or type(row[0]) is not str \
                or not is_uint(row[1]) or type(row[2]) is not bytes or len(row[2]) != 32:
            raise FormatError("manifest file must be [path, size, SHA-256 (32 bytes)]")
        files.append(FileEntry(check_path(row[0]), int(row[1]), row[2]))
    if len({f.path for f in files}) != len(files):
        raise FormatError("manifest lists a file twice")
    return Manifest(version=version, counter=int(counter), board=board, files=tuple(files),
                    kid=hdr[HDR_KID], protected=protected, payload=payload, signature=sig,
                    raw=raw)


def verify_manifest(raw: bytes, keys: Sequence[bytes]) -> Manifest:
    """Parse, then require a signature by one of the release public keys `keys`."""
    m = parse_manifest(raw)
    msg = sig_structure(m.protected, m.payload)
    for pub in keys:
        if DeviceKey(pub).signs(msg, m.signature):
            return m
    raise VerificationError("the manifest is not signed by a pinned release key")


def parse_package(raw: bytes) -> Package:
    """A whole package file: magic, manifest, then exactly the files it lists."""
    raw = bytes(raw)
    if raw[:4] != MAGIC or len(raw) < 8:
        raise FormatError("not a hashtrail update package (magic HTU1)")
    (n,) = struct.unpack_from("<I", raw, 4)
    if n > MAX_MANIFEST or 8 + n > len(raw):
        raise FormatError("package manifest length is out of bounds")
    m = parse_manifest(raw[8:8 + n])
    pos = 8 + n
    if m.image is not None:
        image = raw[pos:]
        if len(image) != m.image.size:
            raise FormatError(f"package image is {len(image)} bytes, its manifest says "
                              f"{m.image.size}")
        if hashlib.sha256(image).digest() != m.image.sha256:
            raise FormatError("package image does not match its manifest's SHA-256")
        return Package(manifest=m, files={}, raw=raw, image=image)
    files: dict[str, bytes] = {}
    for f in m.files:
        data = raw[pos:pos + f.size]
        if len(data) != f.size or hashlib.sha256(data).digest() != f.sha256:
            raise FormatError(f"package file {f.path} does not match its manifest entry")
        files[f.path] = data
        pos += f.size
    if pos != len(raw):
        raise FormatError(f"package has {len(raw) - pos} bytes after its last file")
    return Package(manifest=m, files=files, raw=raw)
