"""Test helper: bytes laid out like an ESP-IDF app image (esp_app_format.h), for the
full-image update tests (host: tests/host/test_image_release.py; device:
tests/firmware/vectors_update.py, test_update_image.py).

Only the header fields the release checks and the simulated bootloader reads are real:
magic 0xE9, the chip id, the first segment's esp_app_desc_t (magic 0xABCD5432, its
32-byte version field). The rest is a deterministic filler; no chip could run it, and
the tests never claim one did. The simulated esp32 module (tests/firmware/esp32sim.py)
reads the version field to know which firmware the simulated board boots.
"""

from __future__ import annotations

import struct

APP_DESC_OFF = 32
VERSION_OFF = APP_DESC_OFF + 16


def app_image(version: str, size: int, chip_id: int = 0, seed: int = 0) -> bytes:
    head = bytearray(24)
    struct.pack_into("<BBBBI", head, 0, 0xE9, 1, 2, 0x20, 0x400D0000)
    struct.pack_into("<BBBBHBHH", head, 8, 0xEE, 0, 0, 0, chip_id, 0, 0, 0xFFFF)
    head[23] = 1  # hash appended
    desc = bytearray(256)
    struct.pack_into("<I", desc, 0, 0xABCD5432)
    v = version.encode()
    desc[16:16 + len(v)] = v
    desc[48:48 + 10] = b"micropython"[:10]
    body_len = size - 24 - 8
    if body_len < len(desc):
        raise ValueError(f"an app image of {size} bytes is too small")
    seg = struct.pack("<II", 0x3F400020, body_len)
    filler = bytes((i * 31 + seed * 7 + (i >> 8)) & 0xFF for i in range(body_len - len(desc)))
    return bytes(head) + seg + bytes(desc) + filler


def merged_download(app: bytes) -> bytes:
    """A merged firmware.bin as users download it: a bootloader (an ESP image without an
    app description) first, the app further on."""
    boot = bytearray(app[:APP_DESC_OFF + 4])
    struct.pack_into("<I", boot, APP_DESC_OFF, 0x50)  # esp_bootloader_desc_t magic byte
    return bytes(boot) + bytes(0x10000 - len(boot)) + app
