"""Signed firmware updates end to end on virtual devices (issue 16).

Real firmware in the unix port at the board's heap budget, a real pty, packages made by
the release code (compiled once, signed per case). Every refusal must leave the device
on its old firmware, still logging, with a chain that verifies from entry 0; the good
update must come back with the new version and an update entry in the chain.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from hashtrail.cli import main as cli
from hashtrail.collector.export import collector_key
from hashtrail.collector.store import Store
from hashtrail.device import imagefs
from hashtrail.device.boards import load_board
from hashtrail.device.link import DeviceInfo, Link, open_serial
from hashtrail.device.release import ReleaseKey, compile_release, keygen, load_key
from hashtrail.device.update import UpdateRefused, send_package, update, wait_version
from hashtrail.formats import manifest
from hashtrail.formats.entry import KIND_UPDATE, KIND_UPDATE_REVERTED, parse_entry
from hashtrail.sim import VirtualDevice, provision

pytestmark = pytest.mark.e2e

BOARD = load_board("unix")
OLD = "0.1.0"
NEW = "0.2.0"


@dataclass
class Rel:
    key: ReleaseKey
    other: ReleaseKey
    files: dict[str, bytes]
    dir: Path

    def package(self, counter: int, *, board: str = "unix", key: ReleaseKey | None = None,
                version: str = NEW) -> bytes:
        k = key or self.key
        m = manifest.sign_manifest(manifest.encode_payload(version, counter, board,
                                                           self.files), k.pub, k.sign)
        return manifest.pack(m, list(self.files.values()))

    def file(self, raw: bytes, name: str) -> Path:
        p = self.dir / name
        p.write_bytes(raw)
        return p


@pytest.fixture(scope="module")
def rel(tmp_path_factory: pytest.TempPathFactory) -> Rel:
    d = tmp_path_factory.mktemp("release")
    keygen(d / "release.key")
    keygen(d / "other.key")
    files = compile_release("unix", NEW, d / "build")
    return Rel(load_key(d / "release.key"), load_key(d / "other.key"), files, d)


def make_device(tmp: Path, name: str, pins: list[bytes]) -> VirtualDevice:
    dev = VirtualDevice(tmp, name, board=BOARD)
    dev.dir.mkdir(parents=True, exist_ok=True)
    dev.image_path.write_bytes(provision.sampling_image(BOARD, 0.1))

    def pin(fs: object) -> None:
        fs.makedirs("/ht", exist_ok=True)  # type: ignore[attr-defined]
        with fs.open(manifest.RELEASE_KEYS_PATH, "wb") as f:  # type: ignore[attr-defined]
            f.write(b"".join(pins))

    imagefs.edit_image(dev.image_path, BOARD.block_size, pin)
    dev.start()
    provision.wait_ready(dev, 30.0)
    return dev


@pytest.fixture
def dev(tmp_path: Path, rel: Rel) -> Iterator[VirtualDevice]:
    d = make_device(tmp_path, "upd", [rel.key.pub])
    yield d
    d.stop()


def hello(dev: VirtualDevice) -> DeviceInfo:
    with open_serial(dev.port) as link:
        return link.hello()


def still_logging(dev: VirtualDevice, before: DeviceInfo, fw: str) -> DeviceInfo:
    """The device runs `fw` and appended entries since `before`."""
    deadline = time.monotonic() + 10
    while True:
        info = hello(dev)
        assert info.fw == fw
        if (info.last_seq or 0) > (before.last_seq or 0) + 2:
            return info
        assert time.monotonic() < deadline, "the device stopped logging"
        time.sleep(0.2)


def collect_all(dev: VirtualDevice, store: Path) -> list[bytes]:
    """Enroll (first time) and collect: the collector verifies the whole chain and
    refuses anything broken (exit 1). Returns every accepted entry's bytes."""
    if not store.exists():
        assert cli(["enroll", "--port", dev.port, "--store", str(store), "--label", "d"]) == 0
    assert cli(["collect", "--port", dev.port, "--store", str(store), "--no-ack"]) == 0
    info = hello(dev)
    with Store.open(store) as st:
        recs = st.accepted_records(info.device_id)
        seqs = [r.seq for r in recs]
        assert seqs == list(range(len(seqs))), "an entry is missing or repeated"
        return [r.body for r in recs]


def refused(dev: VirtualDevice, raw: bytes, reason: str) -> None:
    before = hello(dev)
    with open_serial(dev.port) as link, pytest.raises(UpdateRefused, match=reason):
        send_package(link, raw)
    still_logging(dev, before, before.fw)


