"""Copy the compiled firmware onto a board the way mpremote does, then prove it landed.

Why not just `mpremote cp`: a deploy is only done when every file on the device has
the SHA-256 of what was compiled and the application it copied answers, so:

1. Identify first. Before anything is written, the device says what it is over the raw
   REPL (`sys.platform`, `sys.implementation._machine`, `os.uname()`; boardid.py) and
   that must fit the `identify` section of the board definition asked for. Firmware for
   another board leaves a device that cannot start, so a mismatch is refused
   (`BoardMismatchError`, exit 2) and the device is restarted as it was; `force=True`
   overrides.
2. Copy and check on the device: hashes run there (hashlib through the raw REPL), so
   nothing is read back over the wire. The firmware lives in /lib/hashtrail/, which
   deploy owns: files there that the firmware no longer has are removed. In /lib itself
   only the flat modules of releases before that package are removed (by their known
   names, when that layout is there); other packages' files stay. The device's data
   (/ht: key, log, state) is never touched.
3. Start and ask. A soft reset from the friendly REPL runs boot.py and main.py (as
   `mpremote soft-reset` then a REPL would), and the application must answer the
   protocol's HELLO (link.py) on the same connection: its firmware version and device id
   are the result. If MicroPython's REPL prompt comes back instead (main.py returned:
   the app could not start), or nothing answers in time, `DeviceStartError` carries
   the device's own lines since the reset ("hashtrail: cannot start: ...").

Uses mpremote's SerialTransport (mpremote is pinned in pyproject.toml): raw REPL with a
soft reset on entry, so main.py is stopped while files change.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hashtrail import userfile
from hashtrail.device import boardid
from hashtrail.device.boardid import DeviceFacts
from hashtrail.device.boards import load_board
from hashtrail.device.imagefs import file_hashes, firmware_files
from hashtrail.device.link import DeviceInfo, Link, LinkError
from hashtrail.errors import HashtrailError, VerificationError, printable
from hashtrail.formats.manifest import RELEASE_KEYS_PATH, release_keys_file

log = logging.getLogger(__name__)

# What MicroPython prints at a soft reset, and its friendly REPL prompt: a prompt after
# the reset means main.py returned, i.e. the application is not running.
_SOFT_REBOOT = b"soft reboot\r\n"
_PROMPT = b">>> "
_READ_TIMEOUT_S = 0.5  # pyserial read timeout on the port mpremote opens
_RAW_REPL_TRIES = 2  # Ctrl-C, Ctrl-A rounds before a device is called silent
_RAW_REPL_WAIT_S = 5  # each round's limit, mpremote's timeout_overall
_SHOW_LINES = 12  # the device's last lines shown when its application does not start


class DeployError(HashtrailError):
    """The board did not answer on its raw REPL, or a file operation failed there."""

    hint = ("check the port; if main.py ignores Ctrl-C, reset the board and retry; "
            "`mpremote connect PORT repl` shows what the board prints")


class BoardMismatchError(HashtrailError):
    """The device on the port is not the board the firmware was built for."""

    exit_code = 2


class DeviceStartError(HashtrailError):
    """The firmware landed, but its application did not start or did not answer."""

    hint = ("the lines above are the device's own; fix what they name and deploy again "
            "(`mpremote connect PORT repl` is the device's REPL)")


@dataclass(frozen=True)
class DeployResult:
    files: dict[str, str]  # device path -> SHA-256 hex, each verified on the device
    facts: DeviceFacts  # what the device said it is, before anything was written
    info: DeviceInfo  # the started application's HELLO
    forced: bool  # written although the board did not match (--force)


# Device side: hash files in 512-byte reads (little heap), print "path hexdigest" (or
# "path None") a line per file. One JSON object of every file's hash was a ~3.3 KB string
# made at once, which the virtual board's heap, fragmented by the app deploy interrupts,
# refused in about 1 run of 3 once the firmware had 27 modules.
_HASH_CODE = """\
import hashlib, binascii
def _h(p):
    x = hashlib.sha256()
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    b = bytearray(512)
    while True:
        n = f.readinto(b)
        if not n:
            break
        x.update(memoryview(b)[:n])
    f.close()
    return binascii.hexlify(x.digest()).decode()
for p in %r:
    print(p, _h(p))
"""


def parse_hashes(out: bytes | str) -> dict[str, str | None]:
    """_HASH_CODE's output: device path -> SHA-256 hex, or None for a missing file.
    ValueError on a line that is not "path digest"."""
    text = out.decode() if isinstance(out, bytes) else out
    got: dict[str, str | None] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"unexpected line from the device: {line!r}")
        got[parts[0]] = None if parts[1] == "None" else parts[1]
    return got

_LIST_LIB = """\
import os, json
def _ls(d):
    try:
        return os.listdir(d)
    except OSError:
        return []
