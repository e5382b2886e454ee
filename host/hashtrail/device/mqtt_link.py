"""The link protocol over an MQTT broker: a `ByteStream` per device for `device.link.Link`.

Why a byte stream and not a second collector: the device carries the console protocol
unchanged over MQTT (firmware/lib/hashtrail/mqttlink.py, docs/MQTT.md), so the host runs
the very code it runs over a serial port (HELLO, RECORDS with credit, a CHECKPOINT over
its own nonce, ACK after the store committed) and proves exactly the same things. What
this module adds is only transport:

- requests: each request line is one QoS 1 message on `hashtrail/D/req/C`, except
  ACK, which goes to `hashtrail/D/ack/C` (a broker ACL may reserve pruning for trusted
  collectors); bytes that are not a request line (the serial REPL probe) are dropped:
  there is no REPL behind a broker. C is this collector's reply name (`Broker.name`,
  random per connection): the device answers on `hashtrail/D/rep/C`, so two
  collectors on one device never read each other's replies;
- replies: messages on `hashtrail/D/rep/C`, one frame each, concatenated into the byte
  stream the Link's resynchronising frame decoder reads. A message that repeats one of
  the last `DEDUP` byte for byte is a QoS 1 redelivery and is dropped (frames carry the
  request id and the chunk number, so two different frames are never equal); anything
  else from anyone (a publisher on another device's topic, garbage) goes to the
  decoder, which keeps only valid frames, and the collector's verification refuses what
  the device did not sign.

- pushes: entries the device publishes on its own on `hashtrail/D/log` (CHUNK frames
  of request id 0, docs/MQTT.md "Push") are kept by `Pushes`, per device, by seq:
  duplicates and batches out of order are just the same records again; `take(start)`
  hands the collector the run that continues its store's head, which it then verifies
  exactly like records it pulled. A push proves nothing by itself: anyone may publish
  there, and the collection still asks a fresh checkpoint over its own nonce.

One `Broker` (one paho client, its network loop in a thread) serves every device; the
broker connection reconnects by itself, re-subscribing what was subscribed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from hashtrail.device.link import PREFIX, REP_CHUNK, REQ_ACK, FrameDecoder, Link, LinkError
from hashtrail.errors import ConfigError, FormatError, InputError, printable
from hashtrail.formats.records import MAGIC_ENTRY, split_records

log = logging.getLogger(__name__)

TOPIC_ROOT = "hashtrail"
DEDUP = 64  # recent reply messages remembered per device to drop redeliveries
MAX_QUEUED = 1 << 22  # bytes of replies held per device before the oldest are dropped
CONNECT_TIMEOUT_S = 10.0
# A collector's reply name, as the device accepts it in a topic (mqttlink._name_ok).
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")


def topic(device_id: str, leaf: str, name: str = "") -> str:
    return f"{TOPIC_ROOT}/{device_id}/{leaf}" + (f"/{name}" if name else "")


@dataclass(frozen=True)
class BrokerOptions:
    """Where the broker is and how to log in: passed through to paho-mqtt."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_insecure: bool = False
    client_id: str = ""
    keepalive: int = 30

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_url(url: str, **options: Any) -> BrokerOptions:
    """mqtt://[user[:password]@]host[:port] (1883) or mqtts://... (TLS, 8883). Options
    given as arguments win over the URL's user and password."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise InputError(f"--mqtt {printable(url)}: expected mqtt://HOST[:PORT] or "
                         "mqtts://HOST[:PORT]")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise InputError(f"--mqtt {printable(url)}: no path, query or fragment expected")
    tls = u.scheme == "mqtts"
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError as e:
        raise InputError(f"--mqtt {printable(url)}: {e}") from None
    opts: dict[str, Any] = {"username": u.username and urllib.parse.unquote(u.username),
                            "password": u.password and urllib.parse.unquote(u.password)}
    opts.update({k: v for k, v in options.items() if v is not None})
    return BrokerOptions(host=u.hostname, port=port, tls=tls or bool(opts.get("ca_certs")),
                         **opts)


class MqttStream:
    """The ByteStream of one device behind the broker (see the module docstring)."""

    console = False  # no REPL behind a broker: Link.at_repl never probes over it

    def __init__(self, broker: Broker, device_id: str) -> None:
        self.broker = broker
        self.device_id = device_id
        self._cv = threading.Condition()
        self._buf = bytearray()
        self._recent: collections.deque[bytes] = collections.deque(maxlen=DEDUP)
        self.duplicates = 0
        self.messages = 0
        self.overflow = 0
        # Bytes of the MQTT PUBLISH packets (QoS 1) that carried the replies: what the
        # device's replies cost on the wire, beside the frame bytes the Link counts.
        self.wire_bytes = 0
        self._rl = len(topic(device_id, "rep", broker.name)) + 4  # topic length, topic, packet id

    def _deliver(self, payload: bytes) -> None:
        with self._cv:
            if payload in self._recent:
                self.duplicates += 1
                return
            self._recent.append(payload)
            self.messages += 1
            rl = self._rl + len(payload)
            self.wire_bytes += 2 + rl + (rl > 127) + (rl > 16383) + (rl > 2097151)
            if len(self._buf) + len(payload) > MAX_QUEUED:
                self.overflow += len(payload)  # a flood: the decoder sees a gap
                return
            self._buf += payload
            self._cv.notify_all()

    def read(self, n: int, timeout: float) -> bytes:
        stop = time.monotonic() + max(0.0, timeout)
        with self._cv:
            while not self._buf:
                left = stop - time.monotonic()
                if left <= 0:
                    return b""
                self._cv.wait(left)
            out = bytes(self._buf[:n])
            del self._buf[:n]
            return out

    def write(self, data: bytes) -> None:
        for line in data.splitlines(keepends=True):
            if not line.startswith(PREFIX):
                continue  # REPL probes and the like: nothing to reach behind a broker
            try:
                cmd = int(line[7:9], 16)
            except ValueError:
                cmd = -1
            leaf = "ack" if cmd == REQ_ACK else "req"
            self.broker.publish(topic(self.device_id, leaf, self.broker.name), line)

    def close(self) -> None:
        self.broker.detach(self)


class Pushes:
    """Records one device pushed (hashtrail/D/log), by seq, until a collection takes them.

    Bounded: at most `cap` records are held (the lowest seqs first go: the collector
    pulls what it misses). An entry seq with two different records (a stranger's forgery
    beside the device's own) is held as both and ends what `take` hands out there, so
    the collection pulls that seq from the device instead.
    """

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._dec = FrameDecoder(keep_text=0)
        self._entries: dict[int, set[bytes]] = {}
        self._cps: dict[int, set[bytes]] = {}  # checkpoint records, by the seq they sign
        self._n = 0
        self.event = threading.Event()  # set when a push brought a record not held yet
        self.messages = 0
        self.records = 0  # records received, duplicates included
        self.wire_bytes = 0

    def deliver(self, payload: bytes, topic_len: int) -> None:
        rl = topic_len + 4 + len(payload)
        with self._lock:
            self.messages += 1
            self.wire_bytes += 2 + rl + (rl > 127) + (rl > 16383) + (rl > 2097151)
            new = False
            for f in self._dec.feed(payload):
                if f.type != REP_CHUNK or f.req_id != 0 or len(f.payload) < 2:
                    continue  # END, or anything else: no records
                try:
                    recs = list(split_records(f.payload[2:]))
                except FormatError:
                    continue  # not whole records: nothing to take from it
                for r in recs:
                    self.records += 1
                    seq = int.from_bytes(r[2:6], "little")
                    box = (self._entries if r[0] == MAGIC_ENTRY else self._cps).setdefault(
                        seq, set())
                    if r not in box:
                        box.add(r)
                        self._n += 1
                        new = True
            while self._n > self.cap and self._entries:
                self.forget(min(self._entries))
        if new:
            self.event.set()

    def forget(self, upto: int) -> None:
        """Drop what a collection accepted (seqs <= upto); the caller may hold the lock."""
        for d in (self._entries, self._cps):
            for seq in [s for s in d if s <= upto]:
                self._n -= len(d.pop(seq))

    def done(self, upto: int | None) -> None:
        with self._lock:
            if upto is None:
                self._entries.clear()
                self._cps.clear()
                self._n = 0
            else:
                self.forget(upto)

    def pending(self, start: int) -> bool:
        """Whether a push holds the entry `start` (the one after the store's head)."""
        with self._lock:
            return start in self._entries

    def take(self, start: int) -> list[bytes]:
        """The records continuing from entry `start`, in log order, while each seq has
        exactly one entry record: entry, then the checkpoint records signing its seq."""
        out: list[bytes] = []
        with self._lock:
            seq = start
            while len(self._entries.get(seq, ())) == 1:
                (e,) = self._entries[seq]
                out.append(e)
                out.extend(sorted(self._cps.get(seq, ())))
                seq += 1
        return out


class Broker:
    """One connection to the broker for every device a collector talks to."""

    def __init__(self, options: BrokerOptions) -> None:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            raise ConfigError("collection over MQTT needs paho-mqtt, which is not "
                              "installed", hint="pip install 'hashtrail[mqtt]'") from None

        self.options = options
        # The reply name: the device answers this collector's requests on rep/<name>.
        self.name = (options.client_id if NAME_RE.fullmatch(options.client_id)
                     else secrets.token_hex(8))
        self._mqtt = mqtt
        self._streams: dict[str, MqttStream] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        # Set by the first CONNACK, refusal or not, or a close before one: connect()
        # answers at once instead of waiting out its timeout (a wrong password, a plain
        # client on a TLS port).
        self._answered = threading.Event()
        self._refused: str | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=options.client_id,
                        clean_session=True, protocol=mqtt.MQTTv311)
        if options.username is not None:
            c.username_pw_set(options.username, options.password)
        if options.tls:
            c.tls_set(ca_certs=options.ca_certs, certfile=options.certfile,
                      keyfile=options.keyfile, cert_reqs=ssl.CERT_REQUIRED)
            if options.tls_insecure:
                c.tls_insecure_set(True)
        c.reconnect_delay_set(min_delay=1, max_delay=8)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._subacks: dict[int, threading.Event] = {}
        self._pushes: dict[str, Pushes] = {}
        self.client = c
        self.reconnects = -1  # the first connection is not a reconnect
        self._closing = False

    # -- paho callbacks (its network thread) -------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        if reason.is_failure:
            self._refused = f"refused: {reason}"
            self._answered.set()
            return
        self.reconnects += 1
        if self.reconnects:
            log.warning("MQTT broker at %s: connected again (reconnection %d)",
                        self.options.url, self.reconnects)
        sock = client.socket()
        if sock is not None:
            # A request written right after the PUBACK of a reply would otherwise wait
            # for the broker's delayed ACK (Nagle): ~40 ms per request on loopback.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            topics = list(self._streams)
        for did in topics:  # a clean session: subscriptions are per connection
            client.subscribe(topic(did, "rep", self.name), qos=1)
        with self._lock:
            watched = list(self._pushes)
        for did in watched:
            client.subscribe(topic(did, "log"), qos=1)
        self._connected.set()
        self._answered.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        was_up = self._connected.is_set()
        self._connected.clear()
        if was_up and not self._closing:
            # paho reconnects by itself (1 to 8 s); requests meanwhile go unanswered and
            # are re-sent, so a collection that then fails says why here.
            log.warning("MQTT broker at %s closed the connection (%s); reconnecting",
                        self.options.url, reason)
        if not self._answered.is_set():
            self._refused = self._refused or (
                f"closed the connection before answering ({reason})")
            self._answered.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      props: Any) -> None:
        with self._lock:
            ev = self._subacks.pop(mid, None)
            if ev is None:  # confirmed before stream() registered it
                self._subacks[mid] = done = threading.Event()
                done.set()
        if ev is not None:
            ev.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        if parts[2:] == ["log"] and parts[0] == TOPIC_ROOT:
            with self._lock:
                p = self._pushes.get(parts[1])
            if p is not None:
                p.deliver(bytes(msg.payload), len(msg.topic))
            return
        if parts[2:] != ["rep", self.name] or parts[0] != TOPIC_ROOT:
            return
        with self._lock:
            s = self._streams.get(parts[1])
        if s is not None:
            s._deliver(bytes(msg.payload))

    # -- use ----------------------------------------------------------------------------
    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> Broker:
        o = self.options
        try:
            self.client.connect(o.host, o.port, keepalive=o.keepalive)
        except (OSError, ssl.SSLError) as e:
            raise LinkError(f"cannot reach the MQTT broker at {o.url}: {e}",
                            hint="is the broker running (mosquitto) and the URL right?"
                            ) from e
        self.client.loop_start()
        if not self._answered.wait(timeout) or not self._connected.is_set():
            self.close()
            why = self._refused or f"no CONNACK in {timeout:.0f} s"
            raise LinkError(f"MQTT broker at {o.url}: {why}",
                            hint="check --mqtt-user/--mqtt-password and the TLS options")
        return self

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(self, t: str, payload: bytes, timeout: float = 5.0) -> None:
        info = self.client.publish(t, payload, qos=1)
        if info.rc == self._mqtt.MQTT_ERR_NO_CONN:
            return  # queued by paho, sent after the reconnect; the Link re-sends anyway
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise LinkError(f"MQTT publish to {t} failed: "
                            f"{self._mqtt.error_string(info.rc)}")

    def stream(self, device_id: str, timeout: float = 5.0) -> MqttStream:
        s = MqttStream(self, device_id)
        with self._lock:
            self._streams[device_id] = s
        res, mid = self.client.subscribe(topic(device_id, "rep", self.name), qos=1)
        ev = threading.Event()
        if mid is not None:
            with self._lock:  # the SUBACK may have come already
                ev = self._subacks.setdefault(mid, ev)
                if ev.is_set():
                    del self._subacks[mid]
        if res == self._mqtt.MQTT_ERR_SUCCESS:
            # A request sent before the broker confirmed would lose its reply.
            if not ev.wait(timeout):
                log.warning("MQTT broker at %s did not confirm the subscription to %s's "
                            "replies within %.0f s; asking anyway", self.options.url,
                            device_id, timeout)
        elif res != self._mqtt.MQTT_ERR_NO_CONN:
            raise LinkError(f"MQTT subscribe for {device_id} failed: "
                            f"{self._mqtt.error_string(res)}")
        return s

    def watch(self, device_id: str) -> Pushes:
        """Keep what `device_id` pushes (hashtrail/D/log) from now on."""
        with self._lock:
            p = self._pushes.get(device_id)
            if p is not None:
                return p
            p = self._pushes[device_id] = Pushes()
        self.client.subscribe(topic(device_id, "log"), qos=1)
        return p

    def detach(self, s: MqttStream) -> None:
        with self._lock:
            if self._streams.get(s.device_id) is not s:
                return
            del self._streams[s.device_id]
        self.client.unsubscribe(topic(s.device_id, "rep", self.name))

    def link(self, device_id: str, *, timeout: float = 3.0) -> Link:
        """A Link to one device over this broker (close it to unsubscribe)."""
        return Link(self.stream(device_id), timeout=timeout,
                    name=f"device {device_id} over {self.options.url}")


def open_broker(options: BrokerOptions) -> Broker:
    return Broker(options).connect()
