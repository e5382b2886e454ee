"""A device's firmware history: the rules a genuine firmware keeps (pure, no I/O).

Why one module: the collector's chain verifier (chainverify), reconcile and
`verify --ledger` must hold a device to the same rules, or a downgrade the ledger lets
pass would be one the collector refuses, or the other way round. The rules
(docs/FORMATS.md "Update package"):

  fw_changed          an entry claims another firmware version than the entry before it
                      in the same boot: a firmware changes only with a reboot, so the
                      entry claims a version the device never installed
  fw_update_mismatch  an update entry (kind 7) is written by the version it installed;
                      one written by another version claims an install that did not run.
                      Likewise an update-reverted entry (kind 8: boot.py took an update
                      back) is written by the version it says runs again
  fw_downgrade        an update entry's security counter is below one installed before,
                      or equal with another manifest (a rollback); the same counter and
                      manifest twice is the device repeating the entry after a power cut

A version change between boots with no update entry is a USB deploy, the owner's act,
and passes; so is the version going back at a reboot before an update-reverted entry
(the update never installed: its counter was never stored, docs/DEVICE.md).
`FirmwareRules` is fed entries in seq order; a caller that starts mid-chain (reconcile,
a chunk at a time) first gives it the device's earlier update entries
(`install`), so "installed before" means the whole accepted history.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from hashtrail.formats.entry import (
    KIND_UPDATE,
    KIND_UPDATE_REVERTED,
    REVERTED_COUNTER,
    REVERTED_FAILED,
    REVERTED_MANIFEST,
    REVERTED_REASON,
    REVERTED_RUNNING,
    UPDATE_COUNTER,
    UPDATE_MANIFEST,
    UPDATE_NEW,
    UPDATE_OLD,
    Entry,
)


class FwFinding(NamedTuple):
    seq: int
    code: str
    text: str


class FwUpdate(NamedTuple):
    """One update entry of a device's history, as the ledger lists it: an update
    installed (kind 7), or one boot.py took back (kind 8: `reverted` gives the device's
    reason; `old` is the version running again, `new` the one that failed)."""

    seq: int
    t: int | None
    old: str
    new: str
    counter: int
    manifest: bytes
    findings: tuple[str, ...]     # the rule codes this entry breaks (empty: genuine)
    reverted: str | None = None


class FirmwareRules:
    """The rules over one device's entries, in seq order (see the module doc)."""

    def __init__(self) -> None:
        self.installed: tuple[int, bytes] | None = None   # highest (counter, manifest)

    def install(self, e: Entry) -> None:
        """Take an update entry already judged (an earlier part of the history)."""
        counter, manifest = int(e.body[UPDATE_COUNTER]), bytes(e.body[UPDATE_MANIFEST])
        top = self.installed
        if top is None or counter > top[0]:
            self.installed = (counter, manifest)

    def check(self, last: Entry | None, e: Entry) -> list[FwFinding]:
        """What entry `e` breaks, `last` being the entry just before it (seq - 1), or
        None when that one is unknown (the walk starts at `e`, or after a gap)."""
        out: list[FwFinding] = []
        if e.kind == KIND_UPDATE:
            out += self._update(e)
        elif e.kind == KIND_UPDATE_REVERTED and e.fw != e.body[REVERTED_RUNNING]:
            out.append(FwFinding(e.seq, "fw_update_mismatch", (
                f"update-reverted entry {e.seq} says firmware "
                f"{e.body[REVERTED_RUNNING]!r} runs again but was written by {e.fw!r}")))
        if last is not None and last.seq == e.seq - 1 and last.boot == e.boot \
                and last.fw != e.fw:
            out.append(FwFinding(e.seq, "fw_changed", (
                f"entry {e.seq} claims firmware {e.fw!r}, entry {last.seq} of the same "
                f"boot {last.fw!r}: a firmware changes only with a reboot")))
        return out

    def check_all(self, last: Entry | None, entries: Iterable[Entry]) -> list[FwFinding]:
        """`check` of each of `entries` (in seq order) against the one before it, the
        first against `last`; the findings in order.

        Why: reconcile judges thousands of entries at a time, nearly all of which break
        nothing. An entry that is neither an update nor an update-reverted entry, and
        claims the firmware of the entry before it (or follows none), can break no rule,
        so `check` runs only for the others."""
        out: list[FwFinding] = []
        for e in entries:
            k = e.kind
            if k == KIND_UPDATE or k == KIND_UPDATE_REVERTED or (
                    last is not None and last.fw != e.fw):
                out += self.check(last, e)
            last = e
        return out

    def _update(self, e: Entry) -> list[FwFinding]:
        out: list[FwFinding] = []
        new, counter = e.body[UPDATE_NEW], int(e.body[UPDATE_COUNTER])
        manifest = bytes(e.body[UPDATE_MANIFEST])
        if e.fw != new:
            out.append(FwFinding(e.seq, "fw_update_mismatch", (
                f"update entry {e.seq} installs firmware {new!r} but was written by "
                f"{e.fw!r}")))
        top = self.installed
        if top is not None and (counter < top[0] or (counter == top[0]
                                                     and manifest != top[1])):
            out.append(FwFinding(e.seq, "fw_downgrade", (
                f"update entry {e.seq} installs security counter {counter} after "
                f"counter {top[0]} was installed (a rollback)")))
        self.install(e)
        return out


def update_history(entries: Iterable[Entry]) -> list[FwUpdate]:
    """The update and update-reverted entries among `entries` (a device's, in seq
    order), each with the
    rules it breaks against the updates before it (fw_update_mismatch, fw_downgrade;
    fw_changed needs every entry, which `verify --ledger` walks)."""
    rules = FirmwareRules()
    out: list[FwUpdate] = []
    for e in entries:
        b = e.body
        if e.kind == KIND_UPDATE:
            found = rules.check(None, e)
            out.append(FwUpdate(e.seq, e.t, str(b[UPDATE_OLD]), str(b[UPDATE_NEW]),
                                int(b[UPDATE_COUNTER]), bytes(b[UPDATE_MANIFEST]),
                                tuple(f.code for f in found)))
        elif e.kind == KIND_UPDATE_REVERTED:
            found = rules.check(None, e)
            out.append(FwUpdate(e.seq, e.t, str(b[REVERTED_RUNNING]),
                                str(b[REVERTED_FAILED]), int(b[REVERTED_COUNTER]),
                                bytes(b[REVERTED_MANIFEST]), tuple(f.code for f in found),
                                str(b[REVERTED_REASON])))
    return out
