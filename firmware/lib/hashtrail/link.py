# Device side of the hashtrail serial protocol (docs/PROTOCOL.md is the contract).
#
# The console is shared with print() output and the REPL, so:
#   host -> device: one ASCII line per request, "@HT" + hex(payload) + "\n", where
#       payload = version(1) | request id(1) | command(1) | arguments | CRC-32 LE(4).
#       Hex never contains 0x03 (Ctrl-C) or any other control byte, so a request can
#       never interrupt the application or wake the raw REPL.
#   device -> host: binary frames, written raw to the console (sys.stdout.buffer, not
#       the "cooked" text stream that turns \n into \r\n):
#       0xA5 0x5A | version(1) | type(1) | request id(1) | length L (u16 LE) |
#       header check (1) = crc32(bytes 0..6) & 0xFF | payload (L) | CRC-32 LE (4)
#       The host ignores everything that is not a valid frame.
#
# Usage (main.py):
#   svc = Link(log, out, board_name, fw_version, clock)
#   svc.feed_byte(b)          for every byte read from the console
#   svc.step()                sends the next records chunk when a stream has credit
#   svc.streaming()           True while a records stream is open
#
# The log object is devlog.Log: device_id (hex), pub, first_seq, last_seq, head, boot,
# altered (the boot check's report, HELLO key 12), records(from_seq), checkpoint(nonce),
# set_time(t), ack(seq), free_bytes().
#
# Memory: one request line buffer and one frame buffer are allocated at construction
# (frame buffer = chunk size + 16). Per request, hex decoding and the reply payload of
# small replies allocate a few dozen bytes; streaming allocates only the memoryview
# slices handed to binascii.crc32 and the log's own iterator state, so a 100 KB heap
# serves a log of any length.
import binascii
import struct
from time import ticks_diff as _ticks_diff
from time import ticks_ms as _ticks

from micropython import const

_VERSION = const(1)
_SYNC0 = const(0xA5)
_SYNC1 = const(0x5A)
_HDR = const(8)
_TRAILER = const(4)

# Requests (host -> device).
_REQ_HELLO = const(0x01)
_REQ_RECORDS = const(0x02)
_REQ_CREDIT = const(0x03)
_REQ_CHECKPOINT = const(0x04)
_REQ_SET_TIME = const(0x05)
_REQ_ACK = const(0x06)
_REQ_CANCEL = const(0x07)
_REQ_UPDATE = const(0x08)  # served by update.py, loaded on demand

# Replies (device -> host): request | 0x80, plus the records stream frames and errors.
_REP_INFO = const(0x81)
_REP_CHUNK = const(0x82)
_REP_END = const(0x83)
_REP_CHECKPOINT = const(0x84)
_REP_TIME = const(0x85)
_REP_ACK = const(0x86)
_REP_CANCELLED = const(0x87)
_REP_UPDATE = const(0x88)
_REP_ERROR = const(0xFF)

# Error codes (first payload byte of an ERROR frame; a UTF-8 reason follows).
_E_FRAME = const(1)  # hex, length or CRC of the request line is wrong
_E_VERSION = const(2)  # protocol version not spoken by this device
_E_COMMAND = const(3)  # unknown command
_E_ARGS = const(4)  # arguments malformed or out of range
_E_DEVICE = const(5)  # the log or the clock failed while serving the request
_E_TOOLONG = const(6)  # request line longer than the device accepts
_E_RECORD = const(7)  # a record does not fit in one chunk
_E_UPDATE = const(8)  # a firmware update was refused (update.py)

_PREFIX = b"@HT"
_MAXLINE = const(200)  # "@HT" + hex of up to 98 payload bytes
_STREAM_IDLE_MS = const(10000)  # a stream waiting this long for credit is dropped

_REC_ENTRY = const(0xA7)


