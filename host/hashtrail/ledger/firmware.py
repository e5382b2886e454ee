"""Each device's firmware history as the ledger holds it (`hashtrail ledger firmware`,
the FW column of `hashtrail devices list`).

Why from the entries themselves: an update entry (kind 7) is a device-signed leaf like
any other, so the history is read from the accepted entries (storage.update_entries
finds them without parsing the rest), with nothing derived kept beside them that
`verify --ledger` would have to re-check. Each update is judged by the same rules as
the collector's and the ledger verifier's (chain.fwrules): an update written by another
version than it installed, or a counter at or below one installed before, is listed
with the rule it breaks. The running version is the `fw` of the device's last accepted
entry (which also shows a USB deploy, which writes no update entry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hashtrail.chain.devicecheck import parse_entry
from hashtrail.chain.fwrules import FirmwareRules, FwUpdate, update_history
from hashtrail.errors import HashtrailError
from hashtrail.formats.entry import KIND_UPDATE, KIND_UPDATE_REVERTED, Entry
from hashtrail.formats.keys import parse_device_id
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.storage import LedgerStorage


@dataclass
class DeviceFirmware:
    device_id: str
    label: str
    fw: str | None                  # the last accepted entry's version (None: no entry)
    updates: list[FwUpdate] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"device": self.device_id, "label": self.label, "fw": self.fw,
                "updates": [{"seq": u.seq, "t": u.t, "old": u.old, "new": u.new,
                             "counter": u.counter, "manifest": u.manifest.hex(),
                             "findings": list(u.findings), "reverted": u.reverted}
                            for u in self.updates]}

    @property
    def installed(self) -> int:
        """How many updates installed (the reverted ones are listed, not counted)."""
        return sum(1 for u in self.updates if u.reverted is None)


def update_entries(db: LedgerStorage, device_id: str, hi: int) -> list[Entry]:
    """The device's accepted update and update-reverted entries at seq <= hi, in seq
    order."""
    out = []
    for _seq, body in db.update_entries(device_id, hi):
        e = parse_entry(body)
        if e.kind in (KIND_UPDATE, KIND_UPDATE_REVERTED):
            out.append(e)
    return out


def installed_rules(db: LedgerStorage, device_id: str, hi: int) -> FirmwareRules:
    """The firmware rules with every accepted update at seq <= hi installed: what a
    reconcile that continues the chain after `hi` holds the next entries to."""
    rules = FirmwareRules()
    for e in update_entries(db, device_id, hi):
        if e.kind == KIND_UPDATE:
            rules.install(e)
    return rules


def firmware_history(led: Ledger, device: str | None = None) -> list[DeviceFirmware]:
    """Every enrolled device's firmware history (or one device's), by device id."""
    if device is not None:
        device = parse_device_id(device)
        if led.device(device) is None:
            raise HashtrailError(f"device {device} is not in this ledger")
    db = led.storage
    out = []
    with db.snapshot():
        for d in led.devices():
            if device is not None and d.device_id != device:
                continue
            tip = None if d.tip_seq < 0 else db.entry(d.device_id, d.tip_seq)
            fw = None if tip is None else parse_entry(tip.body).fw
            ups = update_history(update_entries(db, d.device_id, d.tip_seq))
            out.append(DeviceFirmware(d.device_id, d.label, fw, ups))
    return out
