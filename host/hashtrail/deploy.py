"""Copy the compiled firmware onto a board the way mpremote does, then prove it landed.

Why not just `mpremote cp`: a deploy is only done when every file on the device has
the SHA-256 of what was compiled, so the check runs on the device (hashlib through the
raw REPL) and reads nothing back over the wire. Modules in /lib that the firmware no
longer has are removed (a stale .mpy would shadow nothing, but would still be imported
by an old name); the device's data (/ht: key, log, state) is never touched.

Uses mpremote's SerialTransport (mpremote is pinned in pyproject.toml): raw REPL with a
soft reset on entry, so main.py is stopped while files change; after the copy a soft
reset from the friendly REPL starts the new main.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .boards import load_board
from .errors import HashtrailError, VerificationError
from .imagefs import file_hashes, firmware_files


class DeployError(HashtrailError):
    """The board did not answer on its raw REPL, or a file operation failed there."""

    hint = ("check the port; if main.py ignores Ctrl-C, reset the board and retry; "
            "`mpremote connect PORT repl` shows what the board prints")


# Device side: hash files in 512-byte reads (little heap), print one JSON object.
_HASH_CODE = """\
import hashlib, binascii, json
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
print(json.dumps({p: _h(p) for p in %r}))
"""

_LIST_LIB = """\
import os, json
try:
    print(json.dumps(os.listdir('/lib')))
except OSError:
    print('[]')
"""


def _transport(port: str, baud: int) -> Any:
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        t = SerialTransport(port, baudrate=baud)
        t.enter_raw_repl(soft_reset=True)
    except (TransportError, OSError) as e:
        raise DeployError(f"no MicroPython raw REPL on {port}: {e}") from e
    return t


def deploy(board_name: str, port: str,
           progress: Callable[[str], None] = lambda _msg: None) -> dict[str, str]:
    """Compile, copy and verify; returns {device path: sha256}. Raises on any mismatch."""
    from mpremote.transport import TransportError

    board = load_board(board_name)
    files = firmware_files(board)
    want = file_hashes(files)
    t = _transport(port, board.console_baud)
    try:
        try:
            on_lib = json.loads(t.exec(_LIST_LIB))
            if not t.fs_exists("/lib"):
                t.fs_mkdir("/lib")
            for name in on_lib:
                if "/lib/" + name not in files:
                    progress(f"remove /lib/{name}")
                    t.fs_rmfile("/lib/" + name)
            for path, data in files.items():
                progress(f"copy {path} ({len(data)} bytes)")
                t.fs_writefile(path, data)
            got = json.loads(t.exec(_HASH_CODE % (sorted(files),)))
        except (TransportError, ValueError) as e:
            raise DeployError(f"deploy to {port} failed: {e}") from e
        bad = sorted(p for p in files if got.get(p) != want[p])
        if bad:
            raise VerificationError(
                f"{len(bad)} file(s) on the device do not match what was compiled: "
                + ", ".join(bad), hint="re-run deploy; if it persists the flash may be failing")
        t.exit_raw_repl()
        t.serial.write(b"\x04")  # soft reset from the friendly REPL: main.py runs again
    finally:
        t.close()
    return want
