"""The one place the CLI reads a file the user named: checked before it is read.

Why: a user can point any option at anything (a directory, an empty or binary file,
megabytes of junk, JSON nested ten thousand deep). Each must end in one line that names
the path and says what was expected (`InputError`, exit 2), never a traceback, and
nothing may be created or changed on the way. Callers say what they expect (`what`,
e.g. "a fork evidence file (JSON)") and how big it may be.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashtrail.errors import InputError

KIB = 1024
MIB = 1024 * KIB
# Small files a user hands to a command: keys, checkpoints, witness state.
SMALL = 1 * MIB
# Documents that carry device entries (a proof or fork evidence holds the entries up to
# the device signature that covers them): roomy, but still read whole into memory.
DOCUMENT = 64 * MIB


def _fail(path: str | os.PathLike[str], problem: str, what: str) -> InputError:
    return InputError(f"{os.fspath(path)}: {problem}; expected {what}")


def check_input(path: str | os.PathLike[str], what: str, *,
                max_bytes: int | None = SMALL) -> Path:
    """`path` exists, is a regular file (or a pipe, as `<(...)` gives), is not empty and
    not larger than `max_bytes`; InputError naming it otherwise."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file", what) from None
    except (OSError, ValueError) as e:
        raise _fail(path, f"cannot open ({getattr(e, 'strerror', None) or e})", what) \
            from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory", what)
    if stat.S_ISFIFO(st.st_mode):
        return p
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "is not a regular file", what)
    if st.st_size == 0:
        raise _fail(path, "is empty", what)
    if max_bytes is not None and st.st_size > max_bytes:
        raise _fail(path, f"is {st.st_size} bytes, more than such a file can be "
                          f"({max_bytes} bytes)", what)
    return p


def read_bytes(path: str | os.PathLike[str], what: str, *,
               max_bytes: int = SMALL) -> bytes:
    p = check_input(path, what, max_bytes=max_bytes)
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise _fail(path, f"cannot read ({e.strerror})", what) from None
    if not data:
        raise _fail(path, "is empty", what)
    if len(data) > max_bytes:
        raise _fail(path, f"is more than such a file can be ({max_bytes} bytes)", what)
    return data


def read_text(path: str | os.PathLike[str], what: str, *, max_bytes: int = SMALL,
              encoding: str = "utf-8") -> str:
    data = read_bytes(path, what, max_bytes=max_bytes)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise _fail(path, f"is not {encoding.upper()} text (a binary file?)", what) \
            from None


def read_json(path: str | os.PathLike[str], what: str, *, max_bytes: int = SMALL,
              object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
              ) -> Any:
    """A JSON document; junk, binary or nesting too deep for the parser is InputError."""
    text = read_text(path, what, max_bytes=max_bytes)
    return parse_json(text, path, what, object_pairs_hook=object_pairs_hook)


def parse_json(text: str, path: str | os.PathLike[str], what: str, *,
               object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
               ) -> Any:
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise _fail(path, "is JSON nested too deeply", what) from None
    except ValueError as e:
        raise _fail(path, f"is not JSON ({e})", what) from None


def check_output(path: str | os.PathLike[str], what: str) -> Path:
    """A file a command will write: not a directory, in a folder that exists. Checked
    before any work, so a bad --out fails before anything else is written."""
    p = Path(path)
    if p.is_dir():
        raise _fail(path, "is a directory", what)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise _fail(path, f"its folder {parent} does not exist", what)
    return p


PORT = "a serial port (e.g. /dev/ttyUSB0) or a virtual device's pty"
PORT_HINT = "`hashtrail sim` prints virtual devices' ports; `python -m serial.tools.list_ports` " \
            "lists boards"


def check_port(port: str, *, missing_ok: bool = False) -> None:
    """`port` names a character device: a regular file, a directory or (unless
    `missing_ok`) a missing path is refused before anything opens it. pyserial URLs
    (socket://...) and Windows COM names pass through to pyserial."""
    if "://" in port or os.name == "nt":
        return
    try:
        st = os.stat(port)
    except FileNotFoundError:
        if missing_ok:
            return
        raise InputError(f"{port}: no such serial port; expected {PORT}",
                         hint=PORT_HINT) from None
    except (OSError, ValueError) as e:
        raise InputError(f"{port}: cannot open ({getattr(e, 'strerror', None) or e}); "
                         f"expected {PORT}", hint=PORT_HINT) from None
    if not stat.S_ISCHR(st.st_mode):
        problem = "is a directory" if stat.S_ISDIR(st.st_mode) else "is not a serial port"
        raise InputError(f"{port}: {problem}; expected {PORT}", hint=PORT_HINT)


def check_dir(path: str | os.PathLike[str], what: str) -> Path:
    """A folder a command works in: a directory, or nothing yet (the command makes it);
    a file there is refused before anything is made."""
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not p.is_dir():
        raise _fail(path, "is not a directory", what)
    return p
