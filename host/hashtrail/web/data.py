"""What the fleet view shows, read from the ledger through its facade (no SQL here) and
handed to the pages as plain JSON-ready dicts.

Why the status comes from `verify_ledger` and nothing else: the page must say what
`hashtrail verify --json` says (ok, unprotected until a checkpoint, forked, revoked,
entries held back, problems), so it runs the same function and shows its report; the
fleet rows only add what the report leaves out (key fingerprint, firmware version of
the newest entry, the newest device checkpoint, and what the enrollment rests on:
`ledger.enrollment_state`, by the rules verify checks it with). Verifying re-checks
every signature, so `FleetView` keeps the last result for one ledger state
(`state_key`) and runs it again only when that state changes.

Everything a device supplied (labels, sensor names, units, reasons) is passed on as
data; the pages put it into the DOM as text, never as markup.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.formats import note
from hashtrail.formats.checkpoint import parse_checkpoint
from hashtrail.formats.entry import KIND_NAMES, KIND_READING, Entry, parse_entry
from hashtrail.formats.keys import key_fingerprint, parse_device_id
from hashtrail.ledger.enrollment_state import enrollment_state, trusted_map
from hashtrail.ledger.ledger_db import Device, Ledger, LedgerError
from hashtrail.ledger.ledger_verify import LedgerReport, verify_ledger
from hashtrail.ledger.proof import build_inclusion_proof

PAGE_MAX = 500          # entries per page of the entries table, at most
READINGS_KEPT = 300_000  # decoded readings kept for plots (some 30 MB), all devices


class NotFound(HashtrailError):
    """A device, entry or document the ledger does not hold (an HTTP 404)."""


def device_id_or_404(text: str) -> str:
    try:
        return parse_device_id(text)
    except HashtrailError:
        raise NotFound(f"not a device id: {text!r}") from None


def _device(led: Ledger, did: str) -> Device:
    dev = led.device(did)
    if dev is None:
        raise NotFound(f"device {did} is not in this ledger")
    return dev


def state_key(led: Ledger) -> tuple[Any, ...]:
    """What changes whenever verify's answer can: the tree, every device's tip, fork
    flag, revocation and enrollment (the fields its collector signed, and the
    signature), the held entries, the device checkpoints and evidence, the trusted
    collectors."""
    st = led.storage
    with st.snapshot():
        devs = tuple((d.device_id, d.tip_seq, d.tip_head, d.forked, d.revoked_at, d.label,
                      d.board, d.fw, d.enrolled_at, d.enroll_key, d.enroll_sig)
                     for d in led.devices())
        held = sum(1 for _ in st.scan_pending())
        cps = sum(1 for _ in st.scan_device_checkpoints())
        ev = sum(1 for _ in st.scan_evidence())
        return (led.size, devs, held, cps, ev, len(led.checkpoints()),
                tuple(led.trusted_collectors()))


# -- the fleet ---------------------------------------------------------------------------

@dataclass
class Fleet:
    """One verification of the whole ledger, and the fleet rows built beside it."""

    key: tuple[Any, ...]
    report: LedgerReport
    verify_json: dict[str, Any]     # exactly `hashtrail verify --json` (no trusted key)
    rows: list[dict[str, Any]]
    by_id: dict[str, dict[str, Any]]
    seconds: float
    at: int


def _last_collection(led: Ledger, dev: Device) -> dict[str, Any] | None:
    """The newest device checkpoint: the device's signed head at a collection."""
    cps = led.storage.device_checkpoints(dev.device_id, max(dev.tip_seq, 0)) or \
        led.storage.device_checkpoints(dev.device_id, 0)
    if not cps:
        return None
    c = cps[-1]
    try:
        t = parse_checkpoint(c.cose).t
    except HashtrailError:
        t = None
    return {"seq": c.seq, "t": t}


