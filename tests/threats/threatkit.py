"""Helpers for the attack suite: virtual devices, flash-image surgery, stores, bundles.

Why a golden device: booting the real firmware and making its key costs seconds, so
the suite records ONE device history once per session (tests/threats/conftest.py) and
every test boots its own copy of that flash image. Copies share the key, which is
exactly what the clone and rollback attacks need, and each test damages only its copy.

Everything here is real: the MicroPython VM running the firmware, littlefs images
edited with littlefs-python, SQLite stores and ledgers, bundles on disk, the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hashtrail.chain.chainverify import ChainReport, verify_chain
from hashtrail.collector.collect import CollectResult, collect
from hashtrail.collector.store import Store
from hashtrail.device import imagefs
from hashtrail.device.boards import load_board
from hashtrail.device.link import open_serial
from hashtrail.formats.records import (
    LOG_DIR,
    MAGIC_ENTRY,
    Record,
    RecordProblem,
    parse_segments,
    seal,
    spans,
)
from hashtrail.sim import VirtualDevice
from hashtrail.sim.provision import wait_ready
from hashtrail.sim.tamper import read_seg, segments, write_seg  # noqa: F401 (re-exported)
from littlefs import LittleFS

# Same test-only departures as tests/e2e/test_collect_e2e.py: a bigger VM heap (the
# firmware plus the virtual ROM does not fit the 100 KB budget yet) and fast sampling.
HEAP = 160 * 1024
BOARD = dataclasses.replace(load_board("unix"), heap_budget=HEAP)
# Small segments so segment-level attacks (delete, reorder) have several files to work
# on; automatic checkpoints every 20 entries so the log holds nonce-less checkpoints.
# The golden device is a checkpoints-only board (sign_entries off, policy 0 in its entry
# 0), what these attacks were written against: the hash chain and the checkpoints must
# catch them on their own, as on a battery-bound board. Entries are signed by default
# on every other board; attacks on signed entries have tests of their own.
DEVICE_CFG = {"sample_interval_s": 0.05,
              "log": {"seg_records": 8, "checkpoint_every": 20, "sign_entries": False}}


def edit_image(path: Path, fn: Callable[[LittleFS], None]) -> None:
    """Open a (powered-off) device's flash image with littlefs-python, let fn edit it."""
    imagefs.edit_image(path, BOARD.block_size, fn)


def log_files(path: Path) -> dict[str, bytes]:
    """Segment name -> bytes, as on the image."""
    files = imagefs.read_image(path.read_bytes(), BOARD.block_size)
    return {p.rsplit("/", 1)[1]: b for p, b in files.items() if p.startswith(LOG_DIR + "/")}


def record_spans(data: bytes) -> list[tuple[int, int, int, int]]:
    """(magic, seq, offset, size) of every record in a segment (no CRC check)."""
    return [(r.magic, r.seq, r.offset, r.size) for r in spans(data)]


def fix_crc(data: bytearray, off: int, size: int) -> None:
    seal(data, off, size)


def find_entry(fs: LittleFS, seq: int) -> tuple[str, bytearray, int, int]:
    """(segment, its bytes, offset, size) of the entry record `seq`."""
    for name in segments(fs):
        data = bytearray(read_seg(fs, name))
        for magic, s, off, size in record_spans(bytes(data)):
            if magic == MAGIC_ENTRY and s == seq:
                return name, data, off, size
    raise AssertionError(f"entry {seq} is not on the image")


def image_records(path: Path) -> tuple[list[Record], list[RecordProblem]]:
    return parse_segments(sorted(log_files(path).items()))


def verify_image(path: Path, pub: bytes) -> ChainReport:
    """What `hashtrail verify-log` says about the log on an image (host verifier)."""
    recs, probs = image_records(path)
    return verify_chain(pub, recs, probs)


def configure(path: Path, cfg: dict[str, object]) -> None:
    def fn(fs: LittleFS) -> None:
        with fs.open("/board.json", "rb") as f:
            board = json.loads(f.read())
        board.update(cfg)
        with fs.open("/board.json", "wb") as f:
            f.write(json.dumps(board).encode())

    edit_image(path, fn)


