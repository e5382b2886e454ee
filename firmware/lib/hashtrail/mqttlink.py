# The link protocol (docs/PROTOCOL.md) carried over MQTT, for boards on a network.
#
# Why the same protocol and not a new one: a collector must prove over the network
# exactly what it proves over the console (chain links, signatures, a checkpoint made
# for its own fresh nonce, ACK only after it stored). Carrying the console's request
# lines and reply frames unchanged over a broker keeps one device-side implementation
# (link.Link, a second instance whose `out` is this object) and lets the host run its
# serial collection code unchanged over an MQTT byte stream (docs/MQTT.md).
#
# Topics, D = the device id (32 lowercase hex digits, log.device_id), C = the
# collector's reply name (1.._MAXNAME characters of A-Z a-z 0-9 _ -, chosen by the
# collector; "/C" may be left out, then the reply topic is plain "rep"):
#   hashtrail/D/req/C   collector -> device: one request line per message ("@HT" + hex,
#                       as on the console), any command but ACK
#   hashtrail/D/ack/C   collector -> device: ACK request lines only. Pruning is the one
#                       request that loses data on the device, so it has its own topic a
#                       broker ACL can reserve for trusted collectors; an ACK on req, or
#                       anything else on ack, is dropped (counted in `refused`).
#   hashtrail/D/rep/C   device -> collector: the frames answering the requests that came
#                       on .../C, one link frame per message, byte for byte as the
#                       console carries it (header check and CRC included), QoS 1.
# Why a reply topic per collector: two collectors on one device would otherwise read
# each other's replies (request ids are one byte). The name comes from the topic the
# request arrived on (the device subscribes hashtrail/D/req/# and .../ack/#) and is
# checked before it is used in a topic: a name with "/", "+", "#", ".." or any other
# character, or longer than _MAXNAME, is refused, so no requester can make the device
# publish anywhere but under hashtrail/D/rep/.
#   hashtrail/D/log     device -> collectors: entries pushed without a request (below),
#                       as CHUNK frames of request id 0 (and the END closing each), QoS 1.
# Push: the device publishes its unacknowledged entries on its own (tick()), from the
# first unacknowledged seq (log.acked + 1, or the first held), one chunk per push: the
# records stream's own frame (CHUNK number 0 of request id 0, whole raw records as on
# flash, at most link_chunk bytes; an END of request id 0 follows when the chunk held
# the last record), from the Link's one frame buffer. At most one push per "push"
# seconds (board.json "mqtt", default 1; 0 or false: no push), at most _PUSH_WINDOW
# pushes beyond the last ACK; an ACK restarts the window at the new acknowledged seq,
# and _REPUSH_MS without one after a push restarts it at the first unacknowledged seq
# (a collector missed them, the broker lost them); so does a reconnect. A push prunes
# nothing: only an ACK on the ack topic does. The device's own "acknowledged" entry
# alone is not pushed (it waits for the next entry): acknowledging it would append
# another one, forever.
# One records stream at a time: while collector C's stream is open, other collectors'
# requests wait in the queue (they are served when it ends, by END or after its 10 s
# without credit) instead of closing C's stream; their CREDITs are dropped.
# Loop contract (app.py): step() once per pass; it connects when the network is up
# (retrying every _RETRY_MS), reads what the broker sent, serves the requests and sends
# at most one chunk; `sock` is the broker socket while connected (None otherwise). A broker that goes away (OSError from the socket, a malformed
# packet) drops the connection and the open stream; nothing on flash changes, so the
# collector simply asks again after the reconnect. Requests received while a publish
# waits for its PUBACK are queued (at most _QUEUE, each at most one request line), not
# served inside the publish: umqtt delivers them from inside publish().
#
# Stalls: every read and write on the broker socket is bounded by `timeout_s` (board.json
# "mqtt", default _TIMEOUT_S): umqtt.simple reads the rest of a packet, a CONNACK, a
# SUBACK or a PUBACK in blocking mode and sets no timeout, so a broker that stops in the
# middle of a packet would hold the loop until the watchdog resets the board. connect()
# takes the timeout (umqtt_simple.py), and the connected socket is wrapped (_Timed) so
# umqtt's setblocking(True) becomes "blocking, at most timeout_s", and a short read or
# write is an OSError: the link drops the connection and retries after retry_s.
# Worst case for one step: connect + CONNACK + two SUBACKs, 4 x timeout_s (20 s at the
# default, under the boards' 30 s watchdog); DNS (getaddrinfo) is not bounded.
#
# TLS: board.json "mqtt": {"ssl": true, "ca": "/ca.der"} connects with an SSLContext
# (MicroPython >= 1.23's `tls`) that requires the server's certificate to chain to that
# CA (DER: MicroPython's mbedtls build parses no PEM) and to name "host" (a DNS name or
# an IP address in the certificate). The handshake runs before umqtt writes the CONNECT,
# so a broker the CA does not vouch for gets nothing but the TLS ClientHello; the link
# drops the connection (last_error, one console line) and retries after retry_s. The
# context and its CA are made once, at start.
#
# Memory: the Link's line and frame buffers (200 + chunk + 12 bytes), the request
# queue (bounded), umqtt's per-packet headers. Publishing a frame sends the Link's own
# buffer (a memoryview): no copy. The module's numbers are const(): a named global is
# one more qstr for good, and this module's names must fit the qstr pools the boot
# made (docs/MQTT.md "Heap").
from struct import unpack_from
from time import ticks_add, ticks_diff, ticks_ms

