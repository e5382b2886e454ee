"""The host frame codec keeps every valid frame whatever surrounds it on the console."""

from __future__ import annotations

import struct
import zlib

import cbor2
import pytest
from hashtrail.device.link import (
    MAX_PAYLOAD,
    REQ_RECORDS,
    Frame,
    FrameDecoder,
    LogAltered,
    decode_request,
    encode_frame,
    encode_request,
    parse_info,
)
from hashtrail.errors import FormatError
from hashtrail.formats.records import MAGIC_ENTRY, SIG_LEN, format_record, split_records
from hypothesis import given, settings
from hypothesis import strategies as st

REPL_TEXT = (b"MicroPython v1.26.1 on 2025-09-11; Generic ESP32 module with ESP32\r\n"
             b"Type \"help()\" for more information.\r\n>>> \r\n"
             b"raw REPL; CTRL-B to exit\r\n>OK\x04\x04>")


def feed_all(data: bytes, step: int = 0) -> list[Frame]:
    dec = FrameDecoder()
    if step <= 0:
        return dec.feed(data)
    out: list[Frame] = []
    for i in range(0, len(data), step):
        out += dec.feed(data[i:i + step])
    return out


def test_request_line_is_printable_ascii_and_round_trips() -> None:
    line = encode_request(7, REQ_RECORDS, struct.pack("<IH", 123456, 4))
    assert line.startswith(b"@HT") and line.endswith(b"\n")
    assert all(0x20 <= c < 0x7F for c in line[:-1])
    assert decode_request(line) == (7, REQ_RECORDS, struct.pack("<IH", 123456, 4))


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64))
def test_request_never_contains_control_bytes(rid: int, cmd: int, args: bytes) -> None:
    line = encode_request(rid, cmd, args)
    assert not any(c < 0x20 for c in line[:-1])  # no Ctrl-C (0x03), no raw-REPL bytes
    assert decode_request(line) == (rid, cmd, args)


def test_request_decoder_rejects_every_single_byte_change() -> None:
    line = encode_request(9, 4, b"nonce-nonce")
    for i in range(3, len(line) - 1):
        for c in b"0f":
            bad = line[:i] + bytes((c,)) + line[i + 1:]
            if bad == line:
                continue
            with pytest.raises(FormatError):
                decode_request(bad)


def test_frame_round_trip_and_layout() -> None:
    f = encode_frame(0x82, 5, b"hello")
    assert f[:2] == b"\xa5\x5a" and f[2] == 1 and f[3] == 0x82 and f[4] == 5
    assert struct.unpack_from("<H", f, 5)[0] == 5
    assert f[7] == zlib.crc32(f[:7]) & 0xFF
    assert struct.unpack_from("<I", f, len(f) - 4)[0] == zlib.crc32(f[:-4])
    assert feed_all(f) == [Frame(0x82, 5, b"hello")]


def test_noise_repl_text_and_truncated_frames_are_skipped() -> None:
    good = [encode_frame(0x81, i, bytes(range(i))) for i in range(1, 6)]
    stream = (REPL_TEXT + good[0] + b"\xa5\xa5\x5a" + good[1][:9]  # truncated by a reboot
              + REPL_TEXT + good[2] + good[3][:-1] + good[4] + b"\xa5")
    frames = feed_all(stream)
    assert [f.req_id for f in frames] == [1, 3, 5]
    dec = FrameDecoder()
    dec.feed(stream)
    assert dec.skipped > len(REPL_TEXT) and b"MicroPython" in dec.text


def test_a_lying_length_field_does_not_hide_the_next_frame() -> None:
    # A corrupted header whose check happens to pass is still caught by the CRC, and
    # scanning restarts right after its sync marker: the frame behind it survives.
    body = b"\xa5\x5a" + struct.pack("<BBBH", 1, 0x82, 1, 3000)
    fake = body + bytes((zlib.crc32(body) & 0xFF,))
    good = encode_frame(0x84, 2, b"cose")
    assert feed_all(fake + good + bytes(3000)) == [Frame(0x84, 2, b"cose")]


def test_oversized_length_is_refused_at_once() -> None:
    body = b"\xa5\x5a" + struct.pack("<BBBH", 1, 0x82, 1, MAX_PAYLOAD + 1)
    bad = body + bytes((zlib.crc32(body) & 0xFF,))
    good = encode_frame(0x84, 2, b"x")
    assert feed_all(bad + good) == [Frame(0x84, 2, b"x")]


