"""Test helpers: bundles from host-made device chains (tools/devchain.py), written to disk.

Bundles are signed by one fixed test collector key (`COLLECTOR`) and parsed back, so
they go through the real signature path; `trust(led)` makes a ledger trust that key,
which lets the bundles' enrollments count (docs/BUNDLE.md)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from hashtrail.collector.bundle import Bundle, BundleCheckpoint, parse_bundle, write_bundle
from hashtrail.collector.store import Enrollment, RawEntry
from hashtrail.formats.note import Signer
from hashtrail.ledger.ledger_db import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import devchain

Device = devchain.Device
COLLECTOR = Signer("collector-test", bytes(range(32)))   # fixed: reproducible bundles


def bundle(devs: list[Device], ranges: dict[str, tuple[int, int]] | None = None,
           cps: list[tuple[Device, bytes]] = (), name: str = "c1",  # type: ignore[assignment]
           enroll: bool = True, signer: Signer | None = COLLECTOR) -> Bundle:
    b = Bundle("00" * 8, name, 1_700_000_000)
    for d in devs:
        if enroll:
            b.enrollments.append(Enrollment(d.id_hex, d.pub, "lbl", "unix", "0.1.0", 1))
        lo, hi = (ranges or {}).get(d.id_hex, (0, len(d.entries)))
        b.entries += [(d.id_hex, RawEntry(s, body, sig)) for s, body, sig in d.entries[lo:hi]]
    b.checkpoints += [BundleCheckpoint(d.id_hex, c, None) for d, c in cps]
    if signer is None:
        return b
    buf = io.StringIO()
    write_bundle(b, buf, signer)
    return parse_bundle(io.BytesIO(buf.getvalue().encode("ascii")))


def trust(led: Ledger, signer: Signer = COLLECTOR) -> Ledger:
    led.trust_collector(signer.verifier(), "test collector")
    return led


def save(b: Bundle, path: Path) -> Path:
    """Write `b`; signed by COLLECTOR when it was (a parsed, signed bundle)."""
    with open(path, "w") as f:
        write_bundle(b, f, COLLECTOR if b.signer is not None else None)
    return path