from micropython import const

from hashtrail import link as _link

_QUEUE = const(8)  # requests held while a publish waits for its PUBACK
_MAXREQ = const(202)  # longest request line the Link accepts (link._MAXLINE) + CR LF
_RETRY_MS = const(5000)  # between connection attempts (board.json "mqtt": "retry_s")
_TIMEOUT_S = const(5)  # longest wait of one socket read or write ("timeout_s")
_KEEPALIVE_S = const(60)
_PING_MS = const(20000)  # a PINGREQ at least this often keeps the broker from dropping us
_RX_PER_STEP = const(8)  # incoming packets read per step
_MAXNAME = const(32)  # longest collector name in a topic
# Push: the state list's slots (const: no names at run time), the window, the re-push
_P_MS = const(0)  # least ms between two pushes (board.json "mqtt": "push", seconds)
_P_NEXT = const(1)  # next seq to push (None: from the first unacknowledged)
_P_COUNT = const(2)  # pushes since the last ACK (or restart)
_P_AT = const(3)  # ticks of the last push
_P_ACKED = const(4)  # log.acked last seen
_P_ACKENTRY = const(5)  # seq of the "acknowledged" entry the last ACK appended
_P_CONN = const(6)  # the connection (self.connects) the state belongs to
_P_TOPIC = const(7)  # hashtrail/D/log
_P_TOTAL = const(8)  # pushes made, for diagnostics and tests
_PUSH_WINDOW = const(4)  # pushes beyond the last ACK before waiting for one
_REPUSH_MS = const(30000)  # no ACK this long after a push: from the first unacked again
_IPPROTO_TCP = const(6)  # the socket option's numbers (POSIX and lwIP): MicroPython's unix
_TCP_NODELAY = const(1)  # port names neither


class _Timed:
    # umqtt.simple's socket, every blocking read and write bounded (see "Stalls"). `s` is
    # the stream umqtt reads (TLS or plain), `r` the TCP socket under it: the timeout is
    # set on `r` (an SSL socket has no settimeout, and its setblocking(True) reaches the
    # TCP socket, where the ESP32 port's means "no timeout"), so a TLS handshake, read or
    # write is bounded the same way.
    def __init__(self, s, r, t):
        self.s = s
        self.r = r
        self.t = t
        self.b = True

    def setblocking(self, flag):
        self.b = flag
        self.r.settimeout(self.t if flag else 0)

    def read(self, n):
        r = self.s.read(n)
        if self.b and (r is None or len(r) != n):
            raise OSError(110)  # ETIMEDOUT (or EOF): the broker stalled mid-packet
        return r

    def write(self, b, n=None):
        if n is None:
            n = len(b)
            r = self.s.write(b)
        else:
            r = self.s.write(b, n)
        if r != n:
            raise OSError(110)
        return r

    def close(self):
        self.s.close()


def _name_ok(name):
    # b"" (the plain topic) or b"/" + 1.._MAXNAME of A-Z a-z 0-9 _ -
    n = len(name)
    if n == 0:
        return True
    if n < 2 or n > _MAXNAME + 1 or name[0] != 47:
        return False
    for i in range(1, n):
        c = name[i]
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95 or c == 45):
            return False
    return True


