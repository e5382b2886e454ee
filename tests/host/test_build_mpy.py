"""tools/build_mpy.py cross-compiles every firmware module for every board.

Why: boards import .mpy bytecode; a module mpy-cross rejects (syntax MicroPython
lacks, a too-large constant) or builds for the wrong architecture would only fail on
the board. Every board definition in boards/*.json is built (xtensawin for the
ESP32 and ESP32-S3, rv32imc for the ESP32-C3, plain bytecode for the unix board),
every firmware source must come out as a valid .mpy, the tool must print its sizes,
and the bytecode build must import and run on the VM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hashtrail.paths import venv_tool

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BOARDS = sorted(p.stem for p in (ROOT / "boards").glob("*.json"))
# MicroPython's native-architecture codes in the .mpy header (py/persistentcode.h).
ARCH_CODES = {None: 0, "x64": 2, "xtensa": 9, "xtensawin": 10, "rv32imc": 11}
SCRIPTS = ("boot.py", "main.py")


def _expected_outputs() -> set[str]:
    out = set()
    for src in FIRMWARE.rglob("*.py"):
        rel = src.relative_to(FIRMWARE)
        if "__pycache__" in rel.parts or rel.as_posix() == "manifest.py":  # build host only
            continue
        keep_source = rel.name in SCRIPTS and len(rel.parts) == 1
        out.add(str(rel if keep_source else rel.with_suffix(".mpy")))
    # Data files are shipped unchanged (the P-256 comb table read from flash).
    out.update(str(p.relative_to(FIRMWARE)) for p in FIRMWARE.rglob("*.bin"))
    assert "lib/hashtrail/p256_table.bin" in out
    return out


@pytest.mark.parametrize("board", BOARDS)
def test_build_every_module_for_board(board: str, tmp_path: Path) -> None:
    arch = json.loads((ROOT / "boards" / f"{board}.json").read_text()).get("mpy_arch")
    out = tmp_path / board
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_mpy.py"), "--board", board,
         "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["arch"] == arch
    assert set(report["files"]) == _expected_outputs()
    assert report["total"] == sum(report["files"].values()) > 0
    for name, size in report["files"].items():
        path = out / name
        assert path.stat().st_size == size
        if name.endswith(".mpy"):
            head = path.read_bytes()[:4]
            assert head[0:1] == b"M" and head[1] == 6, f"{name}: not a v6 .mpy"
            # The arch is recorded only when a module holds native code; when it
            # does, it must be the board's.
            assert head[2] >> 2 in (0, ARCH_CODES[arch]), f"{name}: wrong arch"
    # The crypto modules are in every build (the table as one big bytes constant).
    assert report["files"]["lib/hashtrail/p256_table.mpy"] > 255 * 64
    assert {"lib/hashtrail/__init__.mpy", "lib/hashtrail/p256.mpy",
            "lib/hashtrail/hmac256.mpy"} <= set(report["files"])
    assert not [n for n in report["files"] if n.startswith("lib/") and n.count("/") == 1]


def test_text_output_lists_sizes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_mpy.py"), "--board", "esp32",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any(ln.split()[-1] == "lib/hashtrail/p256.mpy" for ln in lines[:-1])
    assert "total (esp32, arch=xtensawin)" in lines[-1]


def test_bytecode_build_runs_on_the_vm(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_mpy.py"), "--board", "unix",
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=300)
    code = ("from hashtrail import p256, hmac256, p256_table\n"
            "pub = p256.public_key(7)\n"
            "import hashlib\n"
            "h = hashlib.sha256(b'mpy').digest()\n"
            "print(p256.__file__, p256.verify(pub, h, p256.sign(7, h)))\n")
    proc = subprocess.run([venv_tool("micropython"), "-X", "heapsize=102400", "-c", code],
                          env=dict(os.environ, MICROPYPATH=str(tmp_path / "lib")),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("lib/hashtrail/p256.mpy True")