def test_good_update_installs_logs_on_and_is_in_the_chain(
        tmp_path: Path, dev: VirtualDevice, rel: Rel, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "c.db"
    collect_all(dev, store)
    pkg = rel.file(rel.package(5), "good.htu")
    before = hello(dev)
    assert before.fw == OLD
    t0 = time.monotonic()
    capsys.readouterr()
    assert cli(["update", "--port", dev.port, str(pkg)]) == 0
    took = time.monotonic() - t0
    out = capsys.readouterr().out
    assert f"{OLD} -> {NEW}" in out
    print(f"update of {pkg.stat().st_size} bytes took {took:.1f} s")
    after = still_logging(dev, hello(dev), NEW)
    assert after.device_id == before.device_id
    entries = [parse_entry(e) for e in collect_all(dev, store)]
    ups = [e for e in entries if e.kind == KIND_UPDATE]
    assert len(ups) == 1
    u = ups[0]
    m = manifest.parse_package(pkg.read_bytes()).manifest
    assert u.body == {1: OLD, 2: NEW, 3: 5, 4: m.hash}
    assert u.fw == NEW
    assert all(e.fw == NEW for e in entries if e.seq > u.seq)
    assert entries[-1].fw == NEW
    # Replaying the same package, or an older counter, is a rollback: refused.
    refused(dev, rel.package(5), "not above the installed 5")
    refused(dev, rel.package(4), "not above the installed 5")
    collect_all(dev, store)
    # The ledger's firmware history: the update entry, as the device signed it.
    hist = ledger_firmware(tmp_path, store)
    assert [(h["device"], h["fw"]) for h in hist] == [(after.device_id, NEW)]
    assert [(x["seq"], x["old"], x["new"], x["counter"], x["manifest"], x["findings"])
            for x in hist[0]["updates"]] == [(u.seq, OLD, NEW, 5, m.hash.hex(), [])]


def ledger_firmware(tmp: Path, store: Path) -> list[dict[str, Any]]:
    """Export the store, reconcile it into a new ledger (which must verify) and return
    `ledger firmware --json`."""
    led, bundle = str(tmp / "l.db"), str(tmp / "b.jsonl")
    assert cli(["export", "--store", str(store), "--out", bundle]) == 0
    assert cli(["ledger", "init", "--ledger", led, "--origin", "test.example/u"]) == 0
    assert cli(["ledger", "trust", "--ledger", led, collector_key(store)]) == 0
    assert cli(["reconcile", "--ledger", led, bundle]) == 0
    assert cli(["verify", "--ledger", led]) == 0
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["ledger", "firmware", "--ledger", led, "--json"]) == 0
    return cast(list[dict[str, Any]], json.loads(out.getvalue()))


