"""The update package format (formats/manifest.py): what the release code writes is what
the parser reads, and every field a device relies on is refused when it is wrong.

The device's own parser is tested against these very bytes in tests/firmware/test_update.py
and tests/e2e/test_update.py; here the host's parser, which `hashtrail update` runs before
it sends anything."""

from __future__ import annotations

import hashlib
import struct

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hashtrail.device.release import ReleaseKey
from hashtrail.errors import FormatError, VerificationError
from hashtrail.formats import manifest
from hashtrail.formats.checkpoint import sig_structure
from hashtrail.formats.keys import DeviceKey, device_id_bytes

FILES = {"/lib/hashtrail/app.mpy": b"M\x06app", "/lib/hashtrail/p256_table.bin": bytes(100)}


def key(n: int) -> ReleaseKey:
    return ReleaseKey(ec.derive_private_key(0x1234567 + n, ec.SECP256R1()))


def package(k: ReleaseKey, counter: int = 2, board: str = "esp32",
            files: dict[str, bytes] = FILES) -> bytes:
    m = manifest.sign_manifest(manifest.encode_payload("1.2.3", counter, board, files),
                               k.pub, k.sign)
    return manifest.pack(m, list(files.values()))


def test_round_trip_and_signature() -> None:
    k = key(1)
    raw = package(k, counter=7)
    p = manifest.parse_package(raw)
    m = p.manifest
    assert (m.version, m.counter, m.board) == ("1.2.3", 7, "esp32")
    assert [(f.path, f.size, f.sha256) for f in m.files] == [
        (path, len(d), hashlib.sha256(d).digest()) for path, d in FILES.items()]
    assert m.kid == device_id_bytes(k.pub)
    assert DeviceKey(k.pub).signs(sig_structure(m.protected, m.payload), m.signature)
    assert p.files == FILES
    assert manifest.verify_manifest(m.raw, [key(2).pub, k.pub]) == m
    n = struct.unpack_from("<I", raw, 4)[0]
    assert m.hash == hashlib.sha256(raw[8:8 + n]).digest()
    # What the device expects of the envelope's first bytes (update.py's fixed prefix).
    assert raw[8:11] == b"\xd2\x84\x55" and raw[11:16] == b"\xa2\x01\x26\x04\x50"


def test_another_key_is_refused() -> None:
    m = manifest.parse_package(package(key(1))).manifest
    with pytest.raises(VerificationError, match="pinned release key"):
        manifest.verify_manifest(m.raw, [key(2).pub])
    with pytest.raises(VerificationError):
        manifest.verify_manifest(m.raw, [])


@pytest.mark.parametrize("where", ["file", "trailing", "short", "magic"])
def test_package_bytes_must_match_the_manifest(where: str) -> None:
    raw = bytearray(package(key(1)))
    if where == "file":
        raw[-1] ^= 1
    elif where == "trailing":
        raw += b"x"
    elif where == "short":
        del raw[-1]
    else:
        raw[0:4] = b"HTU2"
    with pytest.raises(FormatError):
        manifest.parse_package(bytes(raw))


@pytest.mark.parametrize("path", ["/lib/other/x.mpy", "/lib/hashtrail/../boot.py",
                                  "/lib/hashtrail/a/b.mpy", "/lib/hashtrail/.hidden",
                                  "/boot.py"])
def test_files_only_in_the_firmware_folder(path: str) -> None:
    with pytest.raises(FormatError, match="plain name"):
        manifest.encode_payload("1.0", 2, "esp32", {path: b"x"})


@pytest.mark.parametrize(("version", "counter"), [("", 1), ("a b", 1), ("v" * 33, 1),
                                                  ("1.0", 0), ("1.0", 1 << 32)])
def test_version_and_counter_bounds(version: str, counter: int) -> None:
    with pytest.raises(FormatError):
        manifest.encode_payload(version, counter, "esp32", FILES)


def test_a_non_canonical_or_reshaped_manifest_is_refused() -> None:
    k = key(1)
    good = manifest.parse_package(package(k)).manifest
    payload = cbor2.loads(good.payload)
    # Extra key: not the five the device reads.
    bad = dict(payload)
    bad[5] = "x"
    raw = manifest.sign_manifest(cbor2.dumps(bad, canonical=True), k.pub, k.sign)
    with pytest.raises(FormatError, match=r"keys 0\.\.4"):
        manifest.parse_manifest(raw)
    # A duplicated file path.
    bad = dict(payload)
    bad[4] = [payload[4][0], payload[4][0]]
    raw = manifest.sign_manifest(cbor2.dumps(bad, canonical=True), k.pub, k.sign)
    with pytest.raises(FormatError, match="twice"):
        manifest.parse_manifest(raw)
    # Not the manifest's size bound.
    with pytest.raises(FormatError, match="at most"):
        manifest.parse_manifest(b"\x00" * (manifest.MAX_MANIFEST + 1))


def test_release_keys_file() -> None:
    a, b = key(1).pub, key(2).pub
    assert manifest.release_keys_file([a, b, a]) == a + b
    with pytest.raises(FormatError):
        manifest.release_keys_file([b"\x04" + bytes(64)])