frames_st = st.lists(st.tuples(st.integers(0x80, 0xFF), st.integers(0, 255),
                               st.binary(max_size=300)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(frames_st, st.lists(st.binary(max_size=40), min_size=9, max_size=9),
       st.integers(0, 50))
def test_every_frame_survives_noise_in_between(frames: list[tuple[int, int, bytes]],
                                               noise: list[bytes], step: int) -> None:
    stream = b""
    for i, (t, rid, p) in enumerate(frames):
        stream += noise[i] + encode_frame(t, rid, p)
    stream += noise[8]
    got = feed_all(stream, step)
    want = [Frame(t, rid, p) for t, rid, p in frames]
    # Noise may by chance contain a valid frame (never in practice: 40-bit checks); all
    # the real frames must be there, in order.
    it = iter(got)
    assert all(any(g == w for g in it) for w in want)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=2000))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    dec = FrameDecoder()
    for i in range(0, len(data), 37):
        dec.feed(data[i:i + 37])
    assert dec.pending() < len(data) + 1


def _record(seq: int, body: bytes, sig: bool = False) -> bytes:
    return format_record(MAGIC_ENTRY, seq, body, bytes(SIG_LEN) if sig else None)


def test_split_records_cuts_whole_records_and_refuses_partial_ones() -> None:
    recs = [_record(1, b"abc"), _record(2, b"", True), _record(3, bytes(300))]
    assert list(split_records(b"".join(recs))) == recs
    with pytest.raises(FormatError):
        list(split_records(b"".join(recs)[:-1]))
    with pytest.raises(FormatError):
        list(split_records(recs[0][:5]))


# A P-256 point (the curve's generator): HELLO keys are checked as points.
G = bytes.fromhex("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
                  "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")


def _info(**extra: object) -> dict[int, object]:
    m: dict[int, object] = {0: 1, 1: bytes(16), 2: G, 3: "0.1.0",
                            4: "unix", 5: 0, 6: 9, 7: 4096, 8: 2, 9: None,
                            10: bytes(32), 11: 512}
    m.update({int(k[1:]): v for k, v in extra.items()})
    return m


def test_info_without_the_altered_field_is_an_unaltered_device() -> None:
    # Devices before the boot check send no key 12; devices with nothing found, null.
    assert parse_info(cbor2.dumps(_info())).altered is None
    assert parse_info(cbor2.dumps(_info(k12=None))).altered is None


def test_info_carries_the_device_report_of_an_altered_log() -> None:
    info = parse_info(cbor2.dumps(_info(k12=[10, 32, "newest entry 31 carries no signature"])))
    assert info.altered == LogAltered(10, 32, "newest entry 31 carries no signature")
    assert info.altered.describe("ab" * 16) == (
        f"device {'ab' * 16} reports its log altered from seq 10 (newest entry 31 carries "
        "no signature) at boot; entries 10..31 are not covered by its signatures (its "
        "log-altered entry is seq 32)")


@pytest.mark.parametrize("bad", [[10, 32], [10, 32, b"x"], [33, 32, "x"], [-1, 32, "x"],
                                 [True, 32, "x"], "10..32", {1: 10}])
def test_a_malformed_altered_field_is_a_format_error(bad: object) -> None:
    with pytest.raises(FormatError, match="altered"):
        parse_info(cbor2.dumps(_info(k12=bad)))


@pytest.mark.parametrize("field", [{"k6": 2**32}, {"k5": -1}, {"k11": 4097},
                                   {"k4": "b" * 257}, {"k0": 256}, {"k2": b"\x04" + bytes(64)}],
                         ids=["last-seq-beyond-u32", "negative-first-seq", "chunk-too-big",
                              "board-too-long", "version-beyond-a-byte", "key-not-a-point"])
def test_info_values_are_range_checked_before_use(field: dict[str, object]) -> None:
    """A hostile device's HELLO (issue 19): every integer and length is checked before the
    host uses it, and the key must be a P-256 point; a one-line FormatError otherwise."""
    parse_info(cbor2.dumps(_info()))
    with pytest.raises(FormatError, match="device info"):
        parse_info(cbor2.dumps(_info(**field)))
