"""Host-made request lines for the device link tests: the host encoder drives the device."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from hashtrail.device.link import (
    PREFIX,
    REQ_CANCEL,
    REQ_CREDIT,
    REQ_HELLO,
    REQ_RECORDS,
    encode_request,
)


def make_link_requests(d: Path) -> None:
    good = encode_request(0x21, REQ_CANCEL)  # needs no log
    lines = {
        "cancel": good.decode(),
        "unknown_cmd": encode_request(0x22, 0x55, b"xy").decode(),
        "bad_version": (PREFIX.decode() + (bytes((9, 0x23, REQ_HELLO)) + struct.pack(
            "<I", zlib.crc32(bytes((9, 0x23, REQ_HELLO))))).hex() + "\n"),
        "bad_crc": good.decode()[:-2] + ("0" if good.decode()[-2] != "0" else "1") + "\n",
        "not_hex": "@HTzz\n",
        "short": "@HT0102\n",
        "too_long": "@HT" + "ab" * 150 + "\n",
        "credit_bad_args": encode_request(0x24, REQ_CREDIT, b"\x01").decode(),
        "records_bad_args": encode_request(0x25, REQ_RECORDS, b"\x00").decode(),
    }
    (d / "link_requests.json").write_text(json.dumps(lines))
