"""One module per CLI command; each exposes `register(subparsers)`.

Shared argument types live here, so every command reads an identifier the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hashtrail.errors import HashtrailError
from hashtrail.formats.keys import DeviceId, parse_device_id


def device_arg(text: str) -> DeviceId:
    """argparse type for a device id: the one canonical spelling (keys.parse_device_id),
    anything else a usage error (exit 2) that shows the canonical form when it can."""
    try:
        return parse_device_id(text)
    except HashtrailError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type for a whole number >= `minimum` (a count, a seq, a baud rate):
    anything else is a usage error (exit 2) quoting the value."""
    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of at least {minimum}, got {text!r}")
        return v
    parse.__name__ = f"at_least_{minimum}"
    return parse


def seconds(text: str) -> float:
    """argparse type for a positive, finite number of seconds."""
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return v
