"""Sending a signed firmware update to a device over the serial protocol.

Why the host checks so little: the device is the judge (signature against its pinned
release key, counter, board, every file hash or the app image's hash read back from its
OTA partition; firmware/lib/hashtrail/update.py, board_ota.py). A package of files and
a full-image package travel the same way: the bytes are opaque here. The
host only parses the package so that a file that is not one fails here, sends its bytes
in order (UPDATE DATA, 86 bytes per request line), commits, and waits for the device to
come back from its reset answering HELLO with the new version. A refusal is the
device's own reason (`UpdateRefused`, exit 1); the device keeps logging either way.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hashtrail.device.link import (
    E_UPDATE,
    REP_INFO,
    REP_UPDATE,
    REQ_HELLO,
    REQ_UPDATE,
    UPDATE_BEGIN,
    UPDATE_CHUNK,
    UPDATE_COMMIT,
    UPDATE_DATA,
    UPDATE_PIN,
    DeviceError,
    DeviceInfo,
    Link,
    LinkError,
    open_serial,
    parse_info,
)
from hashtrail.device.release import read_package
from hashtrail.errors import HashtrailError, VerificationError, printable


class UpdateRefused(VerificationError):
    """The device refused the update package; its reason says why."""

    hint = "the device runs its old firmware and keeps logging; nothing was installed"


class PinRefused(VerificationError):
    """The device refused to pin a release key; its reason says why."""

    hint = ("nothing was pinned or enrolled; `hashtrail deploy --release-key` replaces "
            "the keys a device has pinned")


class UpdateError(HashtrailError):
    """The transfer or the restart did not complete."""

    hint = ("the device keeps its old firmware unless it said it committed; run "
            "`hashtrail update` again")


@dataclass(frozen=True)
class UpdateResult:
    device_id: str
    old_version: str
    new_version: str
    counter: int
    manifest_sha256: str
    bytes_sent: int
    image: bool  # a full firmware image (written to an OTA partition), not files
    transfer_s: float
    total_s: float
    info: DeviceInfo


def _op(link: Link, args: bytes, timeout: float,
        refused: type[VerificationError] = UpdateRefused, what: str = "the update") -> int:
    try:
        f = link.request(REQ_UPDATE, args, expect=REP_UPDATE, timeout=timeout)
    except DeviceError as e:
        if e.code == E_UPDATE:
            raise refused(f"the device refused {what}: {printable(e.reason)}") from None
        raise UpdateError(str(e)) from None
    if len(f.payload) != 5 or f.payload[0] != args[0]:
        raise UpdateError("malformed UPDATE reply from the device")
    return int(struct.unpack_from("<I", f.payload, 1)[0])


def pin_release_key(link: Link, pub: bytes) -> bool:
    """Pin `pub` (65 bytes SEC1) as the release key of a device that has none (UPDATE
    PIN, over its USB console only); a device with keys pinned only confirms that `pub`
    is one of them, and refuses another (`hashtrail deploy --release-key` replaces
    pinned keys). True when the key was pinned now, False when it already was."""
    return _op(link, bytes([UPDATE_PIN]) + pub, 10.0, PinRefused, "the release key") == 1


def send_package(link: Link, raw: bytes,
                 progress: Callable[[int, int], None] = lambda _a, _b: None, *,
                 commit: bool = True) -> None:
    """BEGIN, every byte of the package `raw` in order, COMMIT (unless `commit` is
    False). The device resets after its COMMIT reply."""
    _op(link, struct.pack("<BI", UPDATE_BEGIN, len(raw)), 10.0)
    off = 0
    while off < len(raw):
        piece = raw[off:off + UPDATE_CHUNK]
        nxt = _op(link, struct.pack("<BI", UPDATE_DATA, off) + piece, 5.0)
        if not off < nxt <= len(raw):
            raise UpdateError(f"the device is at offset {nxt}, not past {off}")
        off = nxt
        progress(off, len(raw))
    if commit:
        _op(link, struct.pack("<BI", UPDATE_COMMIT, 0), 10.0)


def wait_version(link: Link, version: str, wait_s: float) -> DeviceInfo:
    """HELLO until the device answers with `version` (it resets after COMMIT)."""
    deadline = time.monotonic() + wait_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            info = link.request(REQ_HELLO, expect=REP_INFO, timeout=1.0, retries=0)
        except LinkError:
            continue
        got = parse_info(info.payload)
        if got.fw == version:
            return got
        last = f"it reports firmware {got.fw}"
        time.sleep(0.2)
    raise UpdateError(f"the device did not come back with firmware {version} within "
                      f"{wait_s:g} s ({printable(last)})")


def update(port: str, package: Path, *, wait_s: float = 60.0,
           progress: Callable[[int, int], None] = lambda _a, _b: None) -> UpdateResult:
    """Send `package` to the device on `port` and wait for it to run the new version."""
    pkg = read_package(package)
    t0 = time.monotonic()
    with open_serial(port) as link:
        before = link.hello_waking()
        send_package(link, pkg.raw, progress)
        t1 = time.monotonic()
        info = wait_version(link, pkg.manifest.version, wait_s)
    return UpdateResult(device_id=before.device_id, old_version=before.fw,
                        new_version=info.fw, counter=pkg.manifest.counter,
                        manifest_sha256=pkg.manifest.hash.hex(), bytes_sent=len(pkg.raw),
                        image=pkg.manifest.image is not None,
                        transfer_s=t1 - t0, total_s=time.monotonic() - t0, info=info)
