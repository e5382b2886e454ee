# Canonical CBOR encoder (RFC 8949 section 4.2.1 core deterministic encoding) for the
# device: everything the device signs or chains is written by this module.
#
# API
#   w = Writer(buf)      buf: the caller's preallocated bytearray; w.n = bytes written
#   w.reset()            start again at offset 0 (reuses buf)
#   w.uint(v) w.int(v) w.bytes(b) w.text(s) w.null() w.bool(b) w.float(f)
#   w.array(n) w.map(n) w.tag(t)   headers only: the caller then writes the n items
#                                  (for maps: keys in canonical order, see below)
#   w.raw(b)             bytes that are already canonical CBOR
#   w.value(obj)         any supported value, recursively (None, bool, int, float,
#                        bytes/bytearray/memoryview, str, list/tuple, dict)
#   dumps(obj, size=256) -> bytes   convenience for small values (allocates)
#   CborError            (a ValueError): buffer full or unsupported value
#
# Rules that make the bytes deterministic:
#   - integers and lengths in the shortest head; definite lengths only
#   - floats in the shortest of float16/float32/float64 that gives back the same
#     value; every NaN is written as f9 7e00; -0.0 keeps its sign (f9 8000)
#   - map keys sorted by their encoded bytes (bytewise lexicographic). For unsigned
#     integer keys that is plain ascending order, which is what the formats use.
#
# Allocation: uint/int/null/bool/float/array/map/tag/bytes write into buf with
# struct.pack_into or slice assignment and allocate nothing beyond small ints
# (uint64 values above the small-int range are bigints); float() allocates nothing
# (bit arithmetic on a module scratch buffer). text() allocates the UTF-8 encoding
# of a str (pass bytes to avoid it). value() on a dict allocates one encoded copy of
# each key to sort them; on other types nothing more than the calls above.
import struct

_U64 = 0xFFFFFFFFFFFFFFFF
# Scratch for float encoding (the encoder is not re-entrant across threads).
_F64 = bytearray(8)


class CborError(ValueError):
    pass


