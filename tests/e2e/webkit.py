"""A small ledger for the fleet view's tests, through real reconciles of host-made device
chains (tools/devchain.py via tests/host/ledgerkit.py), with one device in each state
`hashtrail verify` reports: ok; unprotected until a checkpoint with entries held back;
forked (fork evidence kept); revoked. The first device's label and one of its sensor
names are markup, to show the pages keep them inert. `serving(path)` runs the real
`hashtrail serve` application (hashtrail.web) on a free loopback port."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
import ledgerkit
from hashtrail.collector.bundle import Bundle, parse_bundle, write_bundle
from hashtrail.formats.entry import KIND_READING, SENML_N, SENML_U, SENML_V
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile

ORIGIN = "example.com/fleet"
XSS_LABEL = '<script>window.__pwned = "label"</script><img src=x onerror="window.__pwned=1">'
XSS_SENSOR = '<img src=x onerror="window.__pwned=2">'


@dataclass
class FleetLedger:
    path: Path
    verifier_key: str
    ids: dict[str, str]         # role -> device id
    readings: dict[str, int]    # role -> timed readings made


def _labelled(b: Bundle, labels: dict[str, str]) -> Bundle:
    """`b` with each enrollment's label set, signed by the test collector."""
    b.enrollments[:] = [e._replace(label=labels[e.device_id]) for e in b.enrollments]
    buf = io.StringIO()
    write_bundle(b, buf, ledgerkit.COLLECTOR)
    return parse_bundle(io.BytesIO(buf.getvalue().encode("ascii")))


def make_fleet_ledger(path: Path) -> FleetLedger:
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
    with Ledger.create(path, ORIGIN) as led:
        ledgerkit.trust(led)
        b = ledgerkit.bundle(list(devs.values()), cps=cps, signer=None)
        reconcile(led, _labelled(b, labels))
        reconcile(led, ledgerkit.bundle([clone], enroll=False, name="c2",
                                        cps=[(clone, clone.checkpoint())]))
        led.revoke(revoked.id_hex, "reported stolen")
        key = led.verifier.to_string()
    return FleetLedger(path, key, {k: d.id_hex for k, d in devs.items()},
                       {"xss": 60, "cp": 45, "forked": 12, "revoked": 8})