print(json.dumps([_ls('/lib'), _ls('%s')]))
"""
# The firmware's own folder on the device (firmware/lib/hashtrail compiled).
_FW_DIR = "/lib/hashtrail"
# What releases before the package layout installed flat in /lib (.mpy by deploy, .py
# by mip). The firmware no longer imports them, and a flat `cbor` or `link` is the very
# collision the package avoids, so they go, but only when that layout is there (its
# log module, a name no other package uses): a board that never had it keeps its own
# `cbor` or `link`.
_FLAT_MODULES = ("app", "blockdev_file", "board_esp32", "board_unix", "boardcfg", "bootcheck",
                 "bootfind", "cbor", "chain", "clock", "cose", "devlog", "entry", "hmac256",
                 "identity", "keyfile", "link", "logscan", "logstore", "p256", "p256_table",
                 "sensors")
_FLAT_FILES = frozenset([f"{m}{ext}" for m in _FLAT_MODULES for ext in (".mpy", ".py")]
                        + ["p256_table.bin"])


def stale_files(on_lib: list[str], on_fw: list[str], files: dict[str, bytes]) -> list[str]:
    """Device paths to remove before copying `files`: what /lib/hashtrail holds that the
    firmware does not have, and the flat modules of the old layout when it is there."""
    stale = [f"{_FW_DIR}/{n}" for n in on_fw if f"{_FW_DIR}/{n}" not in files]
    if "devlog.mpy" in on_lib or "devlog.py" in on_lib:
        stale += [f"/lib/{n}" for n in on_lib if n in _FLAT_FILES]
    return stale


def _transport(port: str, baud: int) -> Any:
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        t = SerialTransport(port, baudrate=baud)
    except (TransportError, OSError) as e:
        raise DeployError(f"no MicroPython raw REPL on {port}: {e}") from e
    # mpremote reads a pty byte by byte with pyserial's default of no read timeout, so a
    # device that misses the Ctrl-C (one that is rebooting at that moment, or is not
    # MicroPython at all) held deploy forever; with a read timeout mpremote's own overall
    # limit applies. A missed interrupt is sent again before giving up.
    t.serial.timeout = _READ_TIMEOUT_S
    said = io.StringIO()  # mpremote prints what it got instead of the banner: keep it
    for attempt in range(1, _RAW_REPL_TRIES + 1):
        try:
            with contextlib.redirect_stdout(said):
                t.enter_raw_repl(soft_reset=True, timeout_overall=_RAW_REPL_WAIT_S)
            return t
        except TransportError as e:
            log.debug("raw REPL on %s, try %d: %s", port, attempt, e)
            if attempt == _RAW_REPL_TRIES:
                t.close()
                seen = printable(_printed_bytes(said.getvalue()).strip())[-200:]
                raise DeployError(
                    f"no MicroPython raw REPL on {port} after {_RAW_REPL_TRIES} tries"
                    + (f"; the device printed: {seen}" if seen else "; the device was silent"),
                    hint="is this a MicroPython board? press its reset button and run again, "
                         "or check the port with `mpremote connect PORT`") from e
        except OSError as e:
            t.close()
            raise DeployError(f"no MicroPython raw REPL on {port}: {e}") from e
    raise AssertionError("unreachable")


def _printed_bytes(printed: str) -> str:
    """What the device sent, from mpremote's `print(data)` of it (one bytes repr a line)."""
    got = b""
    for line in printed.splitlines():
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, bytes):
            got += value
    return got.decode("utf-8", "replace")


class _PortStream:
    """link.ByteStream over the transport's open pyserial port: the HELLO after the reset
    goes over the very connection that saw the reset, so nothing the device printed
    while starting is lost to a re-open."""

    def __init__(self, serial: Any) -> None:
        self._s = serial

    def read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            try:
                waiting = self._s.in_waiting
                if waiting:
                    return bytes(self._s.read(min(n, waiting)))
            except OSError as e:
                raise LinkError(f"serial read failed: {e}") from e
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            time.sleep(min(left, 0.01))

    def write(self, data: bytes) -> None:
        try:
            self._s.write(data)
            self._s.flush()
        except OSError as e:
            raise LinkError(f"serial write failed: {e}") from e

    def close(self) -> None:
        pass  # the transport owns the port


def probe(t: Any, port: str) -> DeviceFacts:
    """Ask the device (in its raw REPL) what it is; nothing is written."""
    from mpremote.transport import TransportError

    try:
        return boardid.parse_facts(t.exec(boardid.PROBE_CODE))
    except TransportError as e:
        raise DeployError(f"the board probe failed on {port}: {e}") from e


