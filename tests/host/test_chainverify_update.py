"""The chain verifier on update entries (kind 7): a device's firmware history.

A genuine history passes (a firmware change at a reboot, with or without an update
entry: a USB deploy is the owner's act; the update entry repeated after a power cut).
Signed entries that no genuine firmware writes are flagged: a version change inside a
boot, an update entry written by another version than it installed, a counter below
one installed before (a rollback), or the same counter with another manifest."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest
from hashtrail.chain.chainverify import verify_chain
from hashtrail.formats import entry as en
from hashtrail.formats.records import MAGIC_ENTRY, Record

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import devchain

M1, M2 = hashlib.sha256(b"manifest 1").digest(), hashlib.sha256(b"manifest 2").digest()


class Chain:
    """Signed entries with the boot and firmware fields a test chooses."""

    def __init__(self) -> None:
        self.dev = devchain.Device(0xC0FFEE, per_entry_sig=True)
        self.recs: list[Record] = []
        self.add(1, "0.1.0", en.KIND_KEY_CREATED, {1: self.dev.pub, 2: 1})

    def add(self, boot: int, fw: str, kind: int, body: Any) -> None:
        seq = len(self.recs)
        raw = devchain.canon({en.KEY_V: en.VERSION, en.KEY_SEQ: seq, en.KEY_T: None,
                              en.KEY_UP: seq, en.KEY_BOOT: boot, en.KEY_PREV: self.dev.head,
                              en.KEY_FW: fw, en.KEY_KIND: kind, en.KEY_BODY: body})
        self.dev.head = hashlib.sha256(raw).digest()
        self.recs.append(Record(MAGIC_ENTRY, seq, raw, self.dev.sign(self.dev.head), "", 0))

    def boot(self, boot: int, fw: str) -> None:
        self.add(boot, fw, en.KIND_BOOT, {1: "hard"})

    def update(self, boot: int, fw: str, old: str, new: str, counter: int,
               manifest: bytes = M1) -> None:
        self.add(boot, fw, en.KIND_UPDATE, {1: old, 2: new, 3: counter, 4: manifest})

    def codes(self) -> list[tuple[str, int | None]]:
        rep = verify_chain(self.dev.pub, self.recs)
        return [(f.code, f.seq) for f in rep.findings]


def history() -> Chain:
    c = Chain()
    c.boot(1, "0.1.0")
    c.boot(2, "0.2.0")
    c.update(2, "0.2.0", "0.1.0", "0.2.0", 5)
    return c


def test_a_genuine_history_verifies() -> None:
    c = history()
    c.boot(3, "0.2.0")
    c.update(3, "0.2.0", "0.1.0", "0.2.0", 5)   # repeated after a cut: same counter, manifest
    c.boot(4, "0.1.9")                           # a USB deploy between boots
    c.boot(5, "0.3.0")
    c.update(5, "0.3.0", "0.1.9", "0.3.0", 6, M2)
    assert c.codes() == []


def test_version_changed_inside_a_boot() -> None:
    c = history()
    c.add(2, "9.9.9", en.KIND_ACK, {1: 0, 2: 0})
    assert c.codes() == [("fw_changed", 4)]


def test_update_written_by_another_version() -> None:
    c = Chain()
    c.boot(2, "0.1.0")
    c.update(2, "0.1.0", "0.1.0", "0.2.0", 5)
    assert ("fw_update_mismatch", 2) in c.codes()


@pytest.mark.parametrize(("counter", "manifest"), [(4, M2), (5, M2)])
def test_rollback_after_an_installed_counter(counter: int, manifest: bytes) -> None:
    c = history()
    c.boot(3, "0.1.5")
    c.update(3, "0.1.5", "0.2.0", "0.1.5", counter, manifest)
    assert c.codes() == [("fw_downgrade", 5)]


def reverted(c: Chain, boot: int, fw: str, running: str) -> None:
    c.add(boot, fw, en.KIND_UPDATE_REVERTED, {1: "0.3.0", 2: running, 3: 9, 4: M2,
                                              5: "not started in 3 boots"})


def test_an_update_taken_back_is_recorded_by_the_firmware_running_again() -> None:
    c = history()
    c.boot(3, "0.2.0")                   # 0.3.0 never started: boot.py took it back
    reverted(c, 3, "0.2.0", "0.2.0")
    c.update(3, "0.2.0", "0.1.0", "0.2.0", 5)   # its counter was never installed:
    c.boot(4, "0.3.0")                          # the same release can come again
    c.update(4, "0.3.0", "0.2.0", "0.3.0", 9, M2)
    assert c.codes() == []


def test_an_update_reverted_entry_written_by_another_version() -> None:
    c = history()
    reverted(c, 2, "0.2.0", "0.1.0")     # says 0.1.0 runs again, written by 0.2.0
    assert c.codes() == [("fw_update_mismatch", 4)]