def _fw(led: Ledger, dev: Device) -> str:
    """The firmware version the newest accepted entry states (device-signed); the
    enrollment's (the operator's word) when the device has no entry yet."""
    if dev.tip_seq < 0:
        return dev.fw
    e = led.entry(dev.device_id, dev.tip_seq)
    try:
        return dev.fw if e is None else parse_entry(e.body).fw
    except HashtrailError:
        return dev.fw


def build_fleet(led: Ledger) -> Fleet:
    """Verify the ledger (verify_ledger, as `hashtrail verify` does) and build a row per
    device from its report."""
    t0 = time.monotonic()
    key = state_key(led)
    rep = verify_ledger(led)
    vj = rep.as_json()
    evidence: dict[str, int] = {}
    for did, *_ in led.storage.scan_evidence():
        evidence[str(did)] = evidence.get(str(did), 0) + 1
    devs = {d.device_id: d for d in led.devices()}
    trusted = trusted_map(led.trusted_collectors())
    rows = []
    for r in vj["devices"]:
        dev = devs.get(r["device_id"])
        if dev is None:
            continue
        rows.append({
            **r, "id": dev.device_id, "fingerprint": key_fingerprint(dev.pub),
            "fw": _fw(led, dev), "board": dev.board, "enrolled_at": dev.enrolled_at,
            "last_collection": _last_collection(led, dev),
            "evidence": evidence.get(dev.device_id, 0),
            "revoked_at": dev.revoked_at, "revoked_reason": dev.revoked_reason,
            "enrollment": enrollment_state(dev, trusted).to_json()})
    return Fleet(key, rep, vj, rows, {r["id"]: r for r in rows},
                 round(time.monotonic() - t0, 3), int(time.time()))


def fleet_json(f: Fleet, led: Ledger) -> dict[str, Any]:
    return {"origin": led.origin, "size": f.report.size, "root": f.report.root,
            "checkpoints": f.report.checkpoints, "ok": f.report.ok,
            "problems": f.report.problems, "notes": f.report.notes,
            "verified_at": f.at, "verify_seconds": f.seconds, "devices": f.rows}


# -- one device --------------------------------------------------------------------------

def _summary(e: Entry) -> tuple[list[dict[str, Any]], str]:
    """(readings, detail text) of an entry, for the entries table."""
    b = e.body
    if e.kind == KIND_READING:
        return [{"n": r[0], "u": r.get(1, ""), "v": r[2]} for r in b], ""
    if e.kind == 1:
        return [], f"reset cause {b[1]}"
    if e.kind == 3:
        return [], f"device key created; signing policy {b.get(2, 0)}"
    if e.kind == 6:
        return [], f"log altered from seq {b[1]}: {b[2]}"
    if e.kind == 7:
        return [], f"firmware update {b[1]} -> {b[2]} (counter {b[3]})"
    return [], ", ".join(f"{k}: {v!r}" for k, v in b.items())[:200]


def device_json(led: Ledger, f: Fleet, did: str) -> dict[str, Any]:
    dev = _device(led, did)
    row = f.by_id.get(did)
    evidence = [{"seq": int(seq), "digest": bytes(digest).hex()}
                for d, seq, digest, _doc in led.storage.scan_evidence() if d == did]
    held = [{"seq": h.seq, "entry_hash": h.entry_hash.hex(), "signed": h.sig is not None}
            for h in led.storage.pending(did, 0)]
    return {"device": row, "id": did, "label": dev.label, "pub": dev.pub.hex(),
            "tip_seq": dev.tip_seq, "evidence": evidence, "held": held,
            "origin": led.origin}


