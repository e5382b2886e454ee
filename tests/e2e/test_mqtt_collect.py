"""collect --mqtt end to end: real firmware on virtual devices publishing through a real
Mosquitto, real SQLite stores, and the faults a network adds.

Each device's /board.json names the broker (`VirtualDevice(config=...)`), samples
every INTERVAL, keeps small segments and prunes on ACK, so pruning is visible within seconds. The VM
heap is 160 KB as in test_collect_e2e.py (the firmware plus the virtual board's ROM do
not fit the 100 KB budget today; the MQTT link's share is measured by
tests/firmware/test_app_mqtt.py).

What is checked, always from outside: the collector's store (every entry accepted once,
one contiguous chain from seq 0), the device's own HELLO over its console (what it
still holds: it prunes only what was acknowledged), and the CLI's exit code and lines.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import signal
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hashtrail.cli import main as cli
from hashtrail.collector.mqtt import collect_mqtt
from hashtrail.collector.store import Store
from hashtrail.device import link as linkmod
from hashtrail.device.boards import load_board
from hashtrail.device.link import DeviceInfo, encode_frame, open_serial
from hashtrail.device.mqtt_link import open_broker, parse_url
from hashtrail.device.update import PinRefused, pin_release_key
from hashtrail.sim import VirtualDevice, provision
from mqtt_broker import PrivateBroker, require_shared
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.e2e

HEAP = 160 * 1024
BOARD = dataclasses.replace(load_board("unix"), heap_budget=HEAP)
SEG = 8  # entries per segment file: an ACK past seq 8 prunes one
# A reading every 0.5 s: Mosquitto's default (set_tcp_nodelay false) holds each small
# reply ~40 ms for a delayed ACK, so one collection round (HELLO, RECORDS, CHECKPOINT)
# takes ~0.2 s on the shared broker, and a device appending faster than that would keep
# its head ahead of every fresh checkpoint (the round trips bound). The private broker
# of the restart test sets set_tcp_nodelay true: ~2 ms a reply (docs/MQTT.md).
INTERVAL = 0.5


def mqtt_device(tmp: Path, name: str, port: int, interval: float = INTERVAL,
                prune: bool = True, push: float = 1) -> VirtualDevice:
    cfg = {"sample_interval_s": interval,
           "log": {"prune_on_ack": prune, "seg_records": SEG, "checkpoint_every": 20,
                   "checkpoint_s": 0},
           "mqtt": {"host": "127.0.0.1", "port": port, "push": push}}
    dev = VirtualDevice(tmp, name, board=BOARD, config=cfg).start()
    provision.wait_ready(dev, timeout=20.0)
    return dev


def hello(dev: VirtualDevice) -> DeviceInfo:
    """What the device holds, asked over its console (not over the broker)."""
    with open_serial(dev.port) as link:
        return link.hello()


def wait_entries(dev: VirtualDevice, n: int, timeout: float = 30.0) -> DeviceInfo:
    stop = time.monotonic() + timeout
    while True:
        info = hello(dev)
        if info.last_seq is not None and info.last_seq + 1 >= n:
            return info
        assert time.monotonic() < stop, f"device has {info.last_seq} entries, not {n}"
        time.sleep(0.3)


def store_is_clean(path: Path, device_id: str) -> int:
    """Everything accepted is one contiguous chain from 0: no loss, no duplicate."""
    with Store.open(path, create=False) as st:
        acc = st.accepted_records(device_id)
        seqs = [r.seq for r in acc]
        assert seqs == list(range(len(seqs)))
        anchor = st.anchor(device_id)
        assert anchor is not None and anchor.seq == len(seqs) - 1
        assert acc[-1].entry_hash == anchor.head
        return len(seqs)


def enroll(dev: VirtualDevice, store: Path) -> str:
    assert cli(["enroll", "--port", dev.port, "--store", str(store), "--label",
                dev.name]) == 0
    return hello(dev).device_id


def collect_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any]]:
    capsys.readouterr()
    code = cli(["collect", *argv, "--json"])
    out = capsys.readouterr().out
    return code, [json.loads(ln) for ln in out.splitlines() if ln.strip()]



def _client(url: str, name: str) -> mqtt.Client:
    o = parse_url(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{os.getpid()}")
    c.connect(o.host, o.port)
    c.loop_start()
    return c


# -- the plain path ------------------------------------------------------------------------


def test_collect_over_mqtt_stores_each_entry_once_acks_and_device_prunes_only_that(
        tmp_path: Path, devices: list[VirtualDevice],
        capsys: pytest.CaptureFixture[str]) -> None:
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "m0", 1883)
    devices.append(dev)
    did = enroll(dev, store)
    wait_entries(dev, 3 * SEG)
    assert hello(dev).first_seq == 0  # nothing acknowledged: everything held

    code, outs = collect_json(capsys, "--mqtt", url, "--store", str(store))
    assert code == 0, outs
    (o,) = outs
    assert o["ok"] and o["device_id"] == did
    r = o["result"]
    assert r["from_seq"] == 0 and r["acked"] and r["new_entries"] == r["upto_seq"] + 1
    n = store_is_clean(store, did)
    assert n == r["upto_seq"] + 1 >= 3 * SEG
    # Pruned: whole segments up to the acknowledged seq, never past it.
    info = hello(dev)
    assert 0 < info.first_seq <= r["upto_seq"] + 1
    assert info.first_seq == r["device_first_seq"]

    # Again: only what is new, from the anchor; the device keeps logging meanwhile.
    wait_entries(dev, r["upto_seq"] + 4)
    code, outs = collect_json(capsys, "--mqtt", url, "--device", did, "--store", str(store))
    assert code == 0, outs
    r2 = outs[0]["result"]
    assert r2["from_seq"] == r["upto_seq"] + 1 and r2["new_entries"] > 0
    n2 = store_is_clean(store, did)
    assert n2 == r2["upto_seq"] + 1

    # The console keeps serving collections beside the broker, into the same store.
    wait_entries(dev, r2["upto_seq"] + 3)
    assert cli(["collect", "--port", dev.port, "--store", str(store)]) == 0
    assert store_is_clean(store, did) > n2


def test_follow_collects_new_entries_round_after_round(
        tmp_path: Path, devices: list[VirtualDevice]) -> None:
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "f0", 1883)
    devices.append(dev)
    did = enroll(dev, store)
    seen: list[int] = []
    with Store.open(store, create=False) as st:
        outs = collect_mqtt(parse_url(url), st, follow=True, interval=1.5, rounds=3,
                            on_outcome=lambda o: seen.append(
                                -1 if o.result is None else o.result.upto_seq or 0))
    assert outs and outs[0].error is None
    assert len(seen) == 3 and seen == sorted(seen) and seen[-1] > seen[0], seen
    assert store_is_clean(store, did) == seen[-1] + 1


def test_follow_leaves_an_idle_device_alone(tmp_path: Path,
                                           devices: list[VirtualDevice]) -> None:
    """A device with nothing new: after the round that accepts the "acknowledged" entry
    its ACK made (not acknowledged itself, or every round would add one), rounds find
    its head is the store's anchor and neither collect nor make it sign anything: its
    log stops growing."""
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "i0", 1883, interval=600)
    devices.append(dev)
    did = enroll(dev, store)
    outs: list[Any] = []
    with Store.open(store, create=False) as st:
        collect_mqtt(parse_url(url), st, follow=True, interval=0.2, rounds=4,
                     on_outcome=outs.append)
    assert [o.error for o in outs] == [None] * 4
    r1, r2 = outs[0].result, outs[1].result
    assert r1.acked and r2.new_entries == 1 and not r2.acked  # the ack entry, kept
    assert outs[2].idle and outs[3].idle
    info = hello(dev)
    assert info.last_seq == r2.upto_seq  # nothing appended by rounds 3 and 4
    assert store_is_clean(store, did) == r2.upto_seq + 1


def test_follow_collects_what_the_device_pushes(
        tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """The device publishes its unacknowledged entries on hashtrail/D/log by itself; a
    following collector whose round interval is far away collects them as they come:
    the pushed records are verified with the rest (a fresh checkpoint over its nonce),
    stored once, acknowledged, and the device prunes what was acknowledged. A stranger
    replaying every push a little later (duplicates, out of order) changes nothing."""
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "p0", 1883, interval=0.2, push=0.3)
    devices.append(dev)
    did = enroll(dev, store)
    wait_entries(dev, SEG)
    outs: list[Any] = []
    stop = threading.Event()
    rep = Replayer(url, did, leaf="log")

    def seen(o: Any) -> None:
        outs.append(o)
        if sum(1 for x in outs if x.result is not None and x.result.pushed) >= 2:
            stop.set()

    threading.Timer(20, stop.set).start()
    try:
        with Store.open(store, create=False) as st:
            collect_mqtt(parse_url(url), st, follow=True, interval=60, push_gap=0.5,
                         stop=stop, on_outcome=seen)
    finally:
        stop.set()
        rep.close()
    assert [o.error for o in outs] == [None] * len(outs), outs
    later = [o.result for o in outs[1:]]  # after the round at start
    pushed = [r for r in later if r.pushed]
    assert len(pushed) >= 2, later
    assert all(r.acked and r.new_entries >= r.pushed for r in pushed), pushed
    assert rep.sent > 0, "the replayer repeated pushes"
    upto = store_is_clean(store, did) - 1
    assert upto == max(r.upto_seq for r in pushed)
    assert 0 < hello(dev).first_seq <= upto + 1  # pruned only what was acknowledged


def test_a_forged_push_does_not_stop_the_collection(
        tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """A stranger pushes, on the device's log topic, the device's next record altered
    (CRC made right). The following collector takes it, verification refuses it, and the
    collection runs again at once from the device alone: stored once, the true record."""
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "g0", 1883, interval=0.2, push=0)  # only the forger pushes
    devices.append(dev)
    did = enroll(dev, store)
    wait_entries(dev, SEG)
    outs: list[Any] = []
    stop = threading.Event()
    forger = _client(url, "push-forger")

    def seen(o: Any) -> None:
        outs.append(o)
        if len(outs) > 1:
            stop.set()
            return
        # after the round at start: the next record, forged, pushed
        upto = o.result.upto_seq
        wait_entries(dev, upto + 2)
        with open_serial(dev.port) as link:
            true_rec = next(iter(link.records(upto + 1)))
        forged = encode_frame(linkmod.REP_CHUNK, 0, b"\x00\x00" + _tampered(true_rec))
        forger.publish(f"hashtrail/{did}/log", forged, qos=1)

    threading.Timer(20, stop.set).start()
    try:
        with Store.open(store, create=False) as st:
            collect_mqtt(parse_url(url), st, follow=True, interval=60, push_gap=0,
                         stop=stop, on_outcome=seen)
    finally:
        stop.set()
        forger.loop_stop()
    assert len(outs) == 2, outs
    o = outs[1]
    assert o.error is None and o.result.pushed == 0 and o.result.new_entries > 0, o
    assert store_is_clean(store, did) == o.result.upto_seq + 1


def test_two_collectors_at_once_on_one_device_both_succeed_and_reconcile(
        tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """Collectors A and B collect the same device at the same moment, round after
    round: each gets its replies on its own topic (rep/<its name>), a stream of one
    is not cut by the other's requests (they wait for it to end), and their bundles
    reconcile into one ledger holding each entry once. The device keeps what was
    acknowledged (prune_on_ack off): pruning after A's ACK would take from B what B
    never received, as over serial."""
    from hashtrail.collector.bundle import from_store, read_bundle, write_bundle
    from hashtrail.ledger.ledger_db import Ledger
    from hashtrail.ledger.reconcile import reconcile

    url = require_shared()
    dev = mqtt_device(tmp_path, "t0", 1883, interval=0.1, prune=False)
    devices.append(dev)
    stores = [tmp_path / f"{x}.db" for x in "AB"]
    did = ""
    for st in stores:
        did = enroll(dev, st)
    wait_entries(dev, 6 * SEG)
    outs: dict[int, list[Any]] = {0: [], 1: []}
    go = threading.Barrier(2)

    def run(i: int) -> None:
        with Store.open(stores[i], create=False) as st:
            go.wait()
            collect_mqtt(parse_url(url), st, follow=True, interval=0.1, rounds=3,
                         on_outcome=outs[i].append)

    ts = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for i in (0, 1):
        assert [o.error for o in outs[i]] == [None] * 3, outs[i]
        assert all(o.result.retries == 0 for o in outs[i] if o.result), outs[i]
    seqs = [store_is_clean(p, did) for p in stores]
    assert min(seqs) >= 6 * SEG
    led = Ledger.create(tmp_path / "ledger.db", "test.example/mqtt")
    held: set[int] = set()  # seqs in the bundles: accepted, or received and quarantined
    try:
        for p in stores:
            with Store.open(p, create=False) as st:
                led.trust_collector(st.signer.verifier(), p.stem)
                f = tmp_path / f"{p.stem}.jsonl"
                with f.open("w", encoding="ascii") as out:
                    write_bundle(from_store(st, name=p.stem), out, st.signer)
            b = read_bundle(f)
            held |= {e.seq for d, e in b.entries if d == did}
            r = reconcile(led, b)
            assert not r.findings, r.findings
        # each entry once: the union of both stores (a bundle also carries what a run
        # received past the checkpoint it judged, signed entry by entry, which the
        # ledger accepts on its own)
        assert held == set(range(len(held))) and led.size == len(held) >= max(seqs)
    finally:
        led.close()


def test_a_request_naming_a_bad_reply_topic_is_refused(
        tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """The reply topic comes from the request's topic: names the device does not accept
    (too long, a "/" level more, "..") get no answer anywhere; a good name is answered
    on rep/<name> only."""
    url = require_shared()
    dev = mqtt_device(tmp_path, "n0", 1883, interval=600)
    devices.append(dev)
    did = hello(dev).device_id
    got: list[str] = []
    c = _client(url, "names")
    c.on_message = lambda c_, u, m: got.append(m.topic)
    c.subscribe(f"hashtrail/{did}/#", qos=1)
    time.sleep(0.3)
    line = linkmod.encode_request(9, linkmod.REQ_HELLO)
    try:
        for name in ("x" * 33, "a/b", "..", "a.b", "a b", "a/../../other"):
            c.publish(f"hashtrail/{did}/req/{name}", line, qos=1)
        time.sleep(1.0)
        replies = [t for t in got if "/rep" in t]
        assert replies == [], replies
        c.publish(f"hashtrail/{did}/req/{'z' * 32}", line, qos=1)
        stop = time.monotonic() + 10
        while not any("/rep" in t for t in got) and time.monotonic() < stop:
            time.sleep(0.05)
        assert [t for t in got if "/rep" in t] == [f"hashtrail/{did}/rep/{'z' * 32}"]
    finally:
        c.loop_stop()
        c.disconnect()


# -- faults ------------------------------------------------------------------------------


class Replayer:
    """Every frame the device publishes is published once more by a stranger, a little
    later (so out of order with the next ones): QoS 1 duplicates, at will."""

    def __init__(self, url: str, device_id: str, leaf: str = "rep/#") -> None:
        self.topic = f"hashtrail/{device_id}/{leaf}"  # every collector's replies
        self.seen: set[bytes] = set()
        self.sent = 0
        self.c = _client(url, "replayer")
        self.c.on_message = self._msg
        self.c.subscribe(self.topic, qos=1)
        time.sleep(0.3)

    def _msg(self, c: Any, u: Any, msg: Any) -> None:
        p = bytes(msg.payload)
        if p in self.seen:
            return
        self.seen.add(p)
        threading.Timer(0.02, self._again, (msg.topic, p)).start()

    def _again(self, t: str, p: bytes) -> None:
        self.c.publish(t, p, qos=1)
        self.sent += 1

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_duplicates_and_garbage_on_the_topics_change_nothing(
        tmp_path: Path, devices: list[VirtualDevice],
        capsys: pytest.CaptureFixture[str]) -> None:
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "d0", 1883)
    devices.append(dev)
    did = enroll(dev, store)
    wait_entries(dev, 2 * SEG)
    rep = Replayer(url, did)
    junk = _client(url, "junk")
    names: set[str] = set()  # the collector's reply name, learnt from its requests
    junk.on_message = lambda c, u, m: names.add(m.topic.split("/")[3])
    junk.subscribe(f"hashtrail/{did}/req/+", qos=1)
    rnd = random.Random(17)
    stop = threading.Event()

    def spray() -> None:
        while not stop.is_set():
            reps = [f"rep/{n}" for n in list(names)]
            for leaf in ("rep", "req", "ack", "req/x", "ack/x", "req/a/b", *reps):
                junk.publish(f"hashtrail/{did}/{leaf}", rnd.randbytes(rnd.randrange(1, 300)))
            junk.publish(f"hashtrail/{did}/req", b"@HT01zz\n")
            stop.wait(0.05)

    t = threading.Thread(target=spray, daemon=True)
    t.start()
    try:
        code, outs = collect_json(capsys, "--mqtt", url, "--store", str(store))
    finally:
        stop.set()
        t.join()
        rep.close()
        junk.loop_stop()
    assert code == 0, outs
    r = outs[0]["result"]
    assert rep.sent > 3, "the replayer duplicated frames"
    assert r["acked"] and store_is_clean(store, did) == r["upto_seq"] + 1
    assert r["noise_bytes"] > 0  # the garbage reached the decoder and was skipped
    assert dev.running and hello(dev).first_seq == r["device_first_seq"]


def _tampered(rec: bytes) -> bytes:
    """The record with one byte of its entry body changed and its CRC made right: what a
    stranger without the device key can forge."""
    n = struct.unpack_from("<H", rec, 6)[0]
    b = bytearray(rec)
    b[8 + n - 1] ^= 0x01
    body = bytes(b[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


class Forger:
    """Answers the collector's first RECORDS request on the device's topic before the
    device does, with a chunk holding the device's own first record, altered. To win
    the race every time it holds the device's VM (SIGSTOP) from its HELLO reply until
    the forged chunk is out: the device's own chunk 0 then comes second, as behind a
    stranger on a faster path."""

    def __init__(self, url: str, device_id: str, record: bytes, pid: int) -> None:
        self.did = device_id
        self.pid = pid
        self.record = _tampered(record)
        self.answered = 0
        self.stopped = False
        self.c = _client(url, "forger")
        self.c.on_message = self._msg
        self.c.subscribe(f"hashtrail/{device_id}/req/#", qos=1)
        self.c.subscribe(f"hashtrail/{device_id}/rep/#", qos=1)
        time.sleep(0.3)

    def _msg(self, c: Any, u: Any, msg: Any) -> None:
        if msg.topic.split("/")[2] == "rep":
            p = bytes(msg.payload)
            if len(p) > 3 and p[3] == linkmod.REP_INFO and not self.stopped:
                self.stopped = True
                os.kill(self.pid, signal.SIGSTOP)
            return
        try:
            rid, cmd, _args = linkmod.decode_request(bytes(msg.payload))
        except Exception:
            return
        if cmd == linkmod.REQ_RECORDS and self.stopped and self.answered == 0:
            self.answered += 1
            frame = encode_frame(linkmod.REP_CHUNK, rid, b"\x00\x00" + self.record)
            # on the collector's own reply topic, named by the topic its request took
            name = msg.topic.split("/")[3]
            self.c.publish(f"hashtrail/{self.did}/rep/{name}", frame, qos=1)
            threading.Timer(0.3, os.kill, (self.pid, signal.SIGCONT)).start()

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_forged_frames_on_a_device_topic_are_refused_with_device_seq_and_reason(
        tmp_path: Path, devices: list[VirtualDevice],
        capsys: pytest.CaptureFixture[str]) -> None:
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "x0", 1883)
    devices.append(dev)
    did = enroll(dev, store)
    wait_entries(dev, 2 * SEG)
    with open_serial(dev.port) as link:
        link.set_time(int(time.time()))  # so the collection goes HELLO, then RECORDS
        first = next(iter(link.records(0)))
    assert dev.pid is not None
    forger = Forger(url, did, first, dev.pid)
    try:
        capsys.readouterr()
        code = cli(["collect", "--mqtt", url, "--store", str(store)])
        err = capsys.readouterr().err
    finally:
        forger.close()
    assert forger.answered == 1, err
    assert code == 1, err
    assert f"device {did}: seq 0" in err, err  # device, seq and reason, one line
    with Store.open(store, create=False) as st:
        assert st.anchor(did) is None  # nothing accepted
    assert hello(dev).first_seq == 0  # nothing acknowledged, nothing pruned
    # Without the forger the device's own records verify and are accepted, once.
    code, outs = collect_json(capsys, "--mqtt", url, "--store", str(store))
    assert code == 0, outs
    assert store_is_clean(store, did) == outs[0]["result"]["upto_seq"] + 1


class _Killed(BaseException):
    """The collector process dying: not an error anything may catch and handle."""


def test_collector_killed_between_store_and_ack_loses_and_duplicates_nothing(
        tmp_path: Path, devices: list[VirtualDevice],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    url = require_shared()
    store = tmp_path / "c.db"
    dev = mqtt_device(tmp_path, "k0", 1883)
    devices.append(dev)
    did = enroll(dev, store)
    wait_entries(dev, 3 * SEG)

    def die(self: Any, seq: int) -> int:
        raise _Killed(seq)

    monkeypatch.setattr(linkmod.Link, "ack", die)
    with Store.open(store, create=False) as st, pytest.raises(_Killed) as k:
        collect_mqtt(parse_url(url), st)
    stored_upto = k.value.args[0]
    monkeypatch.undo()
    assert store_is_clean(store, did) == stored_upto + 1  # committed before the ACK
    assert hello(dev).first_seq == 0  # no ACK reached it: it pruned nothing

    # The next run acknowledges (collect ACKs a run that accepted something new).
    wait_entries(dev, stored_upto + 3)
    code, outs = collect_json(capsys, "--mqtt", url, "--store", str(store))
    assert code == 0, outs
    r = outs[0]["result"]
    assert r["from_seq"] == stored_upto + 1 and r["acked"]
    assert store_is_clean(store, did) == r["upto_seq"] + 1
    assert 0 < hello(dev).first_seq <= r["upto_seq"] + 1


def test_broker_restart_device_reconnects_and_collection_resumes(
        tmp_path: Path, devices: list[VirtualDevice],
        capsys: pytest.CaptureFixture[str]) -> None:
    broker = PrivateBroker(tmp_path).start()
    try:
        store = tmp_path / "c.db"
        dev = mqtt_device(tmp_path, "r0", broker.port)
        devices.append(dev)
        did = enroll(dev, store)
        wait_entries(dev, SEG)
        code, outs = collect_json(capsys, "--mqtt", broker.url, "--store", str(store))
        assert code == 0, outs
        upto = outs[0]["result"]["upto_seq"]

        broker.stop()
        capsys.readouterr()
        assert cli(["collect", "--mqtt", broker.url, "--store", str(store)]) == 1
        err = capsys.readouterr().err
        assert "cannot reach the MQTT broker" in err and len(err.splitlines()) <= 2, err
        wait_entries(dev, upto + 6)  # the device logs on without its broker

        broker.start()
        stop = time.monotonic() + 30
        while True:  # the device reconnects within its retry interval (5 s)
            code, outs = collect_json(capsys, "--mqtt", broker.url, "--store", str(store))
            if code == 0 or time.monotonic() > stop:
                break
        assert code == 0, outs
        r = outs[0]["result"]
        assert r["from_seq"] == upto + 1 and r["new_entries"] >= 6
        assert store_is_clean(store, did) == r["upto_seq"] + 1
    finally:
        broker.stop()


def test_broker_restart_in_the_middle_of_a_records_stream(
        tmp_path: Path, devices: list[VirtualDevice], caplog: pytest.LogCaptureFixture) -> None:
    """The broker goes away after the first chunk of a collection and comes back a
    second later: device and collector reconnect, the stream resumes from the last entry
    kept, and every entry is stored once. The collector says that it lost the broker and
    that it is back (a collection that fails meanwhile says why)."""
    from hashtrail.collector.collect import collect
    from hashtrail.device.mqtt_link import open_broker

    broker = PrivateBroker(tmp_path).start()
    try:
        store = tmp_path / "c.db"
        dev = mqtt_device(tmp_path, "s0", broker.port, interval=0.05)
        devices.append(dev)
        did = enroll(dev, store)
        wait_entries(dev, 12 * SEG)
        cut: list[float] = []

        def cut_once(got: int, expected: int, nbytes: int) -> None:
            if not cut and 0 < got < expected:
                cut.append(time.monotonic())
                broker.stop()
                threading.Timer(1.0, broker.start).start()

        with Store.open(store, create=False) as st, open_broker(parse_url(broker.url)) as b, \
                b.link(did) as link:
            r = collect(link, st, progress=cut_once, device_id=did)
        assert cut, "the broker was stopped mid-stream"
        assert r.retries > 0 and r.acked
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any(f"{broker.url} closed the connection" in m for m in said), said
        assert any(f"{broker.url}: connected again" in m for m in said), said
        assert store_is_clean(store, did) == r.upto_seq + 1 >= 12 * SEG
    finally:
        broker.stop()


def test_a_console_request_while_the_broker_sends_does_not_hold_the_loop(
        tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """A request line on the USB console while the broker socket has data waiting: the
    device answers it and goes on sampling and serving MQTT. The app read the console
    until a poll said nothing at all was ready; with the socket ready, it read the empty
    console next and blocked there, answering console lines but never sampling or
    reading the broker again (stop 39's CI failure, and stop 38's "answered HELLO but
    logged nothing"). A stranger's junk on the device's request topic, refused by the
    device, keeps its socket ready here."""
    broker = PrivateBroker(tmp_path, trace=False).start()  # the flood would fill its log
    try:
        dev = mqtt_device(tmp_path, "q0", broker.port, interval=0.05)
        devices.append(dev)
        did = hello(dev).device_id
        flooding = threading.Event()
        flooding.set()
        junk = _client(broker.url, "junk")

        def flood() -> None:
            while flooding.is_set():
                junk.publish(f"hashtrail/{did}/req/junk", b"x", qos=0)
                time.sleep(0.001)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            seqs: list[int] = []
            for _ in range(4):  # each line a chance to block; before the fix, the first did
                last = hello(dev).last_seq
                seqs.append(-1 if last is None else last)
                time.sleep(1.0)  # 20 readings' time
        finally:
            flooding.clear()
            flooder.join()
            junk.loop_stop()
            junk.disconnect()
        assert all(b > a for a, b in itertools.pairwise(seqs)), f"sampling stopped: {seqs}"
        with open_broker(parse_url(broker.url)) as b, b.link(did) as link:
            assert link.hello().device_id == did
    finally:
        broker.stop()


def test_device_rebooting_mid_stream_loses_and_duplicates_nothing(
        tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """A hard reset of the device while it streams its records over the broker: it
    boots, reconnects, and serves the resumed stream; the fresh checkpoint at the end
    proves every record came from its key."""
    from hashtrail.collector.collect import collect
    from hashtrail.device.mqtt_link import open_broker

    broker = PrivateBroker(tmp_path).start()
    try:
        store = tmp_path / "c.db"
        dev = mqtt_device(tmp_path, "b0", broker.port, interval=0.05)
        devices.append(dev)
        did = enroll(dev, store)
        wait_entries(dev, 12 * SEG)
        boots = dev.boots

        def reset_once(got: int, expected: int, nbytes: int) -> None:
            if dev.boots == boots and 0 < got < expected:
                dev.restart("hard")

        with Store.open(store, create=False) as st, open_broker(parse_url(broker.url)) as b, \
                b.link(did) as link:
            r = collect(link, st, progress=reset_once, device_id=did)
        assert dev.boots == boots + 1, "the device was reset mid-stream"
        assert r.retries > 0 and r.acked
        assert store_is_clean(store, did) == r.upto_seq + 1 >= 12 * SEG
    finally:
        broker.stop()


def test_a_stranger_posing_as_a_repl_on_the_broker_is_no_repl(tmp_path: Path) -> None:
    """Behind a broker there is no REPL: a stranger who publishes MicroPython's prompt on
    a collector's reply topic, for a device that does not answer, gets the plain "no
    answer" error, not a soft reset and a 30 s wait for an application "at the REPL"
    (the prompt seen, hello_waking probed for the REPL over MQTT too, and the
    stranger's prompt confirmed it)."""
    url = require_shared()
    did = os.urandom(16).hex()
    names: list[str] = []
    stranger = _client(url, "repl-poser")
    stranger.on_message = lambda c, u, m: names.append(m.topic.rsplit("/", 1)[1])
    stranger.subscribe(f"hashtrail/{did}/req/+", qos=1)
    posing = threading.Event()
    posing.set()

    def pose() -> None:
        i = 0
        while posing.is_set():
            i += 1  # (each message new: the stream drops repeats as redeliveries)
            for n in set(names):
                stranger.publish(f"hashtrail/{did}/rep/{n}", b"%d\r\n>>> " % i, qos=0)
            time.sleep(0.05)

    poser = threading.Thread(target=pose, daemon=True)
    poser.start()
    said: list[str] = []
    try:
        with open_broker(parse_url(url)) as b, b.link(did, timeout=1.0) as link:
            link.WAKE_LIMIT = 3.0
            with pytest.raises(linkmod.LinkError) as e:
                link.hello_waking(said.append)
    finally:
        posing.clear()
        poser.join()
        stranger.loop_stop()
        stranger.disconnect()
    assert names, "the stranger saw the collector's requests"
    assert "no answer" in str(e.value) and not said, (str(e.value), said)


def test_a_release_key_is_never_pinned_over_the_broker(tmp_path: Path,
                                                      devices: list[VirtualDevice]) -> None:
    """UPDATE PIN (what `enroll --release-key` sends) pins a first release key over the
    USB console only: over MQTT, whoever can publish to the device's request topic
    would choose whose firmware it installs. Refused with the reason, nothing pinned:
    the console can still pin the key afterwards."""
    url = require_shared()
    dev = mqtt_device(tmp_path, "pin", 1883)
    devices.append(dev)
    did = hello(dev).device_id
    pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    with open_broker(parse_url(url)) as broker, \
            pytest.raises(PinRefused, match="over the USB console only"):
        pin_release_key(broker.link(did), pub)
    with open_serial(dev.port) as link:
        assert pin_release_key(link, pub) is True
