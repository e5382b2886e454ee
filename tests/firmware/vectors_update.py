"""Host-made update packages for the device update tests (tests/firmware/test_update.py).

Why host-made: the packages must be exactly what `hashtrail release build` writes (the
host's manifest encoder and signature), so the device's parser is tested against the
real producer, never against a second encoder written for the test.

- update_pub.bin: the release public key the tests pin (65 bytes SEC1).
- update_real.htu: the real firmware compiled by the release code, version 0.2.0,
  counter 3, board "unix" (the app_board's name): what a device receives.
- update_small.htu: three small files, counter 3 (the power-cut sweep replays it
  at every flash operation, so it is kept short); update_small.json lists its files.
"""

from __future__ import annotations

import json
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