def entries_page(led: Ledger, did: str, offset: int, limit: int) -> dict[str, Any]:
    """Accepted entries newest first: `offset` entries skipped, at most `limit` shown."""
    dev = _device(led, did)
    limit = max(1, min(limit, PAGE_MAX))
    total = dev.tip_seq + 1
    hi = dev.tip_seq - max(offset, 0)
    out = []
    for seq in range(hi, max(hi - limit, -1), -1):
        e = led.entry(did, seq)
        if e is None:
            continue
        try:
            p = parse_entry(e.body)
            values, detail = _summary(p)
            kind, t, fw = KIND_NAMES.get(p.kind, str(p.kind)), p.t, p.fw
        except HashtrailError as ex:
            values, detail, kind, t, fw = [], f"unreadable entry: {ex}", "?", None, ""
        out.append({"seq": seq, "t": t, "kind": kind, "values": values, "detail": detail,
                    "fw": fw, "signed": e.sig is not None, "leaf_index": e.leaf_index,
                    "entry_hash": e.entry_hash.hex()})
    return {"total": total, "offset": offset, "limit": limit, "entries": out}


class Readings:
    """Each sensor of a device as columns for a plot, kept for the devices viewed last
    (up to READINGS_KEPT readings in all) and brought up to the device's tip by decoding
    only the entries accepted since (a device that appends every few seconds costs
    O(new entries) per view, not its whole history). Called from one thread only."""

    def __init__(self, budget: int = READINGS_KEPT) -> None:
        self.budget = budget
        self._cache: OrderedDict[str, Series] = OrderedDict()

    def get(self, led: Ledger, did: str) -> dict[str, Any]:
        dev = _device(led, did)
        s = self._cache.get(did)
        if s is None or s.tip > dev.tip_seq:     # new, or not this ledger's history
            s = self._cache[did] = Series()
        self._cache.move_to_end(did)
        if dev.tip_seq > s.tip:
            s.extend(led.entry_bodies(did, s.tip + 1, dev.tip_seq), s.tip + 1)
        while len(self._cache) > 1 and self.kept() > self.budget:
            self._cache.popitem(last=False)
        return s.to_json()

    def kept(self) -> int:
        return sum(s.tip + 1 for s in self._cache.values())

    def prefetch(self, led: Ledger, sizes: list[tuple[str, int]]) -> int:
        """Decode the largest devices first ((id, entries) pairs), as many as fit in the
        budget, so their first view does not wait; the number decoded."""
        done, room = 0, self.budget - self.kept()
        for did, n in sorted(sizes, key=lambda x: -x[1]):
            if n > room or did in self._cache:
                continue
            self.get(led, did)
            self._cache.move_to_end(did, last=False)    # fetched, not viewed: evict first
            done, room = done + 1, room - n
        return done


class Series:
    """One device's readings as columns: device time, seq, and a value column per SenML
    name and unit (None where an entry lacks that sensor). Entries whose device time is
    unknown are counted, not plotted."""

    def __init__(self) -> None:
        self.tip = -1
        self.times: list[int] = []
        self.seqs: list[int] = []
        self.cols: dict[tuple[str, str], list[float | None]] = {}
        self.untimed = 0
        self._json: dict[str, Any] | None = None

    def extend(self, bodies: list[bytes], first_seq: int) -> None:
        times, seqs, cols = self.times, self.seqs, self.cols
        for seq, raw in enumerate(bodies, first_seq):
            self.tip = seq
            try:
                e = parse_entry(raw)
            except HashtrailError:
                continue
            if e.kind != KIND_READING:
                continue
            if e.t is None:
                self.untimed += 1
                continue
            i = len(times)
            times.append(e.t)
            seqs.append(seq)
            for r in e.body:
                k = (r[0], r.get(1, ""))
                col = cols.get(k)
                if col is None:
                    col = cols[k] = [None] * i
                if len(col) == i:
                    col.append(r[2])
            for col in cols.values():
                if len(col) == i:
                    col.append(None)
        self._json = None

    def to_json(self) -> dict[str, Any]:
        """{t, seq, untimed, series: [{name, unit, v}]}, in device time order (a plot
        needs its x ascending; device time can go back, an anomaly verify reports)."""
        if self._json is None:
            # copies: the answer is serialised on another thread while the next
            # extend() may already append to these lists
            times, seqs = list(self.times), list(self.seqs)
            cols = {k: list(c) for k, c in self.cols.items()}
            if any(a > b for a, b in pairwise(times)):
                order = sorted(range(len(times)), key=times.__getitem__)
                times = [times[i] for i in order]
                seqs = [seqs[i] for i in order]
                cols = {k: [c[i] for i in order] for k, c in cols.items()}
            self._json = {"t": times, "seq": seqs, "untimed": self.untimed,
                          "series": [{"name": n, "unit": u, "v": c}
                                     for (n, u), c in cols.items()]}
        return self._json


