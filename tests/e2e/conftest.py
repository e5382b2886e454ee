"""Fixtures of the browser tests: one headless Chromium per test module (browserkit),
a fresh page per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browserkit import Page, chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.close()
