"""A small ledger for the fleet view's tests, through real reconciles of host-made device
chains (tools/devchain.py via tests/host/ledgerkit.py), with one device in each state
`hashtrail verify` reports: ok; unprotected until a checkpoint with entries held back;
forked (fork evidence kept); revoked. The first device's label and one of its sensor
names are markup, to show the pages keep them inert. `served(path)` runs the real
`hashtrail serve` application (hashtrail.web) on a free loopback port; `flipped_proofs`
makes the bit-flipped proofs every checker must refuse."""

from __future__ import annotations

import base64
import io
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
import ledgerkit
from hashtrail.collector.bundle import Bundle, parse_bundle, write_bundle
from hashtrail.formats.entry import KIND_READING, SENML_N, SENML_U, SENML_V
from hashtrail.ledger.http_app import serving_app
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from hashtrail.web.app import make_app

ORIGIN = "example.com/fleet"
XSS_LABEL = '<script>window.__pwned = "label"</script><img src=x onerror="window.__pwned=1">'
XSS_SENSOR = '<img src=x onerror="window.__pwned=2">'


@dataclass
class FleetLedger:
    path: Path | str
    verifier_key: str
    ids: dict[str, str]         # role -> device id
    readings: dict[str, int]    # role -> timed readings made
    devices: dict[str, ledgerkit.Device]

    def grow(self, role: str, n: int) -> None:
        """`n` more readings of a per-entry-signed device, through a real reconcile."""
        d = self.devices[role]
        lo = len(d.entries)
        d.readings(n)
        with Ledger.open_signing(self.path) as led:
            reconcile(led, ledgerkit.bundle([d], enroll=False, name="c3",
                                            ranges={d.id_hex: (lo, len(d.entries))}))


def _labelled(b: Bundle, labels: dict[str, str]) -> Bundle:
    """`b` with each enrollment's label set, signed by the test collector."""
    b.enrollments[:] = [e._replace(label=labels[e.device_id]) for e in b.enrollments]
    buf = io.StringIO()
    write_bundle(b, buf, ledgerkit.COLLECTOR)
    return parse_bundle(io.BytesIO(buf.getvalue().encode("ascii")))


def make_fleet_ledger(path: Path | str, key_file: Path | None = None) -> FleetLedger:
    """The ledger at `path` (a file, or a postgresql:// URL with its `key_file`)."""
    xss = ledgerkit.Device(101, per_entry_sig=True)
    xss.key_created()
    for i in range(60):
        xss.entry(KIND_READING, [{SENML_N: "temp", SENML_U: "Cel", SENML_V: 20 + i % 7},
                                 {SENML_N: XSS_SENSOR, SENML_U: "%RH", SENML_V: 40.5 + i % 3}])
    cp = ledgerkit.Device(102)                  # checkpoints only: unprotected, held back
    cp.readings(45)
    cps = [(cp, cp.checkpoint(seq=s)) for s in (19, 39)]
    forked = ledgerkit.Device(103, per_entry_sig=True)
    forked.readings(12)
    clone = forked.fork(6)
    clone.readings(4)
    revoked = ledgerkit.Device(104, per_entry_sig=True)
    revoked.readings(8)
    devs = {"xss": xss, "cp": cp, "forked": forked, "revoked": revoked}
    labels = {xss.id_hex: XSS_LABEL, cp.id_hex: "cold room 2", forked.id_hex: "truck 7",
              revoked.id_hex: "stolen sensor"}
    with Ledger.create(path, ORIGIN, key_file=key_file) as led:
        ledgerkit.trust(led)
        b = ledgerkit.bundle(list(devs.values()), cps=cps, signer=None)
        reconcile(led, _labelled(b, labels))
        reconcile(led, ledgerkit.bundle([clone], enroll=False, name="c2",
                                        cps=[(clone, clone.checkpoint())]))
        led.revoke(revoked.id_hex, "reported stolen")
        key = led.verifier.to_string()
    return FleetLedger(path, key, {k: d.id_hex for k, d in devs.items()},
                       {"xss": 60, "cp": 45, "forked": 12, "revoked": 8}, devs)


def served(path: Path | str) -> AbstractContextManager[str]:
    """The `hashtrail serve` application (tiles and fleet view) for the ledger at `path`,
    on a free loopback port, from a background thread; yields its URL."""
    return serving_app(lambda st: make_app(st.enter_context(Ledger.open(path))))


def flipped_proofs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The proof with one bit flipped, in each part a checker relies on (leaf: tag, id,
    seq, hash, entry; every path hash; root; index; size; device key and signature;
    the checkpoint's root line and its Ed25519 signature)."""
    def flip(h: str, i: int) -> str:
        b = bytearray(bytes.fromhex(h))
        b[i] ^= 0x01
        return b.hex()
    out: list[tuple[str, dict[str, Any]]] = []
    n = len(doc["leaf"]) // 2
    for i in sorted({0, 5, 21, 27, 30, 59, 60, n // 2, n - 1}):
        out.append((f"leaf byte {i}", {**doc, "leaf": flip(doc["leaf"], i)}))
    for j in range(len(doc["path"])):
        out.append((f"path hash {j}", {**doc, "path": [flip(h, 7) if k == j else h
                                                      for k, h in enumerate(doc["path"])]}))
    out.append(("root", {**doc, "root": flip(doc["root"], 0)}))
    out.append(("leaf index", {**doc, "leaf_index": doc["leaf_index"] ^ 1}))
    out.append(("tree size", {**doc, "tree_size": doc["tree_size"] + 1}))
    out.append(("device key", {**doc, "device": {**doc["device"],
                                                 "pub": flip(doc["device"]["pub"], 64)}}))
    ds = doc["device_signature"]
    if ds["kind"] == "entry":
        for i in (0, 33, 63):
            out.append((f"device signature byte {i}", {**doc, "device_signature": {
                **ds, "sig": flip(ds["sig"], i)}}))
    else:
        out.append(("device checkpoint", {**doc, "device_signature": {
            **ds, "cose": flip(ds["cose"], len(ds["cose"]) // 2 - 3)}}))
        if ds["chain"]:
            out.append(("chain link", {**doc, "device_signature": {
                **ds, "chain": [flip(ds["chain"][0], 10), *ds["chain"][1:]]}}))
    text, sigs = doc["checkpoint"].split("\n\n")
    lines = text.split("\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[31] ^= 0x01
    cp_root = "\n".join([*lines[:2], base64.b64encode(root).decode(), *lines[3:]])
    out.append(("checkpoint root line", {**doc, "checkpoint": cp_root + "\n\n" + sigs}))
    prefix, b64 = sigs.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 0x01
    out.append(("checkpoint signature", {**doc, "checkpoint": text + "\n\n" + prefix + " "
                                         + base64.b64encode(raw).decode() + "\n"}))
    return out
