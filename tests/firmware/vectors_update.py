"""Host-made update packages for the device update tests (tests/firmware/test_update.py).

Why host-made: the packages must be exactly what `hashtrail release build` writes (the
host's manifest encoder and signature), so the device's parser is tested against the
real producer, never against a second encoder written for the test.

- update_pub.bin: the release public key the tests pin (65 bytes SEC1).
- update_real.htu: the real firmware compiled by the release code, version 0.2.0,
  counter 3, board "unix" (the app_board's name): what a device receives.
- update_small.htu: three small files, counter 3 (the power-cut sweep replays it
  at every flash operation, so it is kept short); update_small.json lists its files.
- image_*.htu / image_*.bin: full-image packages (manifest key 5) for the simulated OTA
  partitions (test_update_image.py): the new image, and one per refusal.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from hashtrail.device.release import ReleaseKey, compile_release
from hashtrail.formats import manifest

# A fixed key, so a failing run can be reproduced byte for byte.
_D = 0x6C2B1F0E2D3C4B5A69788796A5B4C3D2E1F00112233445566778899AABBCCDDE


def _key() -> ReleaseKey:
    return ReleaseKey(ec.derive_private_key(_D, ec.SECP256R1()))


def _package(files: dict[str, bytes], counter: int, version: str) -> bytes:
    k = _key()
    m = manifest.sign_manifest(manifest.encode_payload(version, counter, "unix", files),
                               k.pub, k.sign)
    return manifest.pack(m, list(files.values()))


def make_update_packages(d: Path) -> None:
    (d / "update_pub.bin").write_bytes(_key().pub)
    with tempfile.TemporaryDirectory(prefix="upd-vec-") as tmp:
        real = compile_release("unix", "0.2.0", Path(tmp))
    (d / "update_real.htu").write_bytes(_package(real, 3, "0.2.0"))
    small = {f"/lib/hashtrail/{n}": bytes((i * 7 + j) & 0xFF for j in range(size))
             for i, (n, size) in enumerate([("app.mpy", 700), ("link.mpy", 333),
                                            ("p256_table.bin", 1500)])}
    (d / "update_small.htu").write_bytes(_package(small, 3, "0.2.0"))
    (d / "update_small.json").write_text(json.dumps(
        {p.rsplit("/", 1)[1]: data.hex() for p, data in small.items()}))


# -- full-image packages (tests/firmware/test_update_image.py) ----------------------------
# Images laid out like ESP-IDF app images (tests/host/appimg.py): the simulated esp32
# module reads the version an image "runs" from its app description.
IMAGE_SIZE = 10000


def _image_package(image: bytes, counter: int, version: str, board: str = "unix",
                   key: ReleaseKey | None = None) -> bytes:
    k = key or _key()
    m = manifest.sign_manifest(manifest.encode_image_payload(version, counter, board, image),
                               k.pub, k.sign)
    return manifest.pack(m, [image])


def make_image_packages(d: Path) -> None:
    # tests/host/appimg.py: on sys.path when pytest has collected a host test first,
    # so the firmware tests run alone need it put there
    host_tests = str(Path(__file__).resolve().parents[1] / "host")
    if host_tests not in sys.path:
        sys.path.insert(0, host_tests)
    from appimg import app_image

    (d / "update_pub.bin").write_bytes(_key().pub)
    old = app_image("0.1.0", IMAGE_SIZE, seed=1)
    new = app_image("0.2.0", IMAGE_SIZE, seed=2)
    (d / "image_old.bin").write_bytes(old)
    (d / "image_new.bin").write_bytes(new)
    (d / "image_new.htu").write_bytes(_image_package(new, 3, "0.2.0"))
    large = app_image("0.2.0", 120000, seed=6)  # the budget test: nothing grows with it
    (d / "image_large.htu").write_bytes(_image_package(large, 3, "0.2.0"))
    nxt = app_image("0.3.0", IMAGE_SIZE - 700, seed=5)  # over the old image in ota_0
    (d / "image_next.bin").write_bytes(nxt)
    (d / "image_next.htu").write_bytes(_image_package(nxt, 4, "0.3.0"))
    other = ReleaseKey(ec.derive_private_key(_D + 1, ec.SECP256R1()))
    (d / "image_other_key.htu").write_bytes(_image_package(new, 3, "0.2.0", key=other))
    (d / "image_other_board.htu").write_bytes(_image_package(new, 3, "0.2.0", board="esp32"))
    bad = bytearray(_image_package(new, 3, "0.2.0"))
    bad[-5000] ^= 0x01  # one bit of the image, after signing: its SHA-256 differs
    (d / "image_tampered.htu").write_bytes(bytes(bad))
    (d / "image_badver.htu").write_bytes(_image_package(app_image("0.2.0-x", IMAGE_SIZE,
                                                                  seed=3), 3, "0.2.0"))
    (d / "image_big.htu").write_bytes(_image_package(app_image("0.2.0", 40000, seed=4), 3,
                                                     "0.2.0"))
    (d / "image_nohead.htu").write_bytes(_image_package(bytes(IMAGE_SIZE), 3, "0.2.0"))
