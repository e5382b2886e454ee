"""Collect devices over an MQTT broker, with the guarantees of the serial path.

Why this is short: the device carries the link protocol unchanged over the broker
(docs/MQTT.md), so each device is collected by `collector.collect.collect` itself over
a `device.mqtt_link` byte stream: records quarantined as received, chain links and
signatures from our anchor, a checkpoint over our own fresh nonce, accept, and only
then ACK (on the device's ack topic). What this module adds is the fleet around it:
which devices (those named, else every device enrolled in the store), one broker
connection for all of them, an outcome per device (one failing device does not stop
the others), and `follow`: rounds until stopped, so new entries are collected as they
come. With `follow` the collector also keeps what devices push on their own
(hashtrail/D/log, docs/MQTT.md "Push"): a device whose pushes continue the store's head
is collected at once (at most every `push_gap` seconds), its pushed records taken as if
pulled, so the collection asks RECORDS only for what the pushes lacked, and still a
fresh checkpoint over its own nonce before anything is accepted, then ACK.

A device is expected on its own topics: one that answers on D's topics with another
identity is refused (`collect(..., device_id=D)`). Anything else a stranger publishes
there is noise to the frame decoder or fails verification, and is refused with the
device, seq and reason like a bad serial line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hashtrail.collector.collect import (
    DEADLINE_S,
    MAX_RECORDS,
    CollectResult,
    Notice,
    collect,
)
from hashtrail.collector.store import Store, check_device_id
from hashtrail.device.mqtt_link import Broker, BrokerOptions, Pushes, open_broker
from hashtrail.errors import HashtrailError, InputError, VerificationError

log = logging.getLogger(__name__)

# Every collection that finds something new costs the device a signed checkpoint record
# and an "acknowledged" entry on flash: a round a minute keeps that small beside
# readings every 10 s.
FOLLOW_INTERVAL_S = 60.0
# Least seconds between two collections a device's pushes start: each costs the device
# a checkpoint record and, when something new is accepted, an "acknowledged" entry.
PUSH_GAP_S = 10.0


@dataclass
class Outcome:
    """One device in one round: its result, or why it was not collected."""

    device_id: str
    result: CollectResult | None = None
    error: str | None = None
    exit_code: int = 0
    idle: bool = False  # --follow: its HELLO showed nothing after our anchor, not collected

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device_id": self.device_id, "ok": self.error is None}
        if self.idle:
            out["idle"] = True
        if self.result is not None:
            out["result"] = self.result.to_json()
        if self.error is not None:
            out["error"] = self.error
        return out


OnOutcome = Callable[[Outcome], None]


def devices_to_collect(store: Store, devices: Sequence[str] | None) -> list[str]:
    """The devices named (canonical ids), else every device enrolled in the store."""
    if devices:
        return [check_device_id(d) for d in devices]
    ids = sorted(e.device_id for e in store.enrollments())
    if not ids:
        raise InputError(f"{store.path} has no enrolled devices to collect",
                         hint="enroll them first (hashtrail enroll), or name --device")
    return ids


def collect_device(broker: Broker, store: Store, device_id: str, *, ack: bool = True,
                   set_time: bool = True, deadline: float = DEADLINE_S,
                   max_records: int = MAX_RECORDS, notice: Notice | None = None,
                   timeout: float = 3.0, skip_idle: bool = False,
                   pushes: Pushes | None = None) -> Outcome:
    """One device over the broker: collect's result, or the error that stopped it.
    `skip_idle` (--follow): a device whose HELLO announces exactly the head we hold is
    left alone this round: a collection would only make it sign and store a checkpoint
    over nothing new. Anything else (new entries, a head that differs, a log shorter
    than ours) is collected and judged as usual. `pushes`: what the device pushed,
    taken first (collect's `preload`); forgotten once accepted, dropped after a failed
    run. A run that took pushed records and failed verification is run again at once
    with everything pulled from the device: anyone can publish on the log topic, and a
    forged push must not stop the device's own records from being collected (what the
    first run received stays in quarantine as evidence)."""
    taken: list[int] = []

    def take(start: int) -> list[bytes]:
        recs = [] if pushes is None else pushes.take(start)
        taken.append(len(recs))
        return recs

    try:
        with broker.link(device_id, timeout=timeout) as link:
            if skip_idle:
                anchor = store.anchor(device_id)
                info = link.hello()
                if anchor is not None and (info.last_seq, info.head) == (anchor.seq,
                                                                        anchor.head):
                    return Outcome(device_id, idle=True)
            res = collect(link, store, ack=ack, set_time=set_time, notice=notice,
                          deadline=deadline, max_records=max_records, device_id=device_id,
                          preload=None if pushes is None else take)
        if pushes is not None:
            pushes.done(res.upto_seq)
        return Outcome(device_id, result=res)
    except HashtrailError as e:
        if pushes is not None:
            pushes.done(None)
            if any(taken) and isinstance(e, VerificationError):
                log.warning("device %s: a run with pushed records failed (%s); "
                            "collecting it again from the device alone", device_id, e)
                return collect_device(broker, store, device_id, ack=ack,
                                      set_time=set_time, deadline=deadline,
                                      max_records=max_records, notice=notice,
                                      timeout=timeout)
        return Outcome(device_id, error=str(e), exit_code=e.exit_code)


def collect_mqtt(options: BrokerOptions, store: Store, devices: Sequence[str] | None = None,
                 *, follow: bool = False, interval: float = FOLLOW_INTERVAL_S,
                 rounds: int | None = None, stop: threading.Event | None = None,
                 on_outcome: OnOutcome | None = None, ack: bool = True,
                 set_time: bool = True, deadline: float = DEADLINE_S,
                 max_records: int = MAX_RECORDS, notice: Notice | None = None,
                 timeout: float = 3.0, push_gap: float = PUSH_GAP_S) -> list[Outcome]:
    """Collect every device once, or with `follow` round after round (`interval`
    seconds apart) until `stop` is set or `rounds` are done, and between rounds each
    device whose pushes continue the store's head (at most every `push_gap` seconds).
    Returns the outcomes of the last round; `on_outcome` sees each as it happens
    (push-started collections too). `deadline` bounds each device's collection, as for
    one serial collection."""
    ids = devices_to_collect(store, devices)
    stop = stop or threading.Event()
    done = 0
    last: list[Outcome] = []
    with open_broker(options) as broker:
        pushes = {did: broker.watch(did) for did in ids} if follow else {}
        seen: dict[str, float] = {}  # when each device was last collected

        def one(did: str, skip_idle: bool) -> Outcome:
            seen[did] = time.monotonic()
            o = collect_device(broker, store, did, ack=ack, set_time=set_time,
                               deadline=deadline, max_records=max_records, notice=notice,
                               timeout=timeout, skip_idle=skip_idle,
                               pushes=pushes.get(did))
            if on_outcome is not None:
                on_outcome(o)
            return o

        while True:
            last = []
            for did in ids:
                if stop.is_set():
                    break
                last.append(one(did, follow))
            done += 1
            if not follow or stop.is_set() or (rounds is not None and done >= rounds):
                return last
            due = time.monotonic() + interval
            while (left := due - time.monotonic()) > 0:
                if stop.wait(min(left, 0.2)):
                    return last
                for did, p in pushes.items():
                    if not p.event.is_set():
                        continue
                    if time.monotonic() - seen.get(did, 0.0) < push_gap:
                        continue  # its event stays set: looked at again when due
                    p.event.clear()
                    anchor = store.anchor(did)
                    if p.pending(0 if anchor is None else anchor.seq + 1):
                        one(did, False)
