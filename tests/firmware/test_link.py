# Device-side protocol tests: request lines made by the HOST encoder (vectors_link.py)
# go into the real link.Link; every frame it writes is checked byte by byte here.
import binascii
import io
import json
import struct

import dtest
from hashtrail import link

NEEDS = ("link_requests",)


def _requests():
    with open(dtest.data("link_requests.json")) as f:
        return json.load(f)


def frames(data):
    # Parse device->host frames strictly (sync, version, header check, CRC).
    out = []
    pos = 0
    while pos < len(data):
        dtest.eq(data[pos:pos + 2], b"\xa5\x5a", "sync")
        dtest.eq(data[pos + 2], 1, "version")
        dtest.eq(data[pos + 7], binascii.crc32(data[pos:pos + 7]) & 0xFF, "header check")
        n = struct.unpack_from("<H", data, pos + 5)[0]
        end = pos + 8 + n
        dtest.eq(struct.unpack_from("<I", data, end)[0], binascii.crc32(data[pos:end]), "crc")
        out.append((data[pos + 3], data[pos + 4], bytes(data[pos + 8:end])))
        pos = end + 4
    return out


def feed(svc, line):
    for c in line.encode() if isinstance(line, str) else line:
        svc.feed_byte(c)


def make():
    out = io.BytesIO()
    return link.Link(None, out, "unix", "0.1.0", None, chunk=256), out


def test_cancel_round_trip_from_host_encoder():
    svc, out = make()
    feed(svc, _requests()["cancel"])
    dtest.eq(frames(out.getvalue()), [(0x87, 0x21, b"")])


def test_malformed_requests_get_error_frames_and_the_device_keeps_serving():
    req = _requests()
    svc, out = make()
    expect = [
        ("unknown_cmd", 0x22, 3),
        ("bad_version", 0x23, 2),
        ("bad_crc", 0x21, 1),
        ("not_hex", 0, 1),
        ("short", 0, 1),
        ("too_long", 0, 6),
        ("credit_bad_args", 0x24, 4),
        ("records_bad_args", 0x25, 4),
    ]
    for name, rid, code in expect:
        svc.out = out = io.BytesIO()
        feed(svc, req[name])
        got = frames(out.getvalue())
        dtest.eq(len(got), 1, name)
        dtest.eq(got[0][0], 0xFF, name)
        dtest.eq(got[0][1], rid, name)
        dtest.eq(got[0][2][0], code, name)
    # After all that, a good request is still served.
    svc.out = out = io.BytesIO()
    feed(svc, req["cancel"])
    dtest.eq(frames(out.getvalue()), [(0x87, 0x21, b"")])


def test_console_noise_and_repl_text_are_ignored():
    svc, out = make()
    feed(svc, b"print('hello')\r\n>>> \x1b[A\xff\xfe garbage without newline")
    feed(svc, b"\n")
    dtest.eq(out.getvalue(), b"")
    feed(svc, _requests()["cancel"].replace("\n", "\r"))
    dtest.eq(frames(out.getvalue()), [(0x87, 0x21, b"")])
