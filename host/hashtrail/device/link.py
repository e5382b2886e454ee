"""Host side of the hashtrail serial protocol (docs/PROTOCOL.md is the contract).

Why this shape: the device's console is shared with print() output and the REPL, and
cables get pulled, so the host must treat the line as hostile. Requests go out as one
ASCII line (never a control byte, so never a Ctrl-C); replies come back as binary
frames with a sync marker, a header check and a CRC-32, and `FrameDecoder` keeps every
valid frame while skipping anything else (noise, REPL text, a frame cut by a reboot).

Layers: the codec (`encode_request`, `FrameDecoder`) does no I/O; `Link` drives it over
any `ByteStream` (read/write/close), so tests run it over pseudo-terminals and
`open_serial` wraps a pyserial port.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from hashtrail.errors import FormatError, HashtrailError, printable
from hashtrail.formats import cbor_strict
from hashtrail.formats.keys import check_pub
from hashtrail.formats.records import split_records

log = logging.getLogger(__name__)

VERSION = 1
SYNC = b"\xa5\x5a"
HDR = 8
TRAILER = 4
MAX_PAYLOAD = 4096
PREFIX = b"@HT"

REQ_HELLO = 0x01
REQ_RECORDS = 0x02
REQ_CREDIT = 0x03
REQ_CHECKPOINT = 0x04
REQ_SET_TIME = 0x05
REQ_ACK = 0x06
REQ_CANCEL = 0x07
REQ_UPDATE = 0x08

REP_INFO = 0x81
REP_CHUNK = 0x82
REP_END = 0x83
REP_CHECKPOINT = 0x84
REP_TIME = 0x85
REP_ACK = 0x86
REP_CANCELLED = 0x87
REP_UPDATE = 0x88
REP_ERROR = 0xFF

ERROR_NAMES = {1: "bad-frame", 2: "version", 3: "unknown-command", 4: "bad-arguments",
               5: "device", 6: "too-long", 7: "record-too-large", 8: "update-refused"}
E_UPDATE = 8
# UPDATE ops (first argument byte) and the data each DATA request carries: a request
# line holds at most 98 payload bytes (200 hex characters); 7 of them are framing and 5
# are the op and offset.
UPDATE_BEGIN, UPDATE_DATA, UPDATE_COMMIT, UPDATE_ABORT, UPDATE_PIN = range(5)
UPDATE_CHUNK = 86



_SOFT_REBOOT = b"soft reboot"      # MicroPython prints "MPY: soft reboot" on Ctrl-D


def _after_reboot(text: bytes | bytearray) -> bytes:
    """What the device printed from its soft reboot on (b"" before it): a prompt left
    over from probing the REPL is not the application returning to it."""
    i = bytes(text).find(_SOFT_REBOOT)
    return b"" if i < 0 else bytes(text)[i:]

class LinkError(HashtrailError):
    """The serial link failed: no answer, a port that cannot be opened, a broken stream."""

    hint = ("check the cable and --port; is the device running hashtrail firmware "
            "(not stopped at the REPL)? Re-running resumes where it stopped")


class BoundError(HashtrailError):
    """A bound the host set on an exchange (deadline, records, bytes, round trips,
    retries) was hit: the device does not decide how long or how much (docs/PROTOCOL.md
    "Host bounds"). Not retried: the collector stops and accepts nothing unverified."""

    hint = ("nothing unverified was accepted; what was received is kept in quarantine. "
            "A device that needs more is not behaving like hashtrail firmware; raise "
            "the bound (--deadline, --max-records) only for a device you trust")


class DeviceError(HashtrailError):
    """The device answered a request with an error frame."""

    hint = "the device refused the request; the reason above comes from the device"

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"device error {ERROR_NAMES.get(code, code)}: {printable(reason)}")
        self.code = code
        self.reason = reason


# -- codec (no I/O) ----------------------------------------------------------------------


def encode_request(req_id: int, cmd: int, args: bytes = b"") -> bytes:
    """One request line: "@HT" + hex(version | id | cmd | args | CRC-32 LE) + "\\n"."""
    if not 0 <= req_id <= 255 or not 0 <= cmd <= 255:
        raise ValueError("request id and command are single bytes")
    body = bytes((VERSION, req_id, cmd)) + args
    body += struct.pack("<I", zlib.crc32(body))
    return PREFIX + body.hex().encode() + b"\n"


def decode_request(line: bytes) -> tuple[int, int, bytes]:
    """Parse a request line (for tests and transcript tools): (id, cmd, args)."""
    line = line.rstrip(b"\r\n")
    if not line.startswith(PREFIX):
        raise FormatError("not a request line")
    try:
        body = bytes.fromhex(line[3:].decode("ascii"))
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError("request is not hex") from e
    if len(body) < 7 or struct.unpack_from("<I", body, len(body) - 4)[0] != zlib.crc32(
            body[:-4]):
        raise FormatError("request too short or CRC mismatch")
    if body[0] != VERSION:
        raise FormatError(f"request version {body[0]}")
    return body[1], body[2], body[3:-4]


def encode_frame(typ: int, req_id: int, payload: bytes) -> bytes:
    """A device->host frame, byte for byte as the firmware writes it."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    head = SYNC + struct.pack("<BBBH", VERSION, typ, req_id, len(payload))
    head += bytes((zlib.crc32(head) & 0xFF,))
    frame = head + payload
    return frame + struct.pack("<I", zlib.crc32(frame))


