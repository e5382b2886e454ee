"""Headless Chromium for the fleet view's browser tests: the Debian `chromium` package
driven by Playwright (`executable_path`, never a browser Playwright downloads).

Missing locally: the tests skip with one line saying what to install. Under CI=true a
missing browser is a failure (.ci/run installs it), so the browser tests cannot
silently stop running there. Screenshots go to $HASHTRAIL_ARTIFACTS, else
tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("HASHTRAIL_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]


def artifacts() -> Path:
    d = Path(os.environ.get("HASHTRAIL_ARTIFACTS") or ROOT / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _missing(why: str, module: bool = False) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: .ci/run installs chromium and chromium-driver)")
    pytest.skip(f"{why}: apt-get install chromium chromium-driver to run the browser tests",
                allow_module_level=module)


def require_chromium() -> None:
    """At a browser test module's import: skip the whole module in one line when there
    is no browser. Under CI=true nothing happens here (a collection error would stop
    the whole suite): each test then fails in `chromium()`."""
    if os.environ.get("CI") == "true":
        return
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}", module=True)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install -c constraints.txt -e .[dev])",
                 module=True)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright Browser) for a test module."""
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -c constraints.txt -e .[dev])")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page that records console errors, page errors and CSP violations."""

    def __init__(self, browser: Any, width: int = 1300, height: int = 900) -> None:
        self.ctx = browser.new_context(viewport={"width": width, "height": height},
                                       timezone_id="UTC")
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def close(self) -> None:
        self.ctx.close()
