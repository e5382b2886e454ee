"""firmware/manifest.py (frozen builds) and firmware/package.json (mip) cannot drift.

Why: both list firmware files by hand or by rule, and a module added to
firmware/lib/hashtrail that one of them misses only shows on a board, as an ImportError
at boot. No frozen MicroPython build runs here (that needs ESP-IDF), so the manifest is
executed the way MicroPython's tools/manifestfile.py executes it: as Python, with its
working folder set to the manifest's own, `$(PORT_DIR)` etc. substituted, and recording
versions of include/module/package/freeze/require. What it freezes must cover every module a board
imports (found by following the imports from app.py and the ESP32 board layer), exist,
keep the package layout a board imports (hashtrail/<module>.py), and leave out the
virtual board's modules.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hashtrail.paths import venv_tool

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
LIB = FIRMWARE / "lib"
PKG = LIB / "hashtrail"  # the firmware's package: /lib/hashtrail on a board
VIRTUAL_ONLY = {"board_unix.py", "blockdev_file.py"}
# Where a board's import graph starts: main.py imports app; app imports the layer that
# boardcfg.layer_for names for an ESP32 chip (by name, through __import__).
BOARD_ROOTS = ("app", "board_esp32")
PORT_DIR = "/opt/micropython/ports/esp32"  # stands in for $(PORT_DIR); never read


class _Recorder:
    """The manifest functions, recording (frozen target path -> source file)."""

    def __init__(self) -> None:
        self.frozen: dict[str, Path] = {}
        self.includes: list[str] = []
        self.requires: list[str] = []

    def _resolve(self, path: str) -> Path:
        return Path(os.path.abspath(path.replace("$(PORT_DIR)", PORT_DIR)))

    def _add(self, source: Path, target: str) -> None:
        assert target not in self.frozen, f"{target} frozen twice"
        self.frozen[target] = source

    def include(self, manifest_path: str, **_kwargs: object) -> None:
        self.includes.append(manifest_path)

    def require(self, name: str, **_kwargs: object) -> None:
        self.requires.append(name)

    def module(self, module_path: str, base_path: str = ".", opt: int | None = None) -> None:
        assert module_path.endswith(".py"), "module must be .py file"
        self._add(self._resolve(base_path) / module_path, module_path)

    def package(self, package_path: str, files: list[str] | None = None,
                base_path: str = ".", opt: int | None = None) -> None:
        base = self._resolve(base_path)
        names = files or [str(p.relative_to(base / package_path))
                          for p in (base / package_path).rglob("*.py")]
        for name in names:
            self._add(base / package_path / name, f"{package_path}/{name}")

    def freeze(self, path: str, script: str | None = None, opt: int | None = None) -> None:
        base = self._resolve(path)
        scripts = [script] if script else [str(p.relative_to(base)) for p in base.rglob("*.py")]
        for s in scripts:
            self._add(base / s, s)


def _run_manifest() -> _Recorder:
    rec = _Recorder()
    api = {"include": rec.include, "require": rec.require, "module": rec.module,
           "package": rec.package, "freeze": rec.freeze, "metadata": lambda **_: None,
           "options": None}
    manifest = FIRMWARE / "manifest.py"
    prev = os.getcwd()
    os.chdir(manifest.parent)  # what manifestfile.py does while a manifest runs
    try:
        exec(compile(manifest.read_text(), str(manifest), "exec"), api)
    finally:
        os.chdir(prev)
    return rec


def _imports(module: str) -> set[str]:
    """Firmware modules `module` imports anywhere in its body (static): `import
    hashtrail.x`, `from hashtrail import x` and `from hashtrail.x import y` name x; any
    import of the package names its __init__."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "hashtrail":
                names.update(f"hashtrail.{a.name}" for a in node.names)
    out = {"__init__"} if any(n.split(".")[0] == "hashtrail" for n in names) else set()
    out.update(n.split(".", 1)[1] for n in names if n.startswith("hashtrail."))
    return {n for n in out if (PKG / f"{n}.py").is_file()}


def _board_modules() -> set[str]:
    seen: set[str] = set()
    todo = list(BOARD_ROOTS)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imports(m))
    return {f"{m}.py" for m in seen}


