"""One module per CLI command; each exposes `register(subparsers)`.

Shared argument types live here, so every command reads an identifier the same way."""

from __future__ import annotations

import argparse

from ..errors import HashtrailError
from ..keys import DeviceId, parse_device_id


def device_arg(text: str) -> DeviceId:
    """argparse type for a device id: the one canonical spelling (keys.parse_device_id),
    anything else a usage error (exit 2) that shows the canonical form when it can."""
    try:
        return parse_device_id(text)
    except HashtrailError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