def _cbor_head(buf, pos, major, n):
    # One CBOR item head (RFC 8949 shortest form) at buf[pos]; returns the new pos.
    mt = major << 5
    if n < 24:
        buf[pos] = mt | n
        return pos + 1
    if n < 0x100:
        buf[pos] = mt | 24
        buf[pos + 1] = n
        return pos + 2
    if n < 0x10000:
        buf[pos] = mt | 25
        struct.pack_into(">H", buf, pos + 1, n)
        return pos + 3
    if n < 0x100000000:
        buf[pos] = mt | 26
        struct.pack_into(">I", buf, pos + 1, n)
        return pos + 5
    buf[pos] = mt | 27
    struct.pack_into(">Q", buf, pos + 1, n)
    return pos + 9


def _cbor_value(buf, pos, v):
    # Values of the INFO map: None, unsigned int, bytes, str, and tuples of them.
    if v is None:
        buf[pos] = 0xF6
        return pos + 1
    if isinstance(v, int):
        return _cbor_head(buf, pos, 0, v)
    if isinstance(v, tuple):
        pos = _cbor_head(buf, pos, 4, len(v))
        for x in v:
            pos = _cbor_value(buf, pos, x)
        return pos
    if isinstance(v, str):
        v = v.encode()
        pos = _cbor_head(buf, pos, 3, len(v))
    else:
        pos = _cbor_head(buf, pos, 2, len(v))
    buf[pos:pos + len(v)] = v
    return pos + len(v)