def test_refusals_leave_the_device_logging_and_nothing_lost(
        tmp_path: Path, dev: VirtualDevice, rel: Rel) -> None:
    store = tmp_path / "c.db"
    collect_all(dev, store)
    # Signed by a key the device does not pin (the package names it as its kid).
    refused(dev, rel.package(5, key=rel.other), "not signed by a pinned release key")
    # Not signed at all: a valid COSE shape with a zero signature.
    raw = bytearray(rel.package(5))
    n = struct.unpack_from("<I", raw, 4)[0]
    m = manifest.parse_manifest(bytes(raw[8:8 + n]))
    at = 8 + n - 64
    assert raw[at:8 + n] == m.signature
    raw[at:8 + n] = bytes(64)
    refused(dev, bytes(raw), "not signed by a pinned release key")
    # For another board.
    refused(dev, rel.package(5, board="esp32"), "for board esp32")
    # A counter of the firmware already there (nothing installed yet: 0) is fine, but a
    # tampered file is refused when its hash is checked, mid-transfer.
    raw = bytearray(rel.package(6))
    raw[-10] ^= 0x01
    refused(dev, bytes(raw), "SHA-256 differs")
    # A transfer cut short: the host stops after half the package; the device keeps
    # logging, and COMMIT of an incomplete package is refused.
    good = rel.package(7)
    before = hello(dev)
    with open_serial(dev.port) as link:
        send_package(link, good[:len(good) // 2], commit=False)
    still_logging(dev, before, OLD)
    entries = collect_all(dev, store)
    assert all(parse_entry(e).fw == OLD for e in entries)
    # After all that, the good package still installs (the cut transfer's staging is
    # swept at the next BEGIN).
    with open_serial(dev.port) as link:
        send_package(link, good)
        assert wait_version(link, NEW, 60).fw == NEW
    entries = collect_all(dev, store)
    assert [parse_entry(e).body[3] for e in entries if parse_entry(e).kind == KIND_UPDATE] \
        == [7]


def test_a_board_without_ota_partitions_refuses_an_image_package(
        tmp_path: Path, dev: VirtualDevice, rel: Rel,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`hashtrail update` with a full-image package (manifest key 5) on the virtual board,
    which has no esp32 module: the device checks the manifest (signature, counter,
    board), then refuses for want of OTA partitions; it keeps its firmware and logs on."""
    from appimg import app_image

    image = app_image(NEW, 20000)
    m = manifest.sign_manifest(manifest.encode_image_payload(NEW, 5, "unix", image),
                               rel.key.pub, rel.key.sign)
    pkg = rel.file(manifest.pack(m, [image]), "image.htu")
    before = hello(dev)
    capsys.readouterr()
    assert cli(["update", "--port", dev.port, str(pkg)]) == 1
    err = capsys.readouterr().err
    assert "refused the update" in err and "no OTA partitions" in err
    still_logging(dev, before, OLD)
    # Its signature is checked first: another key's image is refused for that.
    m = manifest.sign_manifest(manifest.encode_image_payload(NEW, 5, "unix", image),
                               rel.other.pub, rel.other.sign)
    refused(dev, manifest.pack(m, [image]), "not signed by a pinned release key")
    collect_all(dev, tmp_path / "c.db")


def test_device_without_pinned_key_refuses(tmp_path: Path, rel: Rel) -> None:
    d = make_device(tmp_path, "nokey", [])
    try:
        refused(d, rel.package(5), "pinned release keys are malformed|no release key")
    finally:
        d.stop()


def test_update_cli_prints_the_reason_and_exits_1(
        tmp_path: Path, dev: VirtualDevice, rel: Rel,
        capsys: pytest.CaptureFixture[str]) -> None:
    pkg = rel.file(rel.package(3, board="esp32"), "esp32.htu")
    capsys.readouterr()
    assert cli(["update", "--port", dev.port, str(pkg)]) == 1
    err = capsys.readouterr().err
    assert "refused the update" in err and "board esp32" in err
    assert hello(dev).fw == OLD


def test_package_parser_refuses_a_tampered_file(rel: Rel) -> None:
    raw = bytearray(rel.package(2))
    assert manifest.parse_package(bytes(raw)).manifest.counter == 2
    raw[-1] ^= 0xFF
    with pytest.raises(Exception, match="does not match"):
        manifest.parse_package(bytes(raw))
    h = hashlib.sha256(bytes(rel.package(2))[8:]).digest()
    assert len(h) == 32
    assert isinstance(Link, type)
    assert callable(update)


def test_deploy_pins_the_release_key_and_a_cli_release_installs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README path: keygen, deploy --release-key, release build, update."""
    key = tmp_path / "release.key"
    assert cli(["release", "keygen", "--out", str(key)]) == 0
    pub = capsys.readouterr().out.strip()
    assert len(pub) == 130 and load_key(key).pub.hex() == pub
    assert cli(["release", "keygen", "--out", str(key)]) == 2  # never overwritten
    pkg = tmp_path / "fw-0.3.0.htu"
    assert cli(["release", "build", "--key", str(key), "--version", "0.3.0", "--counter", "9",
                "--board", "unix", "--out", str(pkg), "--json"]) == 0
    assert '"counter": 9' in capsys.readouterr().out
    dev = VirtualDevice(tmp_path, "dep0", board=BOARD)
    dev.dir.mkdir(parents=True, exist_ok=True)
    dev.image_path.write_bytes(provision.sampling_image(BOARD, 0.1))
    with dev:
        provision.wait_ready(dev, 30.0)
        # Before the key is pinned, the device refuses any package.
        assert cli(["update", "--port", dev.port, str(pkg)]) == 1
        assert "no release key pinned" in capsys.readouterr().err
        assert cli(["deploy", "--board", "unix", "--port", dev.port,
                    "--release-key", pub]) == 0
        capsys.readouterr()
        assert cli(["update", "--port", dev.port, str(pkg), "--json"]) == 0
        assert '"new_version": "0.3.0"' in capsys.readouterr().out
        info = hello(dev)  # deploy wrote the board's own /board.json: a reading per 10 s
        assert info.fw == "0.3.0" and info.board == "unix"
        # A second deploy (firmware 0.1.0 from the checkout, by USB) is the owner's
        # choice, not an update: the counter stays, so package 9 is not accepted again.
        assert cli(["deploy", "--board", "unix", "--port", dev.port]) == 0
        assert hello(dev).fw == OLD
        assert cli(["update", "--port", dev.port, str(pkg)]) == 1
        assert "not above the installed 9" in capsys.readouterr().err


def test_power_cuts_during_the_transfer_and_right_after_the_commit(
        tmp_path: Path, dev: VirtualDevice, rel: Rel) -> None:
    """kill -9 of the VM (the board losing power) mid-transfer keeps the old firmware;
    right after COMMIT's reply (the device is resetting, boot.py may be renaming) the
    new one comes up. Finer cuts, at every flash operation: tests/firmware/test_update.py."""
    store = tmp_path / "c.db"
    collect_all(dev, store)
    pkg = rel.package(11)
    with open_serial(dev.port) as link:
        send_package(link, pkg[:len(pkg) // 3], commit=False)
    dev.restart("power_on")
    provision.wait_ready(dev, 30.0)
    assert hello(dev).fw == OLD
    with open_serial(dev.port) as link:
        send_package(link, pkg)
    dev.restart("power_on")  # COMMIT answered: the marker is durable
    with open_serial(dev.port) as link:
        assert wait_version(link, NEW, 60).fw == NEW
    still_logging(dev, hello(dev), NEW)
    entries = [parse_entry(e) for e in collect_all(dev, store)]
    assert [e.body[3] for e in entries if e.kind == KIND_UPDATE] == [11]


def test_a_signed_firmware_that_cannot_start_is_rolled_back(
        tmp_path: Path, dev: VirtualDevice, rel: Rel) -> None:
    """Signed and intact, but broken (a module missing): the new firmware never opens its
    log, so after its second reset boot.py goes back to the old one, which logs on; the
    counter was never stored and no update entry is in the chain, but the old firmware's
    update-reverted entry is (kind 8), and the ledger lists the failed update."""
    store = tmp_path / "c.db"
    collect_all(dev, store)
    broken = {p: d for p, d in rel.files.items() if not p.endswith("/devlog.mpy")}
    k = rel.key
    m = manifest.sign_manifest(manifest.encode_payload(NEW, 12, "unix", broken), k.pub, k.sign)
    with open_serial(dev.port) as link:
        send_package(link, manifest.pack(m, list(broken.values())))
    time.sleep(2)
    for _ in range(2):  # the board's owner (or its watchdog) resets it
        dev.restart("hard")
        time.sleep(1.5)
    info = provision.wait_ready(dev, 30.0)
    assert info.fw == OLD
    still_logging(dev, info, OLD)
    entries = [parse_entry(e) for e in collect_all(dev, store)]
    assert not [e for e in entries if e.kind == KIND_UPDATE]
    mh = manifest.parse_package(manifest.pack(m, list(broken.values()))).manifest.hash
    rev = [e for e in entries if e.kind == KIND_UPDATE_REVERTED]
    assert [(e.fw, e.body) for e in rev] == [
        (OLD, {1: NEW, 2: OLD, 3: 12, 4: mh, 5: "not started in 3 boots"})]
    hist = ledger_firmware(tmp_path, store)
    assert [(x["seq"], x["old"], x["new"], x["counter"], x["manifest"], x["reverted"])
            for x in hist[0]["updates"]] == [(rev[0].seq, OLD, NEW, 12, mh.hex(),
                                              "not started in 3 boots")]
    assert hist[0]["fw"] == OLD
    # The same counter can be installed by a working package.
    assert cli(["update", "--port", dev.port, str(rel.file(rel.package(12), "ok.htu"))]) == 0


def test_enroll_pins_a_first_release_key_and_only_that_key_installs(
        tmp_path: Path, rel: Rel, capsys: pytest.CaptureFixture[str]) -> None:
    """`enroll --release-key` pins the key on a device that has none (over its USB
    console: UPDATE PIN), so updates signed with it install and others do not; a second
    enroll with the same key confirms it, one with another key is refused on one line
    and records nothing (deploy --release-key replaces pinned keys)."""
    dev = make_device(tmp_path, "pin", [])
    try:
        store = tmp_path / "c.db"
        key_file = rel.file(rel.key.pub.hex().encode(), "release.pub")
        capsys.readouterr()
        assert cli(["enroll", "--port", dev.port, "--store", str(store), "--label", "p",
                    "--release-key", str(key_file), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["release_key"] == {"pub": rel.key.pub.hex(), "pinned_now": True}
        assert cli(["enroll", "--port", dev.port, "--store", str(store), "--label", "p",
                    "--release-key", rel.key.pub.hex()]) == 0
        assert "was already pinned" in capsys.readouterr().out
        other = tmp_path / "other.db"
        assert cli(["enroll", "--port", dev.port, "--store", str(other), "--label", "p",
                    "--release-key", rel.other.pub.hex()]) == 1
        err = capsys.readouterr().err
        assert "refused the release key: another release key is pinned" in err, err
        with Store.open(other) as st:
            assert st.enrollments() == []
        refused(dev, rel.package(2, key=rel.other), "not pinned|release key")
        with open_serial(dev.port) as link:
            send_package(link, rel.package(2))
            assert wait_version(link, NEW, 30.0).fw == NEW
    finally:
        dev.stop()
