"""A collector and the devices on its serial ports: `hashtrail enroll`, `hashtrail
collect` and `hashtrail devices check` as functions.

Why over the protocol: the device id, public key, firmware and board come from the
device itself (HELLO), and the id must be derived from the key before anything is
recorded, so a device cannot be enrolled under an id it does not own. Each function
opens the store and the port, and closes both however it ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from hashtrail import userfile
from hashtrail.collector.collect import (
    DEADLINE_S,
    MAX_RECORDS,
    CollectResult,
    Notice,
    Progress,
    collect,
)
from hashtrail.collector.fleetcheck import DeviceCheck, check_ports
from hashtrail.collector.store import Enrollment, Store, device_id_of
from hashtrail.device.link import LogAltered, open_serial
from hashtrail.device.update import pin_release_key
from hashtrail.errors import VerificationError

BAUD = 115200
_HELLO_DEADLINE_S = 60.0   # a HELLO and its retries; the device does not decide


class Enrolled(NamedTuple):
    enrollment: Enrollment
    altered: LogAltered | None    # the device's own boot-check report, if any
    key_pinned: bool | None = None  # release key: pinned now, already pinned, not asked


def enroll_port(store: str | os.PathLike[str], port: str, label: str, baud: int = BAUD,
                console: Callable[[str], None] | None = None,
                release_key: bytes | None = None) -> Enrolled:
    """Enroll the device on `port` into the collector store `store` (made when nothing
    is there yet) under `label`. `console` sees the device's own lines while it wakes.
    `release_key`: pinned on a device that has none (device.update.pin_release_key)
    before the enrollment is recorded; a refusal records nothing."""
    # enroll is the command that makes a store (collect and export need one): a path
    # that is not a store, or not a place for a new one, is refused before the device
    Store.check(store)
    with open_serial(port, baud) as link:
        link.set_deadline(_HELLO_DEADLINE_S)
        info = link.hello_waking(console)
        if device_id_of(info.pub) != info.device_id:
            raise VerificationError(f"device claims id {info.device_id}, its key gives "
                                    f"{device_id_of(info.pub)}")
        pinned = None if release_key is None else pin_release_key(link, release_key)
    with Store.open(store) as st:
        e = st.enroll(info.device_id, info.pub, label=label, board=info.board, fw=info.fw)
    return Enrolled(e, info.altered, pinned)


def collect_port(store: str | os.PathLike[str], port: str, baud: int = BAUD, *,
                 ack: bool = True, set_time: bool = True, progress: Progress | None = None,
                 notice: Notice | None = None, deadline: float = DEADLINE_S,
                 max_records: int = MAX_RECORDS) -> CollectResult:
    """Pull, verify and store everything new from the enrolled device on `port` into the
    collector store `store` (hashtrail.collector.collect.collect)."""
    with Store.open(store, create=False) as st, open_serial(port, baud) as link:
        return collect(link, st, ack=ack, set_time=set_time, progress=progress,
                       notice=notice, deadline=deadline, max_records=max_records)


def check_devices(ports: list[str], store: str | os.PathLike[str] | None = None,
                  baud: int = BAUD) -> list[DeviceCheck]:
    """A collection dry-run per port (hashtrail.device.fleetcheck), against the store's
    enrollments and anchors when one is given. A file or folder given as a port is
    refused before any is opened; a missing port (a board unplugged) is that port's
    failed row, the others still checked."""
    for port in ports:
        userfile.check_port(port, missing_ok=True)
    if store:
        with Store.open(store, create=False) as st:
            return check_ports(ports, st, baud=baud)
    return check_ports(ports, None, baud=baud)