class Link:
    console = True  # the USB console; mqttlink's Link says False (update.py's PIN)

    def __init__(self, log, out, board, fw, clock, chunk=512):
        self.log = log
        self.out = out  # .write(bytes-like), raw bytes to the console
        self.board = board
        self.fw = fw
        self.clock = clock
        self.chunk = chunk
        self._line = bytearray(_MAXLINE)
        self._n = 0  # bytes in _line
        self._over = False  # current line overflowed: drop it up to its newline
        self._buf = bytearray(_HDR + chunk + _TRAILER)
        self._mv = memoryview(self._buf)
        self._it = None  # records iterator of the open stream
        self._sid = 0
        self._credit = 0
        self._chunkno = 0
        self._sent = 0
        self._next = 0
        self._end = 0
        self._pending = 0  # length of a record carried over to the next chunk's start
        self._idle = 0  # ticks of the last stream activity
        self.requests = 0  # counters, for diagnostics
        self.errors = 0

    # -- frames -------------------------------------------------------------------------

    def _send(self, typ, rid, n):
        # The payload (n bytes) is already at self._buf[_HDR:]; fill header and CRC.
        b = self._buf
        b[0] = _SYNC0
        b[1] = _SYNC1
        b[2] = _VERSION
        b[3] = typ
        b[4] = rid
        struct.pack_into("<H", b, 5, n)
        b[7] = binascii.crc32(self._mv[0:7]) & 0xFF
        struct.pack_into("<I", b, _HDR + n, binascii.crc32(self._mv[0:_HDR + n]))
        self.out.write(self._mv[0:_HDR + n + _TRAILER])

    def _reply(self, typ, rid, payload=b""):
        n = len(payload)
        self._buf[_HDR:_HDR + n] = payload
        self._send(typ, rid, n)

    def _error(self, rid, code, reason):
        self.errors += 1
        r = reason.encode() if isinstance(reason, str) else reason
        r = r[:200]
        self._buf[_HDR] = code
        self._buf[_HDR + 1:_HDR + 1 + len(r)] = r
        self._send(_REP_ERROR, rid, 1 + len(r))

    # -- request lines ------------------------------------------------------------------

    def feed_byte(self, c):
        """Take one console byte; a complete line is handled at once."""
        if c == 10 or c == 13:
            if self._over:
                self._over = False
                if self._line[0:3] == _PREFIX:
                    self._error(0, _E_TOOLONG, "request line too long")
            elif self._n:
                self._line_done()
            self._n = 0
            return
        if self._n >= _MAXLINE:
            self._over = True  # keep _line's first bytes to know if it was a request
            return
        self._line[self._n] = c
        self._n += 1

    def _line_done(self):
        n = self._n
        ln = self._line
        if n < 3 or ln[0] != 0x40 or ln[1] != 0x48 or ln[2] != 0x54:  # "@HT"
            return  # not for us: typing, echo, noise
        self.requests += 1
        try:
            p = binascii.unhexlify(memoryview(ln)[3:n])
        except ValueError:
            self._error(0, _E_FRAME, "request is not hex")
            return
        if len(p) < 7:
            self._error(0, _E_FRAME, "request too short")
            return
        rid = p[1]
        if struct.unpack_from("<I", p, len(p) - 4)[0] != binascii.crc32(
                memoryview(p)[0:len(p) - 4]):
            self._error(rid, _E_FRAME, "request CRC mismatch")
            return
        if p[0] != _VERSION:
            self._error(rid, _E_VERSION, "protocol version %d not supported" % p[0])
            return
        try:
            self._dispatch(rid, p[2], memoryview(p)[3:len(p) - 4])
        except Exception as e:  # noqa: a request never stops the device
            self._error(rid, _E_DEVICE, "%s: %s" % (type(e).__name__, e))

    def _dispatch(self, rid, cmd, a):
        if cmd == _REQ_CREDIT:
            if len(a) != 2:
                self._error(rid, _E_ARGS, "CREDIT takes u16")
            elif self._it is not None and rid == self._sid:
                self._credit += struct.unpack_from("<H", a, 0)[0]
                self._idle = _ticks()
            return  # credit for a finished stream is dropped silently
        # Any other request ends an open stream: the host moved on (or restarted).
        self._close_stream()
        if cmd == _REQ_HELLO:
            self._hello(rid)
        elif cmd == _REQ_RECORDS:
            if len(a) != 6:
                self._error(rid, _E_ARGS, "RECORDS takes u32 from_seq, u16 credit")
                return
            frm, credit = struct.unpack_from("<IH", a, 0)
            self._open_stream(rid, frm, credit)
        elif cmd == _REQ_CHECKPOINT:
            if not 1 <= len(a) <= 32:
                self._error(rid, _E_ARGS, "nonce must be 1 to 32 bytes")
                return
            if self.log.last_seq is None:
                self._error(rid, _E_DEVICE, "log is empty")
                return
            self._reply(_REP_CHECKPOINT, rid, self.log.checkpoint(bytes(a)))
        elif cmd == _REQ_SET_TIME:
            if len(a) != 8:
                self._error(rid, _E_ARGS, "SET_TIME takes u64 unix seconds")
                return
            t = struct.unpack_from("<Q", a, 0)[0]
            if t < 1000000000 or t >= 1 << 40:
                self._error(rid, _E_ARGS, "implausible time %d" % t)
                return
            seq = self.log.set_time(t)
            self._reply(_REP_TIME, rid, struct.pack("<I", seq))
        elif cmd == _REQ_ACK:
            if len(a) != 4:
                self._error(rid, _E_ARGS, "ACK takes u32 seq")
                return
            seq = struct.unpack_from("<I", a, 0)[0]
            last = self.log.last_seq
            if last is None or seq > last:
                self._error(rid, _E_ARGS, "seq %d is beyond the log" % seq)
                return
            self.log.ack(seq)
            self._reply(_REP_ACK, rid, struct.pack("<I", self.log.first_seq))
        elif cmd == _REQ_CANCEL:
            self._reply(_REP_CANCELLED, rid)
        elif cmd == _REQ_UPDATE:
            from hashtrail import update

            update.serve(self, rid, a)
        else:
            self._error(rid, _E_COMMAND, "unknown command 0x%02x" % cmd)

    def _hello(self, rid):
        log = self.log
        items = (
            (0, _VERSION),
            (1, binascii.unhexlify(log.device_id)),
            (2, log.pub),
            (3, self.fw),
            (4, self.board),
            (5, log.first_seq),
            (6, log.last_seq),
            (7, log.free_bytes()),
            (8, log.boot),
            (9, self.clock.now()),
            (10, log.head),
            (11, self.chunk),
            # The boot check's report (devlog.Log.altered): null, or [first seq not
            # vouched for, seq of the log-altered entry, reason]. Older hosts ignore it.
            (12, getattr(log, "altered", None)),
        )
        b = self._buf
        pos = _cbor_head(b, _HDR, 5, len(items))
        for k, v in items:
            pos = _cbor_head(b, pos, 0, k)
            pos = _cbor_value(b, pos, v)
        self._send(_REP_INFO, rid, pos - _HDR)

    # -- records stream -----------------------------------------------------------------

    def streaming(self):
        return self._it is not None

    def _open_stream(self, rid, frm, credit):
        last = self.log.last_seq
        self._sid = rid
        self._credit = credit
        self._chunkno = 0
        self._sent = 0
        self._next = frm
        self._pending = 0
        self._idle = _ticks()
        if last is None or frm > last:
            self._end_stream()
            return
        if frm < self.log.first_seq:
            self._error(rid, _E_ARGS, "seq %d was pruned; first held is %d" % (
                frm, self.log.first_seq))
            return
        self._end = last  # entries appended while streaming wait for the next request
        self._it = iter(self.log.records(frm))

    def _close_stream(self):
        # Close the records generator, not just drop it: its open segment file is
        # closed now rather than whenever the GC finalises it (a stream is cut short by
        # another request, a stall, and every MQTT push of one chunk).
        it = self._it
        self._it = None
        self._pending = 0
        if it is not None:
            try:
                it.close()
            except Exception:
                pass

    def _end_stream(self):
        self._close_stream()
        self._reply(_REP_END, self._sid, struct.pack("<II", self._sent, self._next))

    def step(self):
        """Send one chunk if a stream is open and has credit. Returns True if it sent."""
        if self._it is None:
            return False
        if self._credit <= 0:
            if _ticks_diff(_ticks(), self._idle) > _STREAM_IDLE_MS:
                self._close_stream()  # the host went away; nothing to tell it
            return False
        b = self._buf
        limit = _HDR + self.chunk
        pos = _HDR + 2
        count = 0
        if self._pending:  # a record carried over from the last step, already in place
            pos += self._pending
            count = 1
            self._pending = 0
        struct.pack_into("<H", b, _HDR, self._chunkno & 0xFFFF)
        done = False
        carry = None
        while True:
            try:
                rec = next(self._it)
            except StopIteration:
                done = True
                break
            seq = struct.unpack_from("<I", rec, 2)[0]
            if rec[0] == _REC_ENTRY and seq > self._end:
                done = True
                break
            n = len(rec)
            if pos + n > limit:
                if _HDR + 2 + n > limit:
                    self._close_stream()
                    self._error(self._sid, _E_RECORD, "record %d is %d bytes, chunk %d" % (
                        seq, n, self.chunk))
                    return True
                carry = rec  # copied to the next chunk's start once this one is sent
                break
            b[pos:pos + n] = rec
            pos += n
            count += 1
            if rec[0] == _REC_ENTRY:
                self._next = seq + 1
        if count:
            self._send(_REP_CHUNK, self._sid, pos - _HDR)
            self._chunkno += 1
            self._sent += count
            self._credit -= 1
            self._idle = _ticks()
        if carry is not None:
            # The log may reuse its record buffer on the next call: copy the record now.
            n = len(carry)
            b[_HDR + 2:_HDR + 2 + n] = carry
            self._pending = n
            if carry[0] == _REC_ENTRY:
                self._next = struct.unpack_from("<I", carry, 2)[0] + 1
        if done:
            self._end_stream()
        return True