@dataclass(frozen=True)
class Frame:
    type: int
    req_id: int
    payload: bytes


class FrameDecoder:
    """Incremental, resynchronising decoder of device->host frames.

    `feed(data)` returns the frames completed by `data`. Bytes that are not part of a
    valid frame are counted in `skipped` and kept (bounded) in `text` for diagnostics.
    After a bad header check or CRC, scanning restarts one byte after the sync marker
    that failed, so a good frame hidden behind a truncated one is never lost.
    """

    def __init__(self, keep_text: int = 4096) -> None:
        self._buf = bytearray()
        self.skipped = 0
        self.bad = 0  # frames whose header check or CRC failed
        self.text = bytearray()
        self._keep = keep_text

    def _skip(self, n: int) -> None:
        self.skipped += n
        if self._keep:
            self.text += self._buf[:n]
            del self.text[:-self._keep]
        del self._buf[:n]

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        buf = self._buf
        while True:
            i = buf.find(SYNC)
            if i < 0:
                # Keep a trailing 0xA5: it may be the first half of a sync marker.
                self._skip(len(buf) - 1 if buf.endswith(SYNC[:1]) else len(buf))
                return out
            if i:
                self._skip(i)
            if len(buf) < HDR:
                return out
            if (zlib.crc32(buf[:7]) & 0xFF) != buf[7] or buf[2] != VERSION:
                self.bad += 1
                self._skip(1)
                continue
            n = struct.unpack_from("<H", buf, 5)[0]
            if n > MAX_PAYLOAD:
                self.bad += 1
                self._skip(1)
                continue
            total = HDR + n + TRAILER
            if len(buf) < total:
                return out
            if struct.unpack_from("<I", buf, HDR + n)[0] != zlib.crc32(buf[:HDR + n]):
                self.bad += 1
                self._skip(1)
                continue
            out.append(Frame(buf[3], buf[4], bytes(buf[HDR:HDR + n])))
            del buf[:total]

    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)


# -- replies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """The HELLO reply: who the device is and what its log holds."""

    proto: int
    device_id: str
    pub: bytes
    fw: str
    board: str
    first_seq: int
    last_seq: int | None
    free_bytes: int
    boot: int
    time: int | None
    head: bytes
    chunk: int
    # The device's boot check found its log no longer matches its own signatures
    # (INFO key 12; None from devices that do not send it or found nothing).
    altered: LogAltered | None = None


@dataclass(frozen=True)
class LogAltered:
    """The device's own report (docs/FORMATS.md "Device boot check"): entries
    first_seq .. seq - 1 are not vouched for by any of its signatures; seq is its
    log-altered entry (kind 6)."""

    first_seq: int
    seq: int
    reason: str

    def describe(self, device_id: str) -> str:
        return (f"device {device_id} reports its log altered from seq {self.first_seq} "
                f"({printable(self.reason)}) at boot; entries {self.first_seq}..{self.seq - 1} are "
                f"not covered by its signatures (its log-altered entry is seq {self.seq})")


