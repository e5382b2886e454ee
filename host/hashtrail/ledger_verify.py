"""Re-verify a whole ledger from raw bytes: device chains, device checkpoints, Merkle log.

Why: a ledger file may come from someone else or have been edited on disk. This trusts
no derived column: it re-walks every device chain from its genesis, re-checks every
signature, rebuilds the Merkle tree from the leaves and compares it with the stored
tree and with every signed ledger checkpoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from . import merkle, note
from .devicecheck import KIND_TIME_SET, DeviceKey, parse_entry
from .errors import HashtrailError
from .ledger_db import Ledger, leaf_bytes


@dataclass
class DeviceReport:
    device_id: str
    label: str
    entries: int = 0
    first_t: int | None = None
    last_t: int | None = None
    pending: int = 0
    status: str = "ok"
    anomalies: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class LedgerReport:
    size: int
    root: str
    checkpoints: int
    devices: list[DeviceReport]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(not d.problems and not d.anomalies
                                         for d in self.devices)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "size": self.size, "root": self.root,
                "checkpoints": self.checkpoints, "problems": self.problems,
                "devices": [d.__dict__ for d in self.devices]}


def verify_ledger(led: Ledger, device: str | None = None) -> LedgerReport:
    devs = [d for d in led.devices() if device is None or d.device_id == device]
    if device is not None and not devs:
        raise HashtrailError(f"device {device} is not in this ledger")
    reports = [_device(led, d.device_id) for d in devs]
    size = led.size
    rep = LedgerReport(size, "", 0, reports)
    tree = merkle.MemoryTree()
    rows = led.db.execute("SELECT leaf_index, device_id, seq, body FROM entries "
                          "ORDER BY leaf_index")
    for i, (index, did, seq, body) in enumerate(rows):
        if index != i:
            rep.problems.append(f"leaf {i} is missing from the ledger")
            break
        tree.append(merkle.leaf_hash(leaf_bytes(did, int(seq), bytes(body))))
    if tree.size != size:
        rep.problems.append(f"ledger claims {size} leaves, holds {tree.size}")
    rep.root = tree.root().hex()
    try:
        if led.root(size) != tree.root():
            rep.problems.append("stored tree hashes do not match the leaves")
    except HashtrailError as e:
        rep.problems.append(str(e))
    verifier = led.verifier
    for data in led.checkpoints():
        rep.checkpoints += 1
        try:
            cp, _ = note.open_checkpoint(data, [verifier])
        except HashtrailError as e:
            rep.problems.append(f"ledger checkpoint: {e}")
            continue
        if cp.size > tree.size or tree.root(cp.size) != cp.root:
            rep.problems.append(f"signed checkpoint at size {cp.size} does not match the log")
    return rep


def _device(led: Ledger, did: str) -> DeviceReport:
    dev = led.device(did)
    assert dev is not None
    r = DeviceReport(did, dev.label)
    try:
        key = DeviceKey(dev.pub)
    except HashtrailError as ex:
        r.problems.append(f"enrolled key: {ex}")
        return r
    heads: dict[int, set[bytes]] = {}
    for s, cose in led.db.execute("SELECT seq, cose FROM dev_checkpoints WHERE device_id=?",
                                  (did,)):
        try:
            cp = key.checkpoint(bytes(cose))
        except HashtrailError as ex:
            r.problems.append(f"device checkpoint at seq {s}: {ex}")
            continue
        heads.setdefault(cp.seq, set()).add(cp.head)
    head, prev_t, covered = key.genesis_prev, None, -1
    hashes: dict[int, bytes] = {}
    for i, (seq, h, body, sig) in enumerate(led.db.execute(
            "SELECT seq, entry_hash, body, sig FROM entries WHERE device_id=? ORDER BY seq",
            (did,))):
        b = bytes(body)
        try:
            e = parse_entry(b)
            if seq != i or e.seq != seq:
                raise HashtrailError(f"gap: expected seq {i}")
            if e.prev != head:
                raise HashtrailError("broken prev link")
            if seq == 0:
                key.check_first_entry(e)
            hb = hashlib.sha256(b).digest()
            if hb != bytes(h):
                raise HashtrailError("stored entry hash does not match the entry bytes")
            if sig is not None and not key.signed(hb, bytes(sig)):
                raise HashtrailError("per-entry signature does not verify")
        except HashtrailError as ex:
            r.problems.append(f"seq {seq}: {ex}")
            break
        if e.t is not None:
            if prev_t is not None and e.t < prev_t and e.kind != KIND_TIME_SET:
                r.anomalies.append(f"seq {seq}: device time went backwards")
            r.first_t = e.t if r.first_t is None else r.first_t
            r.last_t = prev_t = e.t
        if sig is not None or hb in heads.get(seq, ()):
            covered = seq
        head, hashes[seq] = hb, hb
        r.entries += 1
    if r.entries and covered != r.entries - 1:
        r.problems.append(f"accepted entries after seq {covered} are not signed by the device")
    disagree = sorted(s for s, hs in heads.items()
                      if s in hashes and any(h != hashes[s] for h in hs))
    r.pending = int(led.db.execute("SELECT COUNT(*) FROM pending WHERE device_id=? AND seq>?",
                                   (did, r.entries - 1)).fetchone()[0])
    if r.pending:
        r.anomalies.append(f"{r.pending} entries held: gap after seq {r.entries - 1} "
                           "or not yet signed")
    if dev.forked:
        # One finding per forked device: the stored evidence and any disagreeing
        # checkpoint are the same fact (one key, two histories), not two problems.
        r.status = "forked"
        ev = [int(x) for (x,) in led.db.execute(
            "SELECT seq FROM evidence WHERE device_id=? ORDER BY seq", (did,))]
        at = sorted(set(ev)) or disagree
        where = ("seq " if len(at) == 1 else "seqs ") + ", ".join(map(str, at))
        extra = f", {len(disagree)} of its checkpoints off the accepted chain" \
            if disagree else ""
        r.anomalies.append(f"fork at {where}: the device key signed two different histories "
                           f"(evidence kept: {len(ev)}{extra}); see `hashtrail ledger "
                           f"evidence --device {did}`")
    else:
        r.anomalies += [f"seq {s}: a device checkpoint disagrees with the accepted chain, "
                        "and the device is not flagged as forked" for s in disagree]
    if dev.revoked_at is not None:
        r.status = "revoked"
    return r