def evidence_doc(led: Ledger, did: str, digest: str) -> str:
    for d, _seq, dg, doc in led.storage.scan_evidence():
        if d == did and bytes(dg).hex() == digest:
            return str(doc)
    raise NotFound(f"no fork evidence {digest!r} for device {did}")


def held_json(led: Ledger, did: str) -> dict[str, Any]:
    _device(led, did)
    return {"device": did, "held": [
        {"seq": h.seq, "entry_hash": h.entry_hash.hex(), "entry": h.body.hex(),
         "sig": None if h.sig is None else h.sig.hex()} for h in led.storage.pending(did, 0)]}


def proof_json(led: Ledger, did: str, seq: int) -> dict[str, Any]:
    """The inclusion proof `hashtrail ledger prove --json` prints (hashtrail-proof/3)."""
    try:
        return build_inclusion_proof(led, did, seq)
    except (ConfigError, LedgerError) as e:    # not in the ledger, or not yet under a
        raise NotFound(str(e)) from None       # signed checkpoint


# -- the ledger --------------------------------------------------------------------------

def _signatures(data: bytes, origin: str) -> list[dict[str, Any]]:
    """Each signature line of a stored checkpoint: the ledger's own (name = origin,
    64 bytes) or a witness cosignature (cosignature/v1: 8-byte time + 64 bytes)."""
    try:
        n = note.parse_note(data)
    except HashtrailError:
        return []
    out = []
    for s in n.sigs:
        cos = len(s.sig) == 72
        out.append({"name": s.name, "key_id": s.key_id.hex(),
                    "kind": "cosignature" if cos else "ledger" if s.name == origin
                    else "signature",
                    "timestamp": int.from_bytes(s.sig[:8], "big") if cos else None})
    return out


def ledger_json(led: Ledger, served: bytes | None = None) -> dict[str, Any]:
    """What the ledger page shows. `served`: the witness-cosigned checkpoint the server
    serves (`serve --witness`), whose cosignatures the ledger itself does not store:
    they are listed as the witnesses' latest, marked served."""
    origin = led.origin
    cps: list[dict[str, Any]] = []
    for size, data, created in led.storage.scan_checkpoints():
        cps.append({"size": int(size), "created": int(created),
                    "signatures": _signatures(bytes(data), origin)})
    witnesses: dict[str, dict[str, Any]] = {}
    for c in cps:
        for s in c["signatures"]:
            if s["kind"] == "cosignature":
                witnesses[s["name"]] = {"name": s["name"], "key_id": s["key_id"],
                                        "size": c["size"], "timestamp": s["timestamp"]}
    if served is not None:
        try:
            size = note.parse_checkpoint(note.parse_note(served).text).size
        except HashtrailError:
            size = -1
        for s in _signatures(served, origin):
            if s["kind"] == "cosignature" and size >= 0:
                witnesses[s["name"]] = {"name": s["name"], "key_id": s["key_id"],
                                        "size": size, "timestamp": s["timestamp"],
                                        "served": True}
    return {"origin": origin, "verifier_key": led.verifier.to_string(), "size": led.size,
            "root": led.root().hex(), "checkpoints": cps,
            "witnesses": sorted(witnesses.values(), key=lambda w: w["name"]),
            "collectors": [{"key": k, "name": n, "added_at": a}
                           for k, n, a in led.trusted_collectors()]}
