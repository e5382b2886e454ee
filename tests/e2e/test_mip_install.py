"""`mpremote mip install firmware/package.json` on a freshly flashed virtual board.

The way a MicroPython user installs a library: mip copies every file named in
firmware/package.json into the package folder /lib/hashtrail/, so no module collides
with another package's (mpremote 1.29 reads a local package.json and resolves its
relative urls next to it; over http it does the same against the server). The application itself (main.py, boot.py) and the board definition are not
library files: the user copies them with `mpremote cp`, as the README says. The board
then has to boot into the app from exactly those files and answer the protocol.

mip copies files as they are: these are .py sources, compiled in RAM at import. That
needs more heap than the generic ESP32's 100 KB budget (about 130 KB measured with this
firmware), so the virtual board here gets the ESP32-S3's budget; the 100 KB board
installs compiled .mpy with `hashtrail deploy`, from a mip index of compiled .mpy
(tools/mip_index.py: tested last here, at the 100 KB budget) or freezes the modules
(manifest.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hashtrail.device.boards import load_board
from hashtrail.device.imagefs import build_image
from hashtrail.device.link import open_serial
from hashtrail.formats.checkpoint import verify_checkpoint
from hashtrail.paths import venv_tool
from hashtrail.sim import VirtualDevice

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import mip_index

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
PACKAGE = FIRMWARE / "package.json"


def _mpremote(port: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@contextmanager
def _http_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) for the block's duration."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _fresh_board(directory: Path, budget_of: str = "esp32s3") -> VirtualDevice:
    """A virtual board just flashed with MicroPython: an empty littlefs, no firmware,
    with the heap budget of board `budget_of`."""
    board = dataclasses.replace(load_board("unix"),
                                heap_budget=load_board(budget_of).heap_budget)
    dev = VirtualDevice(directory, "dev0", board=board)
    dev.image_path.write_bytes(build_image({}, board.vfs_size, board.block_size))
    return dev


def _listing(dev: VirtualDevice, folder: str) -> list[str]:
    out = _mpremote(dev.port, "exec",
                    f"import os, json; print(json.dumps(sorted(os.listdir({folder!r}))))")
    return list(json.loads(out))


def _assert_first_boot_signs(dev: VirtualDevice) -> None:
    """The app installed by mip runs: first boot, and a checkpoint over a fresh nonce
    verifies against the key the device reports."""
    with open_serial(dev.port) as link:
        link.timeout = 10.0
        info = link.hello()
        assert info.board == "unix" and info.boot == 1
        nonce = os.urandom(16)
        cp = verify_checkpoint(link.checkpoint(nonce), info.pub, nonce=nonce)
        assert cp.device_id == info.device_id


@pytest.mark.parametrize("source", ["local", "http"])
def test_mip_install_lands_every_file_and_the_board_runs_the_app(tmp_path: Path,
                                                                   source: str) -> None:
    package = json.loads(PACKAGE.read_text())
    expected = {f"/lib/{dest}": hashlib.sha256((FIRMWARE / url).read_bytes()).hexdigest()
                for dest, url in package["urls"]}
    with _fresh_board(tmp_path) as dev:
        assert "lib" not in _mpremote(dev.port, "exec", "import os; print(os.listdir('/'))")
        if source == "local":
            _mpremote(dev.port, "mip", "install", str(PACKAGE))
        else:
            with _http_server(FIRMWARE) as base:
                _mpremote(dev.port, "mip", "install", f"{base}/package.json")
        # The application and the board definition: copied, not installed by mip.
        _mpremote(dev.port, "cp", "firmware/main.py", "firmware/boot.py", ":")
        _mpremote(dev.port, "cp", "boards/unix.json", ":board.json")

        assert _listing(dev, "/lib") == ["hashtrail"]  # nothing flat in /lib
        assert _listing(dev, "/lib/hashtrail") == sorted(p.rsplit("/", 1)[1] for p in expected)
        paths = sorted(expected)
        out = _mpremote(dev.port, "sha256sum", *(":" + p for p in paths))
        digests = [w for w in out.split() if len(w) == 64]
        assert dict(zip(paths, digests, strict=True)) == expected

        dev.restart()  # boots boot.py, then main.py -> /lib/hashtrail/app.py (mip's files)
        _assert_first_boot_signs(dev)


def test_on_device_mip_installs_the_same_files_over_http(tmp_path: Path) -> None:
    """The other mip: micropython-lib's, which a networked board runs itself
    (`import mip; mip.install(URL)`). The unix port carries it frozen; it fetches
    package.json and every relative url from the server."""
    target = tmp_path / "lib"
    with _http_server(FIRMWARE) as base:
        proc = subprocess.run([venv_tool("micropython"), "-m", "mip", "install", "--target",
                               str(target), f"{base}/package.json"],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    urls = json.loads(PACKAGE.read_text())["urls"]
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")
                  if p.is_file()) == sorted(dest for dest, _ in urls)
    assert [p.name for p in target.iterdir()] == ["hashtrail"]
    for dest, url in urls:
        assert (target / dest).read_bytes() == (FIRMWARE / url).read_bytes(), dest


@pytest.mark.parametrize("source", ["local", "http"])
def test_mip_install_from_compiled_index_boots_at_the_esp32_budget(tmp_path: Path,
                                                                  source: str) -> None:
    """tools/mip_index.py's index, installed with `mip install --index DIR hashtrail`:
    compiled .mpy (bytecode for the unix board, as for an ESP32 without native code)
    that boots the app in the generic ESP32's 100 KB, where the .py sources cannot."""
    index = tmp_path / "index"
    doc = mip_index.build_index("unix", index)
    hashes = doc["hashes"]
    assert isinstance(hashes, list)
    names = sorted(dest for dest, _ in hashes)
    lib_names = sorted(dest for dest, _ in json.loads(PACKAGE.read_text())["urls"])
    assert names == sorted(n[:-3] + ".mpy" if n.endswith(".py") else n for n in lib_names)
    assert (index / "package" / "6" / "hashtrail" / "latest.json").is_file()
    budget = load_board("esp32").heap_budget
    with _fresh_board(tmp_path, budget_of="esp32") as dev:
        assert dev.board.heap_budget == budget == 100 * 1024
        if source == "local":
            out = _mpremote(dev.port, "mip", "install", "--index", str(index), "hashtrail")
        else:
            with _http_server(index) as base:
                out = _mpremote(dev.port, "mip", "install", "--index", base, "hashtrail")
        assert "package/6/hashtrail/latest.json" in out or "hashtrail (latest)" in out, out
        _mpremote(dev.port, "cp", "firmware/main.py", "firmware/boot.py", ":")
        _mpremote(dev.port, "cp", "boards/unix.json", ":board.json")
        assert _listing(dev, "/lib") == ["hashtrail"]
        assert [f"hashtrail/{n}" for n in _listing(dev, "/lib/hashtrail")] == names
        # Every installed file is the index's file (mip named it by its hash prefix).
        paths = [f"/lib/{dest}" for dest, _ in hashes]
        out = _mpremote(dev.port, "sha256sum", *(":" + p for p in paths))
        digests = [w for w in out.split() if len(w) == 64]
        assert [d[:8] for d in digests] == [short for _, short in hashes]

        dev.restart()  # boot.py, main.py -> /lib/hashtrail/app.mpy, in 100 KB of heap
        _assert_first_boot_signs(dev)

        # A second install finds every file in place (mip compares the hash prefix).
        again = _mpremote(dev.port, "mip", "install", "--index", str(index), "hashtrail")
        assert again.count("Exists:") == len(hashes), again
