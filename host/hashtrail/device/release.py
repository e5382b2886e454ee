"""Releases: the owner's release key and the signed update packages it makes.

Why here: a release is the firmware compiled for a board (mpybuild, as deploy and image
compile it) plus a manifest the device can check with nothing but the release public
key pinned on it (formats/manifest.py). The key never leaves the owner's machine; the
device gets only its public half, at deploy time (`RELEASE_KEYS_PATH`).

The firmware version a package installs is the one the device reports (HELLO) and
writes into every entry: the release build compiles app.py with `FW_VERSION` set to the
release's version, so a version cannot be claimed by the manifest alone.

A full-image release (`build_image_release`) signs an app image the owner built
(MicroPython with the firmware frozen in, `build-BOARD/micropython.bin`) instead: its
FW_VERSION is the owner's to set, and the device holds it to the manifest (the new
image is confirmed only when it reports the manifest's version, fwboot.py).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hashtrail import userfile
from hashtrail.device import mpybuild
from hashtrail.device.boards import load_board
from hashtrail.errors import ConfigError, FormatError, InputError
from hashtrail.formats import appimage, manifest
from hashtrail.formats.keys import key_fingerprint
from hashtrail.paths import FIRMWARE, require_tree

MAX_PACKAGE = 1 << 20  # far above a firmware package (~100 KB), far below a board's flash
# A full-image package: an app image fits an OTA partition (1.5 MiB on a 4 MiB board;
# a 16 MiB board may have larger ones).
MAX_IMAGE_PACKAGE = 8 << 20
_APP = Path("lib/hashtrail/app.py")
_FW_LINE = re.compile(r'^FW_VERSION = "[^"\n]*"$', re.MULTILINE)


class ReleaseKeyError(InputError):
    """The release key file is missing or not a P-256 private key."""

    hint = "make one with `hashtrail release keygen --out FILE`"


@dataclass(frozen=True)
class ReleaseKey:
    private: ec.EllipticCurvePrivateKey

    @property
    def pub(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    def sign(self, message: bytes) -> bytes:
        """ES256 over `message`, as r || s (COSE)."""
        r, s = decode_dss_signature(self.private.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class Release:
    out: Path
    version: str
    counter: int
    board: str
    files: dict[str, int]  # device path -> size
    manifest_sha256: str
    size: int
    key_fingerprint: str
    image_size: int | None = None  # a full-image release: the app image's bytes


def keygen(out: Path) -> bytes:
    """A new release key in `out` (PKCS#8 PEM, mode 0600, never overwritten); returns
    the 65-byte public key to pin on devices."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise InputError(f"{out} already exists; a release key is never overwritten") from e
    except OSError as e:
        raise InputError(f"cannot create {out}: {e.strerror}") from e
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return ReleaseKey(key).pub


def load_key(path: Path) -> ReleaseKey:
    raw = userfile.read_bytes(path, "release key")
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise ReleaseKeyError(f"{path} is not a release key (PEM P-256 private key)") \
            from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ReleaseKeyError(f"{path} is not a P-256 private key")
    return ReleaseKey(key)


def compile_release(board: str, version: str, out: Path) -> dict[str, bytes]:
    """The firmware package files (`/lib/hashtrail/*`) compiled for `board` with
    FW_VERSION = version. boot.py, main.py and /board.json are the device's own and are
    not part of an update."""
    require_tree()
    manifest.check_version(version)
    b = load_board(board)
    src = out / "src"
    shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__"))
    app = src / _APP
    text, n = _FW_LINE.subn(f'FW_VERSION = "{version}"', app.read_text())
    if n != 1:
        raise ConfigError(f"{_APP} must hold exactly one FW_VERSION line (found {n})")
    app.write_text(text)
    build = out / "build"
    mpybuild.build(build, b.mpy_arch, root=src)
    files: dict[str, bytes] = {}
    for p in sorted((build / manifest.FW_DIR.strip("/")).iterdir()):
        if p.is_file():
            files[manifest.FW_DIR + p.name] = p.read_bytes()
    return files


def build_release(key_path: Path, version: str, counter: int, board: str,
                  out: Path) -> Release:
    """Compile, sign and write a package to `out`."""
    key = load_key(key_path)
    with tempfile.TemporaryDirectory(prefix="hashtrail-release-") as tmp:
        files = compile_release(board, version, Path(tmp))
    raw = manifest.sign_manifest(manifest.encode_payload(version, counter, board, files),
                                 key.pub, key.sign)
    pkg = manifest.pack(raw, list(files.values()))
    m = manifest.parse_package(pkg).manifest  # what we wrote is what the device reads
    if len(raw) > manifest.MAX_MANIFEST:
        raise FormatError(f"manifest is {len(raw)} bytes, at most {manifest.MAX_MANIFEST}")
    _write(out, pkg)
    return Release(out=out, version=version, counter=counter, board=board,
                   files={p: len(d) for p, d in files.items()}, manifest_sha256=m.hash.hex(),
                   size=len(pkg), key_fingerprint=key_fingerprint(key.pub))


def _write(out: Path, pkg: bytes) -> None:
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(pkg)
    os.replace(tmp_out, out)


def build_image_release(key_path: Path, version: str, counter: int, board: str,
                        image_path: Path, out: Path) -> Release:
    """Sign a full firmware image (an ESP-IDF app image for the board's chip) and write
    the package to `out`. The image is checked, not built: the owner builds MicroPython
    with the firmware frozen in (firmware/manifest.py) and FW_VERSION = `version`."""
    key = load_key(key_path)
    b = load_board(board)
    if b.chip is None:
        raise ConfigError(f"board {board} has no app image (a full-image update is for "
                          "ESP32 boards with OTA partitions)")
    image = userfile.read_bytes(image_path, "firmware image", max_bytes=MAX_IMAGE_PACKAGE)
    try:
        appimage.check_app_image(image, b.chip)
    except FormatError as e:
        raise InputError(f"{image_path}: {e}") from None
    raw = manifest.sign_manifest(manifest.encode_image_payload(version, counter, board,
                                                               image), key.pub, key.sign)
    pkg = manifest.pack(raw, [image])
    m = manifest.parse_package(pkg).manifest
    _write(out, pkg)
    return Release(out=out, version=version, counter=counter, board=board, files={},
                   manifest_sha256=m.hash.hex(), size=len(pkg),
                   key_fingerprint=key_fingerprint(key.pub), image_size=len(image))


def read_package(path: Path) -> manifest.Package:
    """A package file a user names, parsed (its signature is the device's to judge)."""
    raw = userfile.read_bytes(path, "update package", max_bytes=MAX_IMAGE_PACKAGE)
    try:
        return manifest.parse_package(raw)
    except FormatError as e:
        raise InputError(f"{path}: {e}") from None
