"""ESP-IDF application images: the few header fields a release checks before it signs one.

Why: a full-image update (manifest key 5) writes the bytes to the board's next OTA
partition and asks the bootloader to run them. The device cannot tell a MicroPython app
image (`build-BOARD/micropython.bin`) from the merged download a user flashes at 0x1000
(`firmware.bin`: bootloader, partition table, then the app) until ESP-IDF's
`esp_ota_set_boot_partition` refuses it, after a whole transfer; nor an image built for
another chip. So the release builder refuses both before signing, from the image
header ESP-IDF documents (esp_app_format.h):

    offset 0   magic 0xE9, segment count, SPI mode, SPI speed/size, entry address (u32)
    offset 12  chip id (u16 LE): which chip the image was built for
    offset 24  first segment header: load address (u32), length (u32)
    offset 32  esp_app_desc_t, magic 0xABCD5432 (u32 LE), present in app images only:
               a bootloader (the first thing in a merged download) has none

The chip ids are ESP-IDF's `esp_chip_id_t` values, as data beside the board names.
"""

from __future__ import annotations

import struct

from hashtrail.errors import FormatError

IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
CHIP_IDS = {"esp32": 0x0000, "esp32s2": 0x0002, "esp32c3": 0x0005, "esp32s3": 0x0009,
            "esp32c2": 0x000C, "esp32c6": 0x000D, "esp32h2": 0x0010}
_HEADER = 32 + 4


def check_app_image(raw: bytes, chip: str) -> None:
    """FormatError unless `raw` is an ESP-IDF app image for `chip`."""
    if chip not in CHIP_IDS:
        raise FormatError(f"chip {chip!r} has no known ESP-IDF app image id")
    if len(raw) < _HEADER or raw[0] != IMAGE_MAGIC:
        raise FormatError("not an ESP-IDF app image (its first byte is not 0xE9)")
    (chip_id,) = struct.unpack_from("<H", raw, 12)
    if struct.unpack_from("<I", raw, 32)[0] != APP_DESC_MAGIC:
        raise FormatError("an ESP image without an app description: a bootloader or a "
                          "merged download (firmware.bin), not the app image "
                          "(build-BOARD/micropython.bin)")
    if chip_id != CHIP_IDS[chip]:
        names = [n for n, i in CHIP_IDS.items() if i == chip_id]
        raise FormatError(f"the image is built for chip {names[0] if names else chip_id}, "
                          f"the board is {chip}")
