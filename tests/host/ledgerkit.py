"""Test helpers: bundles from host-made device chains (tools/devchain.py), written to disk."""

from __future__ import annotations

import sys
from pathlib import Path

from hashtrail.bundle import Bundle, BundleCheckpoint, write_bundle
from hashtrail.store import Enrollment, RawEntry

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import devchain

Device = devchain.Device


def bundle(devs: list[Device], ranges: dict[str, tuple[int, int]] | None = None,
           cps: list[tuple[Device, bytes]] = (), name: str = "c1",  # type: ignore[assignment]
           enroll: bool = True) -> Bundle:
    b = Bundle("00" * 8, name, 1_700_000_000)
    for d in devs:
        if enroll:
            b.enrollments.append(Enrollment(d.id_hex, d.pub, "lbl", "unix", "0.1.0", 1))
        lo, hi = (ranges or {}).get(d.id_hex, (0, len(d.entries)))
        b.entries += [(d.id_hex, RawEntry(s, body, sig)) for s, body, sig in d.entries[lo:hi]]
    b.checkpoints += [BundleCheckpoint(d.id_hex, c, None) for d, c in cps]
    return b


def save(b: Bundle, path: Path) -> Path:
    with open(path, "w") as f:
        write_bundle(b, f)
    return path
