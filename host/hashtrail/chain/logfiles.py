"""`hashtrail verify-log` as a function: a device's log segment files, checked against
its public key.

Why: the plainest audit there is. Given the device's public key and the raw segment
files (copied off the flash, or from a bundle), every break is reported with device,
seq and reason (hashtrail.chain.chainverify); a record that does not parse is a finding
too, never a silent skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hashtrail.chain.chainverify import Anchor, ChainReport, verify_chain
from hashtrail.formats.records import read_segments


def verify_log_files(pub: bytes, paths: Sequence[str | Path], *, anchor: Anchor | None = None,
                     policy: int | None = None) -> ChainReport:
    """Verify the segment files (or folders of them) `paths` of the device whose key is
    `pub`, from `anchor` (a trusted seq and head, for a pruned log) when given; `policy`
    is the signing policy its entry 0 declared, for a log that no longer holds it."""
    records, problems = read_segments(paths)
    return verify_chain(pub, records, problems, anchor=anchor, policy=policy)
