# Device CBOR encoder vs cbor2 (canonical) and an RFC 8949 bytewise key sort, on
# hypothesis-made values and random float bit patterns (vectors_format.py).
import binascii

import dtest
import fmtvec
from hashtrail import cbor

NEEDS = ("cbor_vectors",)


def _hex(w):
    return binascii.hexlify(w.buf[:w.n]).decode()


def test_matches_host_canonical_encoding():
    w = cbor.Writer(bytearray(4096))
    n = 0
    for vec in fmtvec.lines(dtest.data("cbor_vectors.jsonl")):
        v = fmtvec.untag(vec["v"])
        w.reset()
        w.value(v)
        dtest.eq(_hex(w), vec["e"], "value %r" % (v,))
        n += 1
    dtest.true(n >= 1000, "too few vectors: %d" % n)


def test_float_widths():
    for f, e in ((1.0, "f93c00"), (-0.0, "f98000"), (65504.0, "f97bff"),
                 (65520.0, "fa477ff000"), (100000.0, "fa47c35000"),
                 (1.1, "fb3ff199999999999a"), (float("inf"), "f97c00"),
                 (float("-inf"), "f9fc00"), (float("nan"), "f97e00"),
                 (5.960464477539063e-08, "f90001")):
        dtest.eq(binascii.hexlify(cbor.dumps(f)).decode(), e, repr(f))


def test_map_keys_sorted_bytewise():
    # RFC 8949 4.2.1: 24 (0x1818) sorts before -1 (0x20); length-first would not.
    dtest.eq(cbor.dumps({-1: 2, 24: 1}), b"\xa2\x18\x18\x01\x20\x02")
    dtest.eq(cbor.dumps({"b": 1, "aa": 2}), b"\xa2\x61\x62\x01\x62\x61\x61\x02")


def test_errors():
    w = cbor.Writer(bytearray(4))
    dtest.raises(cbor.CborError, w.bytes, b"12345")
    dtest.raises(cbor.CborError, w.uint, 2**64)
    dtest.raises(cbor.CborError, w.int, -(2**64) - 1)
    dtest.raises(cbor.CborError, cbor.dumps, object())
    dtest.raises(ValueError, cbor.dumps, {1: set()})


def test_writer_into_preallocated_buffer_does_not_grow_it():
    buf = bytearray(64)
    w = cbor.Writer(buf)
    w.map(2)
    w.uint(1)
    w.int(-7)
    w.uint(4)
    w.bytes(b"k" * 16)
    dtest.eq(len(buf), 64)
    dtest.eq(bytes(buf[:w.n]), b"\xa2\x01\x26\x04\x50" + b"k" * 16)