_U32 = 0xFFFFFFFF
_MAX_TEXT = 256     # firmware and board names, the altered reason: a line, not a page


def _uint(v: object, limit: int, name: str, k: int) -> int:
    if not cbor_strict.is_uint(v) or not isinstance(v, int) or v > limit:
        raise FormatError(f"device info field {name} ({k}) missing, of the wrong type or "
                          f"out of range (0..{limit})")
    return v


def _text(v: object, name: str, k: int) -> str:
    if not isinstance(v, str) or len(v) > _MAX_TEXT:
        raise FormatError(f"device info field {name} ({k}) missing, not text or longer "
                          f"than {_MAX_TEXT} characters")
    return v


def _parse_altered(v: object) -> LogAltered | None:
    if v is None:
        return None
    if (not isinstance(v, list) or len(v) != 3 or not isinstance(v[2], str)
            or len(v[2]) > _MAX_TEXT
            or any(not cbor_strict.is_uint(x) or x > _U32 for x in v[:2])
            or v[0] > v[1]):
        raise FormatError("device info field altered (12) is not [first seq, seq, reason]")
    return LogAltered(first_seq=v[0], seq=v[1], reason=v[2])


def parse_info(payload: bytes) -> DeviceInfo:
    """The HELLO reply, through the strict canonical decoder (docs/FORMATS.md: one
    encoding per value), every integer and length range-checked before use, and the
    public key checked as a P-256 point: it is device input like any other."""
    m = cbor_strict.loads(payload, what="device info")
    if not cbor_strict.int_keys(m):
        raise FormatError("device info is not a map with integer keys")

    def blob(k: int, n: int, name: str) -> bytes:
        v = m.get(k)
        if not isinstance(v, bytes) or len(v) != n:
            raise FormatError(f"device info field {name} ({k}) is not {n} bytes")
        return v

    did, pub, head = blob(1, 16, "device_id"), blob(2, 65, "pub"), blob(10, 32, "head")
    try:
        check_pub(pub)
    except FormatError as e:
        raise FormatError(f"device info: {e}") from None
    last, t = m.get(6), m.get(9)
    return DeviceInfo(
        proto=_uint(m.get(0), 255, "proto", 0), device_id=did.hex(), pub=pub,
        fw=_text(m.get(3), "fw", 3), board=_text(m.get(4), "board", 4),
        first_seq=_uint(m.get(5), _U32, "first_seq", 5),
        last_seq=None if last is None else _uint(last, _U32, "last_seq", 6),
        free_bytes=_uint(m.get(7), (1 << 64) - 1, "free", 7),
        boot=_uint(m.get(8), (1 << 64) - 1, "boot", 8),
        time=None if t is None else _uint(t, (1 << 64) - 1, "time", 9), head=head,
        chunk=_uint(m.get(11), MAX_PAYLOAD, "chunk", 11), altered=_parse_altered(m.get(12)))


# -- streams and the link ----------------------------------------------------------------


class ByteStream(Protocol):
    """What a Link needs from a port: read what is there (b"" after `timeout`), write all.
    A stream with a class attribute `console = False` reaches no REPL (MQTT: only the
    application answers behind a broker), so the Link never probes for one over it."""

    def read(self, n: int, timeout: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class FdStream:
    """A ByteStream over a file descriptor (a pty master, a pipe): for tests and sims."""

    def __init__(self, fd: int, *, own: bool = False) -> None:
        self.fd = fd
        self._own = own

    def read(self, n: int, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return b""
        try:
            return os.read(self.fd, n)
        except OSError as e:  # EIO: the other side of a pty closed (device gone)
            raise LinkError(f"serial read failed: {e}") from e

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                k = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)
                continue
            except OSError as e:
                raise LinkError(f"serial write failed: {e}") from e
            view = view[k:]

    def close(self) -> None:
        if self._own:
            os.close(self.fd)


class SerialStream:
    """A ByteStream over a pyserial port."""

    def __init__(self, port: str, baud: int = 115200) -> None:
        import serial  # pyserial

        try:
            self._s = serial.Serial(port, baud, timeout=0.05, write_timeout=10)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open serial port {port}: {e}") from e
        self._serial = serial

    def read(self, n: int, timeout: float) -> bytes:
        import serial

        deadline = time.monotonic() + timeout
        try:
            while True:
                waiting = self._s.in_waiting
                if waiting:
                    return bytes(self._s.read(min(n, waiting)))
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                self._s.timeout = min(left, 0.05)
                data = self._s.read(1)
                if data:
                    return bytes(data)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"serial read failed: {e}") from e

    def write(self, data: bytes) -> None:
        try:
            self._s.write(data)
            self._s.flush()
        except (self._serial.SerialException, OSError) as e:
            raise LinkError(f"serial write failed: {e}") from e

    def close(self) -> None:
        self._s.close()