def boot_copy(image: Path, directory: Path, name: str,
              edit: Callable[[LittleFS], None] | None = None,
              cfg: dict[str, object] | None = None) -> VirtualDevice:
    """A virtual device booting a copy of `image` (same key, same history so far)."""
    dev = copy_device(image, directory, name, edit, cfg)
    dev.start()
    wait_ready(dev)
    return dev


def copy_device(image: Path, directory: Path, name: str,
                edit: Callable[[LittleFS], None] | None = None,
                cfg: dict[str, object] | None = None) -> VirtualDevice:
    """A powered-off virtual device whose flash is a copy of `image`, edited by `edit`."""
    directory.mkdir(parents=True, exist_ok=True)
    dev = VirtualDevice(directory, name, board=BOARD)
    shutil.copyfile(image, dev.image_path)
    if cfg:
        configure(dev.image_path, cfg)
    if edit is not None:
        edit_image(dev.image_path, edit)
    return dev


def copy_store(src: Path, dst: Path) -> Path:
    """A copy of a closed collector store (WAL files are folded in on close)."""
    shutil.copyfile(src, dst)
    return dst


def accepted_seqs(store: Path, did: str) -> list[int]:
    with Store.open(store, create=False) as st:
        return [r.seq for r in st.accepted_records(did)]


def anchor_seq(store: Path, did: str) -> int | None:
    with Store.open(store, create=False) as st:
        a = st.anchor(did)
        return None if a is None else a.seq


@dataclass(frozen=True)
class Golden:
    dir: Path
    image: Path  # flash after the collection, with entries N+1..M not yet collected
    early: Path  # flash from before the collection (last entry E < N)
    store: Path  # collector store that accepted 0..N (do not open: copy it)
    device_id: str
    pub: bytes
    early_last: int  # E
    anchor: int  # N
    last: int  # M

    def store_copy(self, tmp: Path, name: str = "c.db") -> Path:
        return copy_store(self.store, tmp / name)

    def boot(self, tmp: Path, name: str = "dev", image: Path | None = None,
             edit: Callable[[LittleFS], None] | None = None,
             cfg: dict[str, object] | None = None) -> VirtualDevice:
        """Boot a copy of `image` (default: the golden one), first edited by `edit`."""
        return boot_copy(image or self.image, tmp, name, edit, cfg)

    def prepare(self, tmp: Path, name: str = "dev", image: Path | None = None,
                edit: Callable[[LittleFS], None] | None = None,
                cfg: dict[str, object] | None = None) -> VirtualDevice:
        """The same, powered off: inspect the damaged image, then `start(dev)`."""
        return copy_device(image or self.image, tmp, name, edit, cfg)


def wait_for_seq(dev: VirtualDevice, seq: int, timeout: float = 60.0) -> int:
    """Wait (asking HELLO, which changes nothing on the device) until the device's log
    reaches `seq`; its last seq. A slow machine samples fewer readings per second, so
    the golden history is sized by entries, not by seconds of sleep."""
    deadline = time.monotonic() + timeout
    with open_serial(dev.port) as link:
        while True:
            last = link.hello().last_seq
            if last is not None and last >= seq:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{dev.name} reached seq {last}, not {seq}, "
                                     f"in {timeout:.0f} s")
            time.sleep(0.1)


def start(dev: VirtualDevice) -> VirtualDevice:
    dev.start()
    wait_ready(dev)
    return dev



# A device copy that samples rarely: after boot it writes only its boot entry (and a
# time-set entry when a collector sets its clock), so what a test sees is deterministic.
SLOW = {"sample_interval_s": 60}


def collect_from(dev: VirtualDevice, store: Path, **kw: object) -> CollectResult:
    """`hashtrail collect` as a function, without ACK (the device prunes nothing)."""
    kw.setdefault("ack", False)
    with open_serial(dev.port) as link, Store.open(store) as st:
        return collect(link, st, **kw)  # type: ignore[arg-type]


# The real CLI, as a user runs it: a separate process on this checkout's package.
_HOST = Path(__file__).resolve().parents[2] / "host"


def hashtrail(*args: object, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run `hashtrail ARGS...` in its own process; the completed process (exit code,
    stdout, stderr), never raising on a non-zero exit: the tests judge the outcome."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(_HOST), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, "-m", "hashtrail.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
