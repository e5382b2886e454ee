"""deploy's way into the raw REPL, over a real pty with a scripted board on the other end.

mpremote reads a pty with no read timeout, so a board that missed the Ctrl-C (seen: a
virtual device rebooting after an update's reset) held `deploy` forever. Each case runs
in a thread with a hard limit, so the old behaviour fails the test instead of hanging."""

from __future__ import annotations

import os
import threading
import time
import tty

import pytest
from hashtrail.device import deploy
from hashtrail.device.deploy import DeployError

BANNER = b"raw REPL; CTRL-B to exit\r\n"


class ScriptedBoard:
    """The master side of a pty: ignores the first `deaf` interrupts (a board busy
    rebooting), then answers Ctrl-A and Ctrl-D like MicroPython's raw REPL; with
    `silent`, never answers at all."""

    def __init__(self, deaf: int = 0, silent: bool = False) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.deaf, self.silent = deaf, silent
        self.interrupts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        os.set_blocking(self.master, False)
        listening = False
        while not self._stop.is_set():
            try:
                data = os.read(self.master, 256)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                return
            for b in data:
                if b == 3:
                    self.interrupts += 1
                    listening = self.interrupts > self.deaf and not self.silent
                elif b == 1 and listening:
                    os.write(self.master, b"\r\n" + BANNER + b">")
                elif b == 4 and listening:
                    os.write(self.master, b"OK\r\nMPY: soft reboot\r\n" + BANNER)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self.slave)


def _in_time(fn: object, limit: float) -> object:
    box: list[object] = []
    t = threading.Thread(target=lambda: box.append(_catch(fn)), daemon=True)
    t.start()
    t.join(limit)
    assert box, f"still waiting for the raw REPL after {limit} s"
    return box[0]


def _catch(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except DeployError as e:
        return e


def test_a_board_that_missed_the_first_interrupt_is_interrupted_again() -> None:
    board = ScriptedBoard(deaf=1)
    try:
        got = _in_time(lambda: deploy._transport(board.port, 115200), 30)
        assert not isinstance(got, DeployError), got
        got.close()  # type: ignore[attr-defined]
        assert board.interrupts == 2
    finally:
        board.close()


def test_a_silent_port_is_refused_in_bounded_time_with_what_it_printed() -> None:
    board = ScriptedBoard(silent=True)
    try:
        t0 = time.monotonic()
        got = _in_time(lambda: deploy._transport(board.port, 115200), 30)
        took = time.monotonic() - t0
    finally:
        board.close()
    assert isinstance(got, DeployError), got
    assert "no MicroPython raw REPL" in str(got) and "silent" in str(got), str(got)
    assert took < 2 * deploy._RAW_REPL_WAIT_S * deploy._RAW_REPL_TRIES, took


def test_hash_lines_from_the_device_are_parsed_strictly() -> None:
    """The device prints a line per file (deploy._HASH_CODE): a missing file is None, and a
    line that is not "path digest" (a traceback, REPL noise) is an error, never a hash."""
    out = b"/lib/hashtrail/app.mpy " + b"ab" * 32 + b"\r\n/ht/release_keys None\r\n"
    assert deploy.parse_hashes(out) == {"/lib/hashtrail/app.mpy": "ab" * 32,
                                        "/ht/release_keys": None}
    with pytest.raises(ValueError):
        deploy.parse_hashes(b"Traceback (most recent call last):\n")
