"""Full-image releases (manifest key 5): what `hashtrail release build --image` signs and
what the host's parser reads back; the device's side is tests/firmware/test_update_image.py,
against these very bytes (tests/firmware/vectors_update.py)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import cbor2
import pytest
from appimg import app_image, merged_download
from cryptography.hazmat.primitives.asymmetric import ec
from hashtrail.cli import main as cli
from hashtrail.device.release import (
    ReleaseKey,
    build_image_release,
    keygen,
    load_key,
    read_package,
)
from hashtrail.errors import ConfigError, FormatError, InputError
from hashtrail.formats import manifest
from hashtrail.formats.checkpoint import sig_structure
from hashtrail.formats.keys import DeviceKey

IMG = app_image("0.3.0", 20000)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    p = tmp_path / "release.key"
    keygen(p)
    return p


def _img(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "micropython.bin"
    p.write_bytes(data)
    return p


def test_image_release_round_trip(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "fw.htu"
    r = build_image_release(key, "0.3.0", 9, "esp32", _img(tmp_path, IMG), out)
    assert (r.image_size, r.files, r.counter) == (len(IMG), {}, 9)
    p = read_package(out)
    m = p.manifest
    assert p.image == IMG and p.files == {} and m.files == ()
    assert m.image == manifest.ImageEntry(len(IMG), hashlib.sha256(IMG).digest())
    assert (m.version, m.counter, m.board) == ("0.3.0", 9, "esp32")
    assert cbor2.loads(m.payload) == {0: 1, 1: "0.3.0", 2: 9, 3: "esp32",
                                      5: [len(IMG), hashlib.sha256(IMG).digest()]}
    k = load_key(key)
    assert manifest.verify_manifest(m.raw, [k.pub]) == m
    assert DeviceKey(k.pub).signs(sig_structure(m.protected, m.payload), m.signature)
    raw = out.read_bytes()
    assert raw == manifest.pack(m.raw, [IMG])


@pytest.mark.parametrize("what", ["other chip", "merged download", "not an image", "empty"])
def test_what_is_not_the_boards_app_image_is_refused(tmp_path: Path, key: Path,
                                                     what: str) -> None:
    data = {"other chip": app_image("0.3.0", 20000, chip_id=9),
            "merged download": merged_download(IMG),
            "not an image": b"\x00" * 5000, "empty": b""}[what]
    with pytest.raises(InputError):
        build_image_release(key, "0.3.0", 9, "esp32", _img(tmp_path, data),
                            tmp_path / "x.htu")
    assert not (tmp_path / "x.htu").exists()


def test_an_s3_image_signs_for_the_s3_board(tmp_path: Path, key: Path) -> None:
    img = app_image("1.0", 5000, chip_id=9)
    r = build_image_release(key, "1.0", 1, "esp32s3", _img(tmp_path, img), tmp_path / "s3.htu")
    assert r.board == "esp32s3"


def test_the_virtual_board_has_no_app_image(tmp_path: Path, key: Path) -> None:
    with pytest.raises(ConfigError, match="no app image"):
        build_image_release(key, "0.3.0", 9, "unix", _img(tmp_path, IMG), tmp_path / "x.htu")


def _k() -> ReleaseKey:
    return ReleaseKey(ec.derive_private_key(0x7777, ec.SECP256R1()))


def _package(payload: bytes, image: bytes) -> bytes:
    k = _k()
    return manifest.pack(manifest.sign_manifest(payload, k.pub, k.sign), [image])


@pytest.mark.parametrize("where", ["byte", "short", "trailing"])
def test_package_image_must_match_its_manifest(where: str) -> None:
    raw = bytearray(_package(manifest.encode_image_payload("0.3.0", 2, "esp32", IMG), IMG))
    if where == "byte":
        raw[-100] ^= 0x10
    elif where == "short":
        del raw[-1]
    else:
        raw += b"\xff"
    with pytest.raises(FormatError, match="image"):
        manifest.parse_package(bytes(raw))


def test_image_manifest_shapes_are_strict() -> None:
    sha = hashlib.sha256(IMG).digest()
    bad = [
        {0: 1, 1: "1", 2: 2, 3: "esp32", 4: [], 5: [len(IMG), sha]},  # both
        {0: 1, 1: "1", 2: 2, 3: "esp32", 5: [0, sha]},
        {0: 1, 1: "1", 2: 2, 3: "esp32", 5: [len(IMG), sha[:31]]},
        {0: 1, 1: "1", 2: 2, 3: "esp32", 5: [len(IMG), sha, 0]},
        {0: 1, 1: "1", 2: 2, 3: "esp32", 5: {1: len(IMG)}},
    ]
    for p in bad:
        with pytest.raises(FormatError):
            manifest.parse_package(_package(cbor2.dumps(p, canonical=True), IMG))
    with pytest.raises(FormatError):
        manifest.encode_image_payload("0.3.0", 2, "esp32", b"")


def test_cli_release_build_image(tmp_path: Path, key: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.htu"
    assert cli(["release", "build", "--key", str(key), "--version", "0.3.0", "--counter", "4",
                "--board", "esp32", "--image", str(_img(tmp_path, IMG)), "--out",
                str(out)]) == 0
    text = capsys.readouterr().out
    assert f"an app image of {len(IMG)} bytes" in text
    raw = out.read_bytes()
    n = struct.unpack_from("<I", raw, 4)[0]
    assert raw[8 + n:] == IMG
    assert cli(["release", "build", "--key", str(key), "--version", "0.3.0", "--counter", "4",
                "--board", "esp32", "--image", str(_img(tmp_path, merged_download(IMG))),
                "--out", str(tmp_path / "merged.htu")]) == 2
    assert "merged download" in capsys.readouterr().err