def open_serial(port: str, baud: int = 115200) -> Link:
    from hashtrail.userfile import check_port

    check_port(port)      # a file or folder given as --port: one line, exit 2
    return Link(SerialStream(port, baud), name=f"device on {printable(port)}")


class Link:
    """Request/response over a ByteStream, with a credit-based records stream."""

    # A drain stops after this long even if the line never goes quiet.
    DRAIN_LIMIT = 2.0

    def __init__(self, stream: ByteStream, *, timeout: float = 3.0,
                 name: str = "device") -> None:
        self.stream = stream
        self.timeout = timeout
        self._give_up: Callable[[], bool] | None = None  # hello_waking's, while it asks
        # Host bounds (docs/PROTOCOL.md "Host bounds"): an absolute time.monotonic()
        # deadline for the whole command and a ceiling on bytes received; None: unbounded.
        self.deadline: float | None = None
        self.max_bytes: int | None = None
        self.name = name  # names the device in a BoundError
        self.decoder = FrameDecoder()
        self._frames: list[Frame] = []
        self._rid = int.from_bytes(os.urandom(1), "little") % 254 + 1
        self.bytes_in = 0
        self._noise_before = 0
        self.bytes_out = 0

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_id(self) -> int:
        self._rid = self._rid % 255 + 1  # 1..255; 0 is "no request"
        return self._rid

    def send(self, req_id: int, cmd: int, args: bytes = b"") -> None:
        line = encode_request(req_id, cmd, args)
        self.bytes_out += len(line)
        self.stream.write(line)

    def set_deadline(self, seconds: float) -> None:
        """Bound the rest of this command to `seconds` from now."""
        self.deadline = time.monotonic() + seconds
        self._deadline_s = seconds

    def bound(self, what: str, detail: str) -> BoundError:
        return BoundError(f"{self.name}: stopped at the host's {what} bound ({detail})")

    def _check(self) -> float:
        """Seconds left before the command deadline (inf if none); BoundError when past,
        or when the device has sent more bytes than this command allows."""
        if self.max_bytes is not None and self.bytes_in > self.max_bytes:
            raise self.bound("bytes", f"{self.bytes_in} bytes received, at most "
                                      f"{self.max_bytes} for what the device announced")
        if self.deadline is None:
            return float("inf")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.bound("deadline", f"{self._deadline_s:g} s for the whole command")
        return left

    def next_frame(self, timeout: float) -> Frame | None:
        """The next valid frame from the device, or None after `timeout` of silence.
        Never waits past the command deadline (BoundError)."""
        deadline = time.monotonic() + timeout
        while not self._frames:
            left = min(deadline - time.monotonic(), self._check())
            if left <= 0:
                return None
            data = self.stream.read(8192, left)
            if data:
                self.bytes_in += len(data)
                self._frames.extend(self.decoder.feed(data))
        self._check()
        return self._frames.pop(0)

    def drain(self, quiet: float = 0.05) -> None:
        """Discard whatever the device is still sending (an old stream, REPL text), until
        `quiet` seconds of silence but never longer than DRAIN_LIMIT: a device that sends
        a byte every few milliseconds does not hold the host."""
        discarded = 0
        stop = time.monotonic() + self.DRAIN_LIMIT
        while (left := min(stop - time.monotonic(), self._check())) > 0 and (
                data := self.stream.read(8192, min(quiet, left))):
            discarded += len(data)
            self.bytes_in += len(data)
        # The decoder is replaced: fold what it skipped into the link's running total.
        self._noise_before += self.decoder.skipped + discarded
        self.decoder = FrameDecoder()
        self._frames.clear()

    @property
    def noise_bytes(self) -> int:
        """Bytes received that were not part of a used frame, over the link's lifetime."""
        return self._noise_before + self.decoder.skipped

    # How often a request asks the link's give-up test (hello_waking's) while it waits.
    GIVE_UP_POLL_S = 0.2

    def request(self, cmd: int, args: bytes = b"", *, expect: int, timeout: float | None = None,
                retries: int = 2) -> Frame:
        """Send a request and wait for its reply; frames for other ids are ignored.

        A request with no answer is re-sent (`retries` times, each with a new id):
        requests are idempotent or harmless to repeat (see docs/PROTOCOL.md). The give-up
        test `hello_waking` sets for its HELLO, when set, is asked every GIVE_UP_POLL_S
        while no answer came, and ends the tries when it says True.
        """
        wait = self.timeout if timeout is None else timeout
        give_up = self._give_up
        tried = 0
        for attempt in range(retries + 1):
            if attempt:
                log.debug("%s: no answer to request 0x%02x within %.1f s; re-sent "
                          "(try %d of %d)", self.name, cmd, wait, attempt + 1, retries + 1)
            rid = self._next_id()
            self.send(rid, cmd, args)
            tried += 1
            deadline = time.monotonic() + wait
            while True:
                left = deadline - time.monotonic()
                f = self.next_frame(left if give_up is None else min(left, self.GIVE_UP_POLL_S))
                if f is None:
                    if give_up is not None and give_up():
                        raise self._no_answer(cmd, tried)
                    if time.monotonic() < deadline:
                        continue
                    break
                if f.req_id != rid:
                    continue
                if f.type == REP_ERROR:
                    code = f.payload[0] if f.payload else 0
                    raise DeviceError(code, f.payload[1:].decode("utf-8", "replace"))
                if f.type == expect:
                    return f
        raise self._no_answer(cmd, tried)

    def _no_answer(self, cmd: int, tried: int) -> LinkError:
        return LinkError(f"no answer from the {self.name} to request 0x{cmd:02x} "
                        f"after {tried} {'try' if tried == 1 else 'tries'}")

    # -- operations --------------------------------------------------------------------

    def hello(self) -> DeviceInfo:
        return parse_info(self.request(REQ_HELLO, expect=REP_INFO).payload)

    # How long the application may take to answer after a soft reset (a boot check of
    # a long log on a board takes seconds); never past the command deadline.
    WAKE_LIMIT = 30.0

    def at_repl(self, listen: float = 1.5) -> bool:
        """True when the device answers like MicroPython's REPL rather than hashtrail:
        "\r" then Ctrl-B (leave the raw REPL; at the friendly REPL it reprints the
        banner) bring back the ">>> " prompt. Both are data bytes to a running
        application, which ignores lines that are not requests, and neither is Ctrl-C.
        False at once over a stream that reaches no console (ByteStream): there, a
        ">>> " could only be a stranger's bytes."""
        if not getattr(self.stream, "console", True):
            return False
        self.drain()
        self.stream.write(b"\r\x02")
        seen = b""
        stop = time.monotonic() + listen
        while (left := min(stop - time.monotonic(), self._check())) > 0:
            data = self.stream.read(4096, left)
            self.bytes_in += len(data)
            seen = (seen + data)[-4096:]
            if b">>> " in seen:
                # the "\r" prompt can come before Ctrl-B's banner and prompt: let the
                # line go quiet, so nothing of this probe is read as a later reply
                self.drain()
                return True
        return False

    def hello_waking(self, notice: Callable[[str], None] | None = None) -> DeviceInfo:
        """HELLO; a device found at the REPL (after mpremote exec or ls, or a Ctrl-C)
        is soft-reset (Ctrl-D at the empty friendly prompt: boot.py, then main.py, as
        on a board) and asked again until its application answers, with one line to
        `notice` (default: this module's logger, INFO). A device that does not answer and
        is not at the REPL: the HELLO error.

        The REPL answers a request line with its prompt (after a SyntaxError): once that
        prompt is seen, the probe runs at once instead of after three unanswered tries
        of `timeout` each (an enroll of a device left at the REPL by mpremote: 9.4 s
        before, 0.6 s now, on the virtual board)."""
        found = False

        def at_prompt() -> bool:
            nonlocal found
            found = b">>> " in self.decoder.text and self.at_repl()
            return found

        # through hello(), not a request of its own: a Link subclass that wraps hello()
        # (a proxy, the threat tests' man in the middle) sees this HELLO too
        self._give_up = at_prompt
        try:
            return self.hello()
        except LinkError:
            if not (found or self.at_repl()):
                raise
        finally:
            self._give_up = None
        (notice or log.info)(f"{self.name} was at the MicroPython REPL, not running "
                             "hashtrail: soft reset it (Ctrl-D) to start the application")
        self.stream.write(b"\x04")
        self.decoder.text.clear()  # from here: what the device prints after the reset
        stop = time.monotonic() + self.WAKE_LIMIT
        why = f"did not answer within {self.WAKE_LIMIT:g} s of a soft reset"
        while time.monotonic() < stop:
            try:
                return parse_info(self.request(REQ_HELLO, expect=REP_INFO, timeout=1.0,
                                               retries=0).payload)
            except LinkError:
                if b">>> " in _after_reboot(self.decoder.text):  # main.py returned
                    why = "returned to the REPL after a soft reset (main.py did not start)"
                    break
        # From the reboot to its first prompt: later lines are the REPL echoing requests.
        said = _after_reboot(self.decoder.text).split(b">>> ")[0].decode("utf-8", "replace")
        lines = [ln.strip() for ln in said.splitlines()]
        lines = [ln for ln in lines if ln and ln.isprintable()]
        text = printable(" | ".join(lines[-4:])[-300:])
        raise LinkError(f"{self.name} was at the REPL and its application {why}; it "
                        f"printed: {text or 'nothing'}",
                        hint="fix what it printed (mpremote repl shows the device), or "
                             "reinstall the firmware with hashtrail deploy")

    def checkpoint(self, nonce: bytes) -> bytes:
        if not 1 <= len(nonce) <= 32:
            raise ValueError("nonce is 1 to 32 bytes")
        return self.request(REQ_CHECKPOINT, nonce, expect=REP_CHECKPOINT,
                            timeout=max(self.timeout, 30.0)).payload

    def set_time(self, t: int) -> int:
        f = self.request(REQ_SET_TIME, struct.pack("<Q", t), expect=REP_TIME)
        return int(struct.unpack("<I", f.payload[:4])[0])

    def ack(self, seq: int) -> int:
        """Tell the device everything up to `seq` is safe here; returns its new first seq."""
        f = self.request(REQ_ACK, struct.pack("<I", seq), expect=REP_ACK,
                         timeout=max(self.timeout, 10.0))
        return int(struct.unpack("<I", f.payload[:4])[0])

    def records(self, from_seq: int, *, window: int = 4,
                on_chunk: Callable[[int], None] | None = None) -> Iterator[bytes]:
        """Yield raw record bytes (FORMATS.md "Records on flash") from `from_seq`.

        Credit-based: the device may have `window` chunks in flight; one credit goes back
        per chunk received. A lost chunk (counter gap), silence or an error frame raises
        LinkError/DeviceError; the caller restarts from the last seq it kept.
        """
        rid = self._next_id()
        self.send(rid, REQ_RECORDS, struct.pack("<IH", from_seq, window))
        expect_no = 0
        # Frames for other request ids do not restart the wait: only this stream's do.
        stall = time.monotonic() + self.timeout
        while True:
            f = self.next_frame(stall - time.monotonic())
            if f is None:
                raise LinkError("records stream stalled (device silent)")
            if f.req_id != rid:
                continue
            stall = time.monotonic() + self.timeout
            if f.type == REP_ERROR:
                code = f.payload[0] if f.payload else 0
                raise DeviceError(code, f.payload[1:].decode("utf-8", "replace"))
            if f.type == REP_END:
                return
            if f.type != REP_CHUNK or len(f.payload) < 2:
                raise LinkError(f"unexpected frame 0x{f.type:02x} in a records stream")
            no = struct.unpack_from("<H", f.payload, 0)[0]
            if no != expect_no & 0xFFFF:
                raise LinkError(f"records chunk {expect_no} lost (got {no})")
            expect_no += 1
            self.send(rid, REQ_CREDIT, struct.pack("<H", 1))
            if on_chunk is not None:
                on_chunk(len(f.payload))
            yield from split_records(f.payload[2:])
