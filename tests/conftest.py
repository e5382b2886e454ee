"""Shared pytest configuration: the `device` marker needs a real board on --port.

The tests pick ledger, store and key files themselves: a HASHTRAIL_LEDGER_KEY,
HASHTRAIL_LEDGER or HASHTRAIL_STORE left in the caller's environment would point every
test at one file."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hashtrail.sim import VirtualDevice

for _var in ("HASHTRAIL_LEDGER_KEY", "HASHTRAIL_LEDGER", "HASHTRAIL_STORE"):
    os.environ.pop(_var, None)

# Tests stop servers and reconciles with Ctrl-C (SIGINT). A shell that starts the suite
# in the background (`cmd &`, not interactive) leaves SIGINT ignored, every process
# started from it inherits that, and Python keeps an ignored SIGINT ignored: those
# tests would wait out their timeouts. Restored here, in every pytest process, so the
# processes the tests start get the default Ctrl-C again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--port", default=None,
                     help="serial port of a real ESP32 board, for tests marked `device`")


def _longest_files_first(items: list[pytest.Item]) -> None:
    """Order the files by their time in tests/file_times.json, longest first (a file
    it does not know last), each file's tests in their own order. With `tools/dev.py
    test`'s workers taking whole files in this order, no long file starts near the end
    of the run, and the files that mostly wait on virtual devices run beside the ones
    that compute (by the test count xdist would order by, they all ran together at the
    end, a third of two cores idle). `tools/dev.py times JUNIT.xml` refreshes it."""
    path = Path(__file__).with_name("file_times.json")
    try:
        times: dict[str, float] = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    first = {}
    for i, item in enumerate(items):
        first.setdefault(item.nodeid.split("::", 1)[0], i)
    items.sort(key=lambda it: (-times.get(f := it.nodeid.split("::", 1)[0], -1.0),
                               first[f]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _longest_files_first(items)
    if config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="needs a real board: pass --port PORT")
    for item in items:
        # the marker itself, not any keyword spelled `device` (a parameter id or a
        # module of that name would be skipped too, silently)
        if item.get_closest_marker("device") is not None:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test: teardown then knows it failed. A failed
    call also reports what the VM of each virtual device it started was doing at that
    moment (VirtualDevice.vm_state: blocked in which system call, or running), before
    the teardown powers them off: a device that stopped answering without printing a
    word says where it stopped."""
    report = yield
    setattr(item, f"_ht_{report.when}", report)
    started = getattr(item, "_ht_started", ())
    if report.when == "call" and report.failed and started:
        report.sections.append(("virtual devices when it failed",
                                "\n".join(d.vm_state() for d in dict.fromkeys(started))))
    return report


@pytest.fixture(autouse=True)
def _device_consoles_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test fails, print what each virtual device it started printed last (in
    the report's captured teardown output): a device that stopped answering or logging
    then says why (a traceback, a "sample:" error, the REPL) on the machine that ran
    the suite, CI included. Its own MonkeyPatch: a test's monkeypatch.undo() leaves it."""
    from hashtrail.sim.device import VirtualDevice, text_lines

    started: list[VirtualDevice] = []
    request.node._ht_started = started  # pytest_runtest_makereport reads it
    start = VirtualDevice.start

    def recorded(self: VirtualDevice) -> VirtualDevice:
        started.append(self)
        return start(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VirtualDevice, "start", recorded)
        yield
    node = request.node
    if any(getattr(getattr(node, f"_ht_{w}", None), "failed", False)
           for w in ("setup", "call")):
        for d in dict.fromkeys(started):
            print("\n".join(text_lines(d.console(4096))))


@pytest.fixture
def devices() -> Iterator[list[VirtualDevice]]:
    """Virtual devices a test started; all powered off and released at its end."""
    made: list[VirtualDevice] = []
    yield made
    for d in made:
        d.stop()
