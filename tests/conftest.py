"""Shared pytest configuration: the `device` marker needs a real board on --port.

The tests pick ledger key files themselves: a HASHTRAIL_LEDGER_KEY left in the caller's
environment would point every test ledger at one key file."""

from __future__ import annotations

import os

import pytest

os.environ.pop("HASHTRAIL_LEDGER_KEY", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--port", default=None,
                     help="serial port of a real ESP32 board, for tests marked `device`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="needs a real board: pass --port PORT")
    for item in items:
        if "device" in item.keywords:
            item.add_marker(skip)