class MqttLink:
    # Kept to few methods and no properties: every function costs heap on a board
    # that loads this module as .mpy (tests/firmware/test_app_mqtt.py measures it).

    def __init__(self, board, fw, clock, cfg, chunk=512, net=None):
        """cfg: board.json's "mqtt" dict: host, port (1883), user, password, ssl
        (false), client_id (hashtrail-D). net: the board layer's network object
        (.isconnected()), or None when the board is always connected. The log comes
        later (attach)."""
        from hashtrail.umqtt_simple import MQTTClient

        self.last_error = None
        ssl = None
        if cfg.get("ssl"):
            # TLS ("TLS" above): one context for every connection, the CA (DER) read
            # once; without a readable CA it trusts nothing, so every handshake fails
            # and nothing is sent in the clear.
            import tls

            ssl = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            ssl.verify_mode = tls.CERT_REQUIRED
            try:
                with open(cfg["ca"], "rb") as f:
                    ssl.load_verify_locations(f.read())
            except (KeyError, OSError, ValueError) as e:
                self.last_error = "ca: %s: %s" % (type(e).__name__, e)
                print("hashtrail: mqtt:", self.last_error)
        self.client = MQTTClient(
            cfg.get("client_id") or "", cfg["host"],
            int(cfg.get("port", 8883 if ssl else 1883)), cfg.get("user"),
            cfg.get("password"), keepalive=_KEEPALIVE_S, ssl=ssl)
        self.client.set_callback(self._on_msg)
        self.timeout = float(cfg.get("timeout_s", _TIMEOUT_S))
        self.retry = int(float(cfg.get("retry_s", _RETRY_MS / 1000)) * 1000)
        # Push state ("Push" above), a list: every new name is a qstr, and near the
        # budget a new qstr pool found no room (test_app_mqtt.py); "push" is the one
        # name pushing adds (board.json key, this attribute). None: pushing is off.
        p = cfg.get("push", 1)
        self.push = [int(float(p) * 1000), None, 0, ticks_ms(), None, -1, -1, None, 0
                     ] if p else None
        self.net = net
        self.link = _link.Link(None, self, board, fw, clock, chunk=chunk)
        self.link.console = False
        self.t_base = self.t_rep = None
        self._rt = None  # reply topic of the request (or stream) being served
        self._st = None  # reply topic of the open records stream's collector
        self._q = []
        self.sock = None  # the broker socket while connected (app.py polls it)
        self._next_try = ticks_ms()
        self._last_tx = 0
        self.rx = 0  # counters, for diagnostics and tests
        self.connects = 0
        self.drops = 0
        self.refused = 0
        self.overflow = 0

    def attach(self, log):
        """Serve `log` (devlog.Log): its device id names the topics."""
        self.t_base = ("hashtrail/" + log.device_id + "/").encode()
        self.t_rep = self.t_base + b"rep"
        if not self.client.client_id:
            self.client.client_id = "hashtrail-" + log.device_id
        self.link.log = log

    def write(self, frame):
        # The Link's output: one frame, one QoS 1 message (umqtt waits for the PUBACK).
        self.client.publish(self._rt, frame, False, 1)
        self._last_tx = ticks_ms()

    def _on_msg(self, topic, msg):
        self.rx += 1
        # topic: hashtrail/D/req or hashtrail/D/ack, then nothing or "/" + a name
        b = self.t_base
        n = len(b)
        leaf = topic[n:n + 3]
        name = topic[n + 3:]
        if topic[:n] != b or (leaf != b"req" and leaf != b"ack") or not _name_ok(name):
            self.refused += 1
            return
        if len(msg) > _MAXREQ:
            self.overflow += 1
            return
        q = self._q
        if len(q) >= _QUEUE:
            # Full (requests waiting behind another collector's stream): the oldest
            # goes; its sender has re-sent it with a new id, the only one it still reads.
            q.pop(0)
            self.overflow += 1
        q.append((leaf == b"ack", self.t_rep + name, msg))

    def drop(self, e=None):
        """Forget the connection (the broker went away or sent garbage): the open
        records stream ends with it; the next step() reconnects after _RETRY_MS."""
        self.link._close_stream()
        self._q = []
        if self.sock is not None:
            self.drops += 1
        self.sock = None
        s = self.client.sock
        self.client.sock = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
        if e is not None:
            e = "%s: %s" % (type(e).__name__, ("%s" % e).strip())
            if e != self.last_error:  # once per new error: the console is not a log
                print("hashtrail: mqtt:", e)
            self.last_error = e
        self._next_try = ticks_add(ticks_ms(), self.retry)

    def step(self):
        """One pass of the app loop. Returns True when it sent a chunk (more may follow
        at once)."""
        c = self.client
        try:
            if self.sock is None:
                if self.t_base is None or ticks_diff(ticks_ms(), self._next_try) < 0 or (
                        self.net is not None and not self.net.isconnected()):
                    return False
                self.drop()
                c.connect(True, self.timeout)
                s = c.sock
                try:
                    # umqtt writes a message in several small writes: without
                    # TCP_NODELAY each waits for the broker's delayed ACK (~40 ms).
                    c.raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
                except (OSError, AttributeError):
                    pass  # a port without the option: slower, not wrong
                c.sock = _Timed(s, c.raw, self.timeout)
                # "#" matches the parent level too: .../req and .../req/C
                c.subscribe(self.t_base + b"req/#", 1)
                c.subscribe(self.t_base + b"ack/#", 1)
                self.sock = s
                self.connects += 1
                self._last_tx = ticks_ms()
                return False
            for _ in range(_RX_PER_STEP):
                before = self.rx
                c.check_msg()
                if self.rx == before:
                    break
            q = self._q
            link = self.link
            feed = link.feed_byte
            i = 0
            while i < len(q):
                is_ack, rt, msg = q[i]
                if link._it is not None and rt != self._st:
                    i += 1  # waits for the open stream of another collector to end
                    continue
                q.pop(i)
                # One request line per message, its end of line optional: a line break
                # inside would let a message on req smuggle a second line (an ACK) past
                # the topic rule. Bytes 7..8 are the command ("@HT" version id cmd).
                n = len(msg)
                while n and (msg[n - 1] == 10 or msg[n - 1] == 13):
                    n -= 1
                if n < 9 or b"\n" in msg[:n] or b"\r" in msg[:n] or (
                        msg[7:9] == b"06") != is_ack:
                    self.refused += 1
                    continue
                self._rt = rt
                for j in range(n):
                    feed(msg[j])
                feed(10)
                if link._it is not None:
                    self._st = rt  # a RECORDS opened (or CREDIT fed) this stream
            self._rt = self._st
            busy = link.step()
            if ticks_diff(ticks_ms(), self._last_tx) > _PING_MS:
                c.ping()
                self._last_tx = ticks_ms()
            return busy
        except Exception as e:  # OSError (broker gone), MQTTException, a bad packet
            self.drop(e)
            return False

    def tick(self):
        """Push one chunk of unacknowledged entries when due ("Push"); True when it
        published. app.py calls it after step() when step() sent nothing."""
        p = self.push
        link = self.link
        if p is None or self.sock is None or self._q or link._it is not None:
            return False
        try:
            log = link.log
            last = log.last_seq
            if last is None:
                return False
            a = log.acked
            una = log.first_seq if a is None else max(log.first_seq, a + 1)
            now = ticks_ms()
            if self.connects != p[_P_CONN]:  # a reconnect: from the first unacked
                p[_P_CONN] = self.connects
                p[_P_NEXT] = None
                p[_P_TOPIC] = self.t_base + b"log"
            if a != p[_P_ACKED]:  # an ACK: the window restarts there
                p[_P_ACKED] = a
                p[_P_ACKENTRY] = last  # served in this pass: its entry is the last
                p[_P_COUNT] = 0
            elif p[_P_COUNT] and ticks_diff(now, p[_P_AT]) >= _REPUSH_MS:
                p[_P_NEXT] = una  # no ACK since: the collectors may have missed them
                p[_P_COUNT] = 0
            pn = p[_P_NEXT]
            if pn is None or pn < una:
                pn = una
            p[_P_NEXT] = pn
            if pn > last or p[_P_COUNT] >= _PUSH_WINDOW or ticks_diff(
                    now, p[_P_AT]) < p[_P_MS] or (pn == last and last == p[_P_ACKENTRY]):
                return False
            self._rt = p[_P_TOPIC]
            link._open_stream(0, pn, 1)
            if link._it is not None:
                link.step()  # one chunk; END too when that was the last record
            if link._it is not None:
                # More later: from the record carried over to the next chunk (its seq
                # field is its entry's, or for a checkpoint record the entry before it,
                # pushed once more then), else from the entry after the last one sent.
                pn = unpack_from("<I", link._buf, 12)[0] if link._pending else link._next
                link._close_stream()
            else:
                pn = link._next
            p[_P_NEXT] = pn
            self._rt = self._st
            p[_P_AT] = now
            p[_P_COUNT] += 1
            p[_P_TOTAL] += 1
            return True
        except Exception as e:
            self.drop(e)
            return False

    def close(self):
        if self.sock is not None:
            try:
                self.client.disconnect()
            except Exception:
                pass
        self.drop()
