"""Check devices after provisioning: who answers on each port, and does its log verify?

Why: after deploying a fleet, an operator wants one answer per device (board, firmware
version, device id, enrolled or not, log verifies or not) before walking away, and
must not change anything while asking: a check that stored or acknowledged records
would let the device prune data no collector keeps. So this is a collection dry-run:
the same requests as `collect` (HELLO, RECORDS, a CHECKPOINT for a fresh random nonce)
and the same verdict, `collect_verify.verify` (chain, signatures, signing policy, the
fresh checkpoint over the head), but nothing goes into the store, no ACK, no SET_TIME.

What is verified against what: an enrolled device from the store's anchor (what the
collector already accepted) with the enrolled key and the policy of its accepted entry
0; a device the store does not know (or with no store at all) from its entry 0, with the
key it presents (its log is self-consistent; enrolling it is what makes the key trusted).
A device that no longer holds what is needed (pruned after another collector's ACK)
cannot be checked here, which is a failure, never a pass.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from hashtrail.collector import collect_verify
from hashtrail.collector.store import Store, device_id_of
from hashtrail.device.link import DeviceError, DeviceInfo, Link, LinkError
from hashtrail.errors import HashtrailError
from hashtrail.formats.records import MAGIC_ENTRY, record_fields


@dataclass
class DeviceCheck:
    port: str
    ok: bool = False
    board: str | None = None
    fw: str | None = None
    device_id: str | None = None
    enrolled: bool | None = None  # None: no store given
    label: str | None = None
    entries: int | None = None  # entries on the device up to the verified head
    verified_from: int | None = None  # first seq this check verified (anchor + 1 or 0)
    verified_to: int | None = None  # the head the fresh checkpoint signed
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _pull(link: Link, info: DeviceInfo, start: int,
          attempts: int) -> tuple[list[bytes], bytes, bytes]:
    """Records from `start` to the device's head, then a checkpoint for a fresh nonce
    that covers exactly what was pulled: (raw records, checkpoint, nonce). Nothing is
    acknowledged. A broken stream restarts from the next seq, as collect does."""
    raw: list[bytes] = []
    seen: set[bytes] = set()
    nxt = start
    failures = 0
    while True:
        try:
            if info.last_seq is not None and nxt <= info.last_seq:
                for rec in link.records(nxt):
                    magic, seq, _, _ = record_fields(rec)
                    if magic == MAGIC_ENTRY:
                        raw.append(rec)
                        nxt = max(nxt, seq + 1)
                    elif rec not in seen:  # a checkpoint record seen again: once
                        seen.add(rec)
                        raw.append(rec)
            nonce = os.urandom(16)
            cose = link.checkpoint(nonce)
            if collect_verify.checkpoint_seq(cose) >= nxt:
                info = link.hello()  # appended meanwhile: fetch the rest first
                continue
            return raw, cose, nonce
        except (LinkError, DeviceError):
            failures += 1
            if failures >= attempts:
                raise
            link.drain()
            again = link.hello()
            if again.device_id != info.device_id:
                raise LinkError("another device appeared on the port during the check") from None
            info = again


def check_device(link: Link, port: str, store: Store | None, *,
                 attempts: int = 4) -> DeviceCheck:
    """One device: identify, then verify its log without storing or acknowledging."""
    row = DeviceCheck(port=port)
    info = link.hello()
    row.board, row.fw, row.device_id = info.board, info.fw, info.device_id
    if device_id_of(info.pub) != info.device_id:
        row.problems.append(f"claims id {info.device_id} but its key gives "
                            f"{device_id_of(info.pub)}")
        return row
    if info.altered is not None:
        row.problems.append(info.altered.describe(info.device_id))
    pub, anchor, policy = info.pub, None, None
    if store is not None:
        enr = store.enrollment(info.device_id)
        row.enrolled = enr is not None
        if enr is not None:
            row.label = enr.label
            if enr.pub != info.pub:
                row.problems.append("presents another key than the one enrolled")
                return row
            anchor, policy = store.anchor(info.device_id), store.policy(info.device_id)
    start = 0 if anchor is None else anchor.seq + 1
    if info.first_seq > start:
        row.problems.append(
            f"holds seq {info.first_seq} on, this check needs seq {start} on "
            + ("(its enrolled anchor)" if anchor is not None else
               "(not collected into this store: verify it where it was collected)"))
        return row
    try:
        raw, cose, nonce = _pull(link, info, start, attempts)
    except HashtrailError as e:
        row.problems.append(f"log not read: {e}")
        return row
    rep = collect_verify.verify(pub, anchor, raw, cose, nonce, policy=policy)
    row.verified_from = start
    if rep.fresh is not None:
        row.verified_to = rep.fresh.seq
        row.entries = rep.fresh.seq + 1
    row.problems += [p for p in rep.findings if p not in row.problems]
    row.ok = rep.ok and not row.problems
    return row


def check_ports(ports: list[str], store: Store | None, *, baud: int = 115200,
                timeout: float = 3.0) -> list[DeviceCheck]:
    """Every port in turn; a port that fails is a row with its problem, not an abort."""
    from hashtrail.device.link import open_serial

    rows = []
    for port in ports:
        try:
            with open_serial(port, baud) as link:
                link.timeout = timeout
                rows.append(check_device(link, port, store))
        except HashtrailError as e:
            rows.append(DeviceCheck(port=port, problems=[str(e)]))
    return rows