def test_manifest_freezes_every_module_a_board_imports() -> None:
    rec = _run_manifest()
    assert rec.includes[0] == "$(PORT_DIR)/boards/manifest.py"  # the port's own modules
    needed = _board_modules()
    assert {"__init__.py", "app.py", "p256.py", "p256_table.py", "devlog.py", "link.py",
            "keyfile.py", "logscan.py", "logrec.py"} <= needed
    missing = {f"hashtrail/{n}" for n in needed} - set(rec.frozen)
    assert not missing, f"manifest.py does not freeze {sorted(missing)}"
    for target, source in rec.frozen.items():
        assert source.is_file(), f"{target}: {source} does not exist"
        # importable as on a board: hashtrail.<module>
        assert source.parent == PKG and target == f"hashtrail/{source.name}"


def test_manifest_freezes_all_firmware_but_nothing_virtual() -> None:
    frozen = set(_run_manifest().frozen)
    assert not frozen & {f"hashtrail/{n}" for n in VIRTUAL_ONLY}
    assert not frozen & {"main.py", "boot.py"}  # stay files: the app can be switched off
    assert frozen == {f"hashtrail/{p.name}" for p in PKG.glob("*.py")
                      if p.name not in VIRTUAL_ONLY}
    assert not list(LIB.glob("*.py"))  # nothing flat in lib/: all of it is the package


@pytest.mark.parametrize("module", sorted(VIRTUAL_ONLY))
def test_virtual_only_modules_are_not_imported_on_a_board(module: str) -> None:
    """Guards the exclusion: if a board module starts importing one, freeze it."""
    assert module not in _board_modules()


def _package() -> dict[str, object]:
    data = json.loads((FIRMWARE / "package.json").read_text())
    assert isinstance(data, dict)
    return data


def test_package_json_lists_exactly_the_library_files() -> None:
    pkg = _package()
    urls = pkg["urls"]
    assert isinstance(urls, list)
    shipped = sorted(p.name for p in PKG.iterdir() if p.suffix in (".py", ".bin"))
    expected = [[f"hashtrail/{name}", f"lib/hashtrail/{name}"] for name in shipped]
    assert urls == expected, ("firmware/package.json is out of date; its urls must be:\n"
                              + ",\n".join(json.dumps(e) for e in expected))
    assert "p256_table.bin" in shipped  # data file mip copies as it is
    assert pkg["deps"] == [] and isinstance(pkg["version"], str)


def test_package_json_urls_are_relative_and_exist() -> None:
    """Relative urls resolve next to package.json, wherever it is served from (a local
    path, http, or github:OWNER/REPO/firmware/package.json); every file lands in the
    package folder under mip's target (/lib/hashtrail/...)."""
    urls = _package()["urls"]
    assert isinstance(urls, list)
    for dest, url in urls:
        assert dest.startswith("hashtrail/") and dest.count("/") == 1
        assert not url.startswith(("/", "http", "github:"))
        assert (FIRMWARE / url).is_file()


def test_p256_named_as_a_frozen_module_takes_the_table_constant(tmp_path: Path) -> None:
    """A frozen module's __file__ is its path inside the image, with no folder before the
    package ("hashtrail/p256.py": the unix port's own frozen asyncio shows
    "asyncio/core.py"), so p256 looks for no p256_table.bin and uses p256_table.COMB,
    which a frozen build keeps in flash. Imported here relative to the current folder,
    which gives the same __file__, with the table file beside it all the same."""
    (tmp_path / "hashtrail").mkdir()
    for name in ("__init__.py", "p256.py", "p256v.py", "p256_table.py", "hmac256.py",
                 "p256_table.bin"):
        shutil.copyfile(PKG / name, tmp_path / "hashtrail" / name)
    code = ("import sys\nsys.path[:] = ['']\nfrom hashtrail import p256\n"
            "print(p256.__file__, p256._TABLE_FILE, p256.COMB is not None and len(p256.COMB))\n"
            "d = 12345\nsig = p256.sign(d, bytes(32))\n"
            "print(p256.verify(p256.public_key(d), bytes(32), sig))\n")
    proc = subprocess.run([venv_tool("micropython"), "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["hashtrail/p256.py", "None", "16320", "True"]
