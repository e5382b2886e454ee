"""Which p256_table.bin the device's p256 reads, and what a damaged one does.

Why: p256 reads its comb table row by row from p256_table.bin. A table file that is not
the module's own (a stray /hashtrail/p256_table.bin under a board's root, seen by a
frozen p256 whose __file__ is just "hashtrail/p256.py") or one damaged on flash would
silently make wrong signatures. So p256 reads the file only from its own module folder
under a sys.path entry, and checks its SHA-256 once at import: a damaged or truncated
file raises RuntimeError. Run on the real MicroPython VM with the firmware compiled to
.mpy, at the generic ESP32's heap budget.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ecdsa import NIST256p, SigningKey
from hashtrail.device.boards import load_board
from hashtrail.paths import venv_tool

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "firmware" / "lib" / "hashtrail" / "p256_table.bin"
sys.path.insert(0, str(ROOT / "tools"))

import build_mpy  # noqa: E402

MODULES = ("__init__.mpy", "p256.mpy", "p256v.mpy", "p256_table.mpy", "hmac256.mpy")
D = 0x1234567890ABCDEF1234567890ABCDEF
DIGEST = hashlib.sha256(b"hashtrail").digest()
# The signature must be the one python-ecdsa makes (RFC 6979): a wrong table row
# gives a different r (or a crash), never this.
EXPECTED = SigningKey.from_secret_exponent(D, curve=NIST256p).sign_digest_deterministic(
    DIGEST, hashfunc=hashlib.sha256).hex()
CODE = (f"import sys\nsys.path[:] = [{{path!r}}]\nfrom hashtrail import p256\n"
        f"print(p256.__file__, p256._TABLE_FILE, p256.COMB is not None)\n"
        f"sig = p256.sign({D}, {DIGEST!r})\n"
        f"print(sig.hex(), p256.verify(p256.public_key({D}), {DIGEST!r}, sig))\n")


@pytest.fixture(scope="module")
def mpy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mpy")
    build_mpy.build(out)
    return out / "lib" / "hashtrail"


def _run(cwd: Path, path: str) -> subprocess.CompletedProcess[str]:
    heap = load_board("esp32").heap_budget
    return subprocess.run([venv_tool("micropython"), "-X", f"heapsize={heap}", "-c",
                           CODE.format(path=path)],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def _damaged(kind: str) -> bytes:
    table = TABLE.read_bytes()
    if kind == "flipped":  # one bit in row 7's Y: the size is right, a point is wrong
        i = 7 * 64 + 40
        return table[:i] + bytes([table[i] ^ 1]) + table[i + 1:]
    if kind == "rotated":  # real curve points, each in the wrong row: every column is off
        return table[64:] + table[:64]
    return table[:-64]  # truncated: the last row lost


def _place(mpy: Path, path_entry: Path, table: bytes | None) -> None:
    """The package (the p256 modules) in path_entry/hashtrail/, with `table` beside them."""
    folder = path_entry / "hashtrail"
    folder.mkdir(parents=True, exist_ok=True)
    for name in MODULES:
        shutil.copyfile(mpy / name, folder / name)
    if table is not None:
        (folder / "p256_table.bin").write_bytes(table)


def test_module_folder_table_is_used_when_intact(mpy: Path, tmp_path: Path) -> None:
    _place(mpy, tmp_path / "lib", TABLE.read_bytes())
    proc = _run(tmp_path, "lib")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["lib/hashtrail/p256.mpy", "lib/hashtrail/p256_table.bin",
                                   "False", EXPECTED, "True"]


def test_stray_table_in_current_folder_is_ignored_by_a_frozen_style_import(
        mpy: Path, tmp_path: Path) -> None:
    """Imported relative to the current folder (__file__ "hashtrail/p256.mpy", no folder
    before the package), as a frozen module's is ("hashtrail/p256.py"), with a damaged
    hashtrail/p256_table.bin there: p256 must not read it (an older version did, and
    signed wrongly) and must take the p256_table.COMB constant instead."""
    _place(mpy, tmp_path, _damaged("rotated"))
    proc = _run(tmp_path, "")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["hashtrail/p256.mpy", "None", "True", EXPECTED, "True"]


@pytest.mark.parametrize("kind", ["flipped", "truncated"])
def test_damaged_table_in_module_folder_raises(mpy: Path, tmp_path: Path, kind: str) -> None:
    _place(mpy, tmp_path / "lib", _damaged(kind))
    proc = _run(tmp_path, "lib")
    assert proc.returncode != 0, proc.stdout
    assert "RuntimeError: p256 table lib/hashtrail/p256_table.bin" in proc.stderr + proc.stdout
    why = "corrupted (SHA-256 mismatch)" if kind == "flipped" else "16256 bytes, expected 16320"
    assert why in proc.stderr + proc.stdout
    assert EXPECTED not in proc.stdout