class Writer:
    def __init__(self, buf):
        self.buf = buf
        self.n = 0

    def reset(self):
        self.n = 0

    def _room(self, k):
        if self.n + k > len(self.buf):
            raise CborError("cbor buffer full")

    def _head(self, major, v):
        if v < 0 or v > _U64:
            raise CborError("cbor integer out of range")
        mt = major << 5
        buf = self.buf
        n = self.n
        if v < 24:
            self._room(1)
            buf[n] = mt | v
            self.n = n + 1
        elif v < 0x100:
            self._room(2)
            buf[n] = mt | 24
            buf[n + 1] = v
            self.n = n + 2
        elif v < 0x10000:
            self._room(3)
            struct.pack_into(">BH", buf, n, mt | 25, v)
            self.n = n + 3
        elif v < 0x100000000:
            self._room(5)
            struct.pack_into(">BI", buf, n, mt | 26, v)
            self.n = n + 5
        else:
            self._room(9)
            buf[n] = mt | 27
            struct.pack_into(">II", buf, n + 1, v >> 32, v & 0xFFFFFFFF)
            self.n = n + 9

    def uint(self, v):
        self._head(0, v)

    def int(self, v):
        if v >= 0:
            self._head(0, v)
        else:
            self._head(1, -1 - v)

    def bytes(self, b):
        k = len(b)
        self._head(2, k)
        self._room(k)
        self.buf[self.n:self.n + k] = b
        self.n += k

    def text(self, s):
        # str is encoded (allocates); bytes/bytearray are taken as UTF-8 already.
        b = s.encode("utf-8") if isinstance(s, str) else s
        k = len(b)
        self._head(3, k)
        self._room(k)
        self.buf[self.n:self.n + k] = b
        self.n += k

    def array(self, count):
        self._head(4, count)

    def map(self, count):
        self._head(5, count)

    def tag(self, t):
        self._head(6, t)

    def _simple(self, byte):
        self._room(1)
        self.buf[self.n] = byte
        self.n += 1

    def null(self):
        self._simple(0xF6)

    def bool(self, b):
        self._simple(0xF5 if b else 0xF4)

    def float(self, f):
        # Shortest exact width from the float64 bits, by integer arithmetic on bytes
        # (no float temporaries, and MicroPython's struct 'e' mishandles float16
        # subnormals). Every intermediate int stays below 2**24: small ints even on
        # the ESP32's 31-bit small-int builds, so this allocates nothing.
        s = _F64
        struct.pack_into(">d", s, 0, f)
        sign = s[0] >> 7
        ex = ((s[0] & 0x7F) << 4) | (s[1] >> 4)
        # trailing zero bits of the 52-bit mantissa (52 when it is zero)
        tz = 0
        for i in range(7, 1, -1):
            byte = s[i]
            if byte:
                while not byte & 1:
                    byte >>= 1
                    tz += 1
                break
            tz += 8
        else:
            byte = s[1] & 0x0F
            if byte:
                while not byte & 1:
                    byte >>= 1
                    tz += 1
            else:
                tz = 52
        top10 = (((s[1] & 0x0F) << 8) | s[2]) >> 2
        if ex == 0x7FF:  # inf or NaN; every NaN is written as f97e00
            self._f16(0x7E00 if tz < 52 else (sign << 15) | 0x7C00)
            return
        if ex == 0:
            if tz == 52:  # +-0
                self._f16(sign << 15)
                return
            self._f64()  # float64 subnormals are below every smaller width
            return
        e = ex - 1023
        if -14 <= e <= 15 and tz >= 42:
            self._f16((sign << 15) | ((e + 15) << 10) | top10)
            return
        if -24 <= e < -14 and tz >= 52 - (e + 24):
            k = e + 24
            self._f16((sign << 15) | (1 << k) | (top10 >> (10 - k)))
            return
        top23 = ((s[1] & 0x0F) << 19) | (s[2] << 11) | (s[3] << 3) | (s[4] >> 5)
        if -126 <= e <= 127 and tz >= 29:
            self._f32((sign << 15) | ((e + 127) << 7) | (top23 >> 16), top23 & 0xFFFF)
            return
        if -149 <= e < -126 and tz >= 52 - (e + 149):
            k = e + 149
            m = (1 << k) | (top23 >> (23 - k))
            self._f32((sign << 15) | (m >> 16), m & 0xFFFF)
            return
        self._f64()

    def _f16(self, bits):
        self._room(3)
        struct.pack_into(">BH", self.buf, self.n, 0xF9, bits)
        self.n += 3

    def _f32(self, hi, lo):
        self._room(5)
        struct.pack_into(">BHH", self.buf, self.n, 0xFA, hi, lo)
        self.n += 5

    def _f64(self):
        self._room(9)
        self.buf[self.n] = 0xFB
        self.buf[self.n + 1:self.n + 9] = _F64
        self.n += 9

    def raw(self, b):
        k = len(b)
        self._room(k)
        self.buf[self.n:self.n + k] = b
        self.n += k

    def value(self, obj):
        if obj is None:
            self.null()
        elif obj is True or obj is False:
            self.bool(obj)
        elif isinstance(obj, int):
            self.int(obj)
        elif isinstance(obj, float):
            self.float(obj)
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            self.bytes(obj)
        elif isinstance(obj, str):
            self.text(obj)
        elif isinstance(obj, (list, tuple)):
            self.array(len(obj))
            for item in obj:
                self.value(item)
        elif isinstance(obj, dict):
            self.map(len(obj))
            keyed = []
            for k in obj:
                keyed.append((dumps(k, 64), k))
            keyed.sort(key=_first)
            prev = None
            for kb, k in keyed:
                if kb == prev:
                    raise CborError("duplicate cbor map key")
                prev = kb
                self.raw(kb)
                self.value(obj[k])
        else:
            raise CborError("cannot encode %s as cbor" % type(obj).__name__)


def _first(pair):
    return pair[0]


def dumps(obj, size=256):
    """Encode obj into a fresh bytes object (allocates; grows for big values)."""
    while True:
        w = Writer(bytearray(size))
        try:
            w.value(obj)
        except CborError as e:
            if e.args and e.args[0] == "cbor buffer full" and size < 65536:
                size *= 4
                continue
            raise
        return bytes(w.buf[:w.n])