def _soft_reset(t: Any, port: str) -> None:
    """From the raw REPL: to the friendly REPL, then Ctrl-D, so boot.py and main.py run;
    returns once the device said "soft reboot" (what it prints next is the app's)."""
    try:
        t.exit_raw_repl()
        t.read_until(1, _PROMPT, timeout_overall=10)
        t.serial.write(b"\x04")
        done = t.read_until(1, _SOFT_REBOOT, timeout_overall=10).endswith(_SOFT_REBOOT)
    except OSError as e:
        raise DeployError(f"soft reset of the board on {port} failed: {e}") from e
    if not done:
        raise DeployError(f"the board on {port} did not soft-reset")


def device_lines(text: bytes, limit: int = _SHOW_LINES) -> list[str]:
    """The device's printable lines up to its first REPL prompt (later lines would be the
    REPL echoing our requests), the last `limit` of them."""
    cut = text.find(_PROMPT)
    if cut >= 0:
        text = text[:cut]
    lines = [ln.strip() for ln in text.decode("utf-8", "replace").splitlines()]
    return [ln for ln in lines if ln and ln.isprintable()][-limit:]


def wait_app(link: Link, port: str, wait_s: float) -> DeviceInfo:
    """HELLO until the application answers; DeviceStartError once the REPL prompt shows
    (main.py returned) or `wait_s` passes, with what the device printed meanwhile."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return link.hello()
        except LinkError as e:
            seen = bytes(link.decoder.text)
            if _PROMPT in seen or time.monotonic() >= deadline:
                why = ("its REPL prompt came back: the application is not running"
                       if _PROMPT in seen else f"no answer to HELLO within {wait_s:g} s")
                lines = device_lines(seen)
                shown = "".join(f"\n  | {ln}" for ln in lines) if lines else (
                    "\n  (the device printed nothing)")
                raise DeviceStartError(
                    f"firmware written to {port}, but the application did not start ({why}); "
                    f"the device printed:{shown}") from e


def deploy(board_name: str, port: str,
           progress: Callable[[int, int], None] | None = None, *, force: bool = False,
           wait_s: float = 60.0, release_keys: Sequence[bytes] = ()) -> DeployResult:
    """Identify, compile, copy, verify, restart, HELLO. Raises on any mismatch.
    Each step is one INFO line of this module's logger; `progress` sees (files
    written, files to write) as the copy goes.

    `release_keys`: the release public keys the device will accept firmware updates
    from, written to /ht/release_keys (replacing the pinned ones) and hash-checked with
    the firmware; none given leaves the device's pinned keys as they are."""
    from mpremote.transport import TransportError

    board = load_board(board_name)
    boardid.identify_rules(board)  # a board without an identify section: fail first
    userfile.check_port(port)
    files = firmware_files(board)
    if release_keys:
        files[RELEASE_KEYS_PATH] = release_keys_file(release_keys)
    want = file_hashes(files)
    t = _transport(port, board.console_baud)
    try:
        facts = probe(t, port)
        wrong = boardid.mismatches(board, facts)
        if wrong and not force:
            fits = boardid.matching_boards(facts)
            try:
                _soft_reset(t, port)  # nothing written: the device runs what it ran before
            except DeployError:
                pass  # the refusal is the news; a device left at its REPL still has its files
            raise BoardMismatchError(
                f"refusing to deploy: --board {board.name} expects "
                f"{boardid.describe_rules(board)}, but the device on {port} reports "
                f"{facts.describe()}",
                hint=(f"the device fits --board {' or '.join(fits)}" if fits else
                      "no board definition fits this device")
                + "; nothing was written (--force writes anyway)")
        if wrong:
            log.warning(f"--force: writing {board.name} firmware onto a device reporting "
                        f"{facts.describe()}")
        try:
            on_lib, on_fw = json.loads(t.exec(_LIST_LIB % _FW_DIR))
            for folder in sorted({p.rsplit("/", 1)[0] for p in files} - {""}):
                if not t.fs_exists(folder):
                    t.fs_mkdir(folder)
            for path in stale_files(on_lib, on_fw, files):
                log.info(f"remove {path}")
                t.fs_rmfile(path)
            for i, (path, data) in enumerate(files.items()):
                log.info(f"copy {path} ({len(data)} bytes)")
                if progress is not None:
                    progress(i, len(files))
                t.fs_writefile(path, data)
            if progress is not None:
                progress(len(files), len(files))
            got = parse_hashes(t.exec(_HASH_CODE % (sorted(files),)))
        except (TransportError, ValueError) as e:
            raise DeployError(f"deploy to {port} failed: {e}") from e
        bad = sorted(p for p in files if got.get(p) != want[p])
        if bad:
            raise VerificationError(
                f"{len(bad)} file(s) on the device do not match what was compiled: "
                + ", ".join(bad), hint="re-run deploy; if it persists the flash may be failing")
        log.info("all SHA-256 verified on the device; soft reset")
        _soft_reset(t, port)
        link = Link(_PortStream(t.serial), timeout=1.0)
        info = wait_app(link, port, wait_s)
    finally:
        t.close()
    return DeployResult(files=want, facts=facts, info=info, forced=bool(wrong))
