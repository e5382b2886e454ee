# P-256 ECDSA with SHA-256 for the device: key generation, signing, verification.
#
# API (stable; identity, cose and others call it):
#   new_key() -> d                   private scalar in [1, n-1] from os.urandom
#   public_key(d) -> 65 bytes         SEC1 uncompressed 04 || X || Y
#   sign(d, digest, k=None) -> 64 bytes r || s; k=None: RFC 6979 nonce (HMAC-SHA256),
#                                     byte-identical to python-ecdsa's
#                                     sign_digest_deterministic(digest, hashlib.sha256)
#   verify(pub, digest, sig) -> bool  strict; returns False for anything malformed and
#                                     never raises on bytes-like input. Its code is
#                                     p256v.py, loaded on the first call: the running
#                                     app only signs (see verify below)
#   rfc6979_k(d, digest) -> k         the first RFC 6979 nonce (tests use it)
#   N, P, GX, GY                      curve order, field prime, generator
#
# How it is fast (tools/bench_device.py measures it against tools/p256_naive.py):
# - k*G uses a fixed-base comb (8 teeth spaced 32 bits apart, 255 affine points):
#   31 doublings and at most 32 mixed additions instead of 256 and ~128. The table
#   is read row by row (one 64-byte seek + readinto per comb column, into one
#   preallocated buffer) from p256_table.bin next to this module when the firmware
#   ships it (.mpy builds: /lib/hashtrail/p256_table.bin), else taken from the bytes
#   constant p256_table.COMB (frozen builds keep it in flash; from .mpy it costs 16 KB
#   heap). The file counts only in the module's own folder under a sys.path entry: a
#   module whose __file__ is just its package path ("hashtrail/p256.py", as a frozen
#   one's is) never reads one from the current folder. At import the file's SHA-256 is
#   checked once against _TABLE_SHA256 (written by tools/gen_p256_table.py); a damaged
#   or truncated file raises RuntimeError instead of signing with wrong points.
# - Modular inverses use the extended Euclidean algorithm in Python: about 10x
#   faster here than Fermat's pow(x, m - 2, m) (pow(x, -1, m) returns 0 on this
#   MicroPython). Signing needs two inverses (affine x of R, and 1/k).
# - verify (p256v.py) interleaves u2*Q (width-4 wNAF over 4 odd multiples of Q, made with
#   co-Z additions and one inverse) with u1*G (the comb columns, added in
#   the last 32 of the 257 doubling steps, so G costs no doublings of its own), and
#   compares x(R) with r in Jacobian coordinates (r * Z^2 == X): no final inverse.
# - Field elements are Python ints reduced with `% P` (C code) after each product;
#   sums of products are reduced once ("lazy" reduction).
#
# Points: Jacobian (X, Y, Z) stands for affine (X/Z^2, Y/Z^3); Z == 0 is the point at
# infinity. Every addition checks the exceptional cases (equal points, opposite
# points) so crafted scalars (Wycheproof's Shamir edge cases) are handled exactly.
#
# Not constant-time: MicroPython integers take data-dependent time, so an attacker
# who can time many signatures on the device itself could learn about the key. The
# threat model is tampering with data after it was signed, not side channels.
#
# Allocation: every big-int operation allocates a new int; the GC reclaims them, and
# verify's ~5,000 operations make several collections per call. Resident after
# import (module + hmac256, table in the file) is ~9 KB (~24 KB with the table as a
# constant from .mpy); tools/bench_device.py bisects the smallest heap running import
# + sign + verify; tests/firmware/test_p256_heap.py checks the budget and a run with
# only ~20 KB free.
import os

from hashtrail import hmac256

try:
    from micropython import const
except ImportError:  # CPython (host-side tools) runs this file unchanged

    def const(x):
        return x


P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
A = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFC)  # -3
B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)
_NO_DIGITS = bytes(32)  # the wNAF of u2 = 0, as far as the comb-only loop reads it
_TABLE_LEN = const(16320)  # 255 rows of X || Y, 64 bytes each
_ROW = bytearray(64)  # one table row read from the file (and the hashing chunk)


# SHA-256 of p256_table.bin (tools/gen_p256_table.py writes this line; --check checks it)
_TABLE_SHA256 = b"\xa9\xca\x49\x6a\x52\xe9\x32\x90\x82\x85\x41\xdc\xe5\x7d\xce\xd5\xe0\x29\x24\x8b\x0e\x60\xc1\xb1\x05\x8a\xa1\x4c\xaf\x36\x11\x2c"


def _find_table():
    """Path of p256_table.bin next to this module, or None (then COMB is imported).

    Loaded from .mpy, the comb table as a bytes constant would take 16 KB of heap, so
    the firmware ships it as a file too (/lib/hashtrail/p256_table.bin) and reads one
    64-byte row per comb column into a preallocated buffer. A frozen build does not
    ship the file: there the p256_table module's constant lives in flash at no heap
    cost, and its __file__ is the path inside the image, "hashtrail/p256.py", with no
    folder before the package, so no file is looked for: a stray
    hashtrail/p256_table.bin under the current folder is not the module's and is never
    read. (An import relative to the current folder, sys.path entry "", looks the same
    and takes the constant too.)

    A file that is there is checked once, here: its size, then its SHA-256, hashed in
    64-byte chunks through _ROW (no allocation per chunk). A mismatch raises
    RuntimeError: a damaged table would make wrong signatures without any error."""
    try:
        here = __file__
    except NameError:
        return None
    cut = here.rfind("/")
    if cut < 0 or here.startswith("hashtrail/"):  # no folder before the package: frozen
        return None
    path = here[:cut + 1] + "p256_table.bin"
    try:
        size = os.stat(path)[6]
    except OSError:
        return None
    if size != _TABLE_LEN:
        raise RuntimeError("p256 table %s: %d bytes, expected %d" % (path, size, _TABLE_LEN))
    import hashlib

    h = hashlib.sha256()
    row = _ROW
    with open(path, "rb") as f:
        while True:
            n = f.readinto(row)
            if not n:
                break
            h.update(row if n == 64 else row[:n])
    if h.digest() != _TABLE_SHA256:
        raise RuntimeError("p256 table %s is corrupted (SHA-256 mismatch): reinstall it"
                           % path)
    return path


_TABLE_FILE = _find_table()
del _find_table  # runs once: its code need not stay resident
if _TABLE_FILE is None:
    from hashtrail.p256_table import COMB
else:
    COMB = None
_MASK256 = const((1 << 256) - 1)


def _inv(a, m):
    """a^-1 mod m for 0 < a < m, gcd(a, m) == 1 (extended Euclid; m is prime here)."""
    b = m
    x0 = 1
    x1 = 0
    while b:
        q = a // b
        a, b = b, a - q * b
        x0, x1 = x1, x0 - q * x1
    if a != 1:
        raise ValueError("not invertible")
    return x0 % m


def _dbl(X, Y, Z):
    """2*(X, Y, Z) for Z != 0 (dbl-2001-b, a = -3). P-256 has no point of order 2,
    so Y != 0 and the result is never infinity. The hot loops inline this code."""
    d = Z * Z % P
    g = Y * Y % P
    b = X * g % P
    a = (X - d) * (X + d) * 3 % P
    X3 = (a * a - (b << 3)) % P
    return X3, (a * ((b << 2) - X3) - ((g * g) << 3)) % P, (Y * Z << 1) % P


def _madd_h0(X1, Y1, Z1, R):
    """Mixed addition (X1, Y1, Z1) + (x2, y2) when the x coordinates are equal
    (H == 0): equal points (R == 0) double, opposite points give infinity.

    The general case (mmadd-2004-hmv style, 11 products) is inlined in the hot loops:
        z = Z1^2, H = x2*z - X1, R = y2*z*Z1 - Y1, HH = H^2, HHH = H*HH, V = X1*HH,
        X3 = R^2 - HHH - 2V, Y3 = R*(V - X3) - Y1*HHH, Z3 = Z1*H
    """
    if R:
        return 0, 1, 0
    return _dbl(X1, Y1, Z1)


def _i2b(x):
    return x.to_bytes(32, "big")


def _b2i(b):
    return int.from_bytes(b, "big")


def _bits2int(digest):
    """Leftmost 256 bits of the digest as an integer (SEC 1 / RFC 6979 bits2int)."""
    e = int.from_bytes(digest, "big")
    n = len(digest)
    if n > 32:
        e >>= (n - 32) * 8
    return e


def public_key(d):
    """SEC1 uncompressed public key (65 bytes) of the private scalar d."""
    if not 0 < d < N:
        raise ValueError("private key out of range")
    X, Y, Z = _mul2(d, None, None, None)
    zi = _inv(Z, P)
    zi2 = zi * zi % P
    return b"\x04" + _i2b(X * zi2 % P) + _i2b(Y * zi2 % P * zi % P)


def _rfc6979(d, digest):
    """RFC 6979 section 3.2 nonce candidates in [1, n-1] (SHA-256, qlen = 256)."""
    mac = hmac256.digest
    x = _i2b(d)
    h1 = _i2b(_bits2int(digest) % N)
    V = b"\x01" * 32
    K = mac(b"\x00" * 32, V, b"\x00", x, h1)
    V = mac(K, V)
    K = mac(K, V, b"\x01", x, h1)
    V = mac(K, V)
    while True:
        V = mac(K, V)
        k = _b2i(V)
        if 0 < k < N:
            yield k
        K = mac(K, V, b"\x00")
        V = mac(K, V)


def rfc6979_k(d, digest):
    """The first RFC 6979 nonce for (d, digest): what sign() uses unless r or s is 0."""
    for k in _rfc6979(d, digest):
        return k


def _sign_k(d, e, k):
    X, _, Z = _mul2(k, None, None, None)
    zi = _inv(Z, P)
    r = X * (zi * zi % P) % P % N
    if not r:
        return 0, 0
    return r, _inv(k, N) * (e + r * d) % N


def sign(d, digest, k=None):
    """ECDSA signature r || s (64 bytes) of a 32-byte digest with private scalar d.

    k=None takes the nonce from RFC 6979 and, like python-ecdsa, moves on to the
    next RFC 6979 candidate in the (astronomically unlikely) case r or s is 0.
    An explicit k (tests only) must be in [1, n-1] and give non-zero r and s.
    """
    if not 0 < d < N:
        raise ValueError("private key out of range")
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    e = _b2i(digest)
    if k is not None:
        if not 0 < k < N:
            raise ValueError("nonce out of range")
        r, s = _sign_k(d, e, k)
        if not s:
            raise ValueError("nonce gives r or s = 0")
        return _i2b(r) + _i2b(s)
    for k in _rfc6979(d, digest):
        r, s = _sign_k(d, e, k)
        if s:
            return _i2b(r) + _i2b(s)


def verify(pub, digest, sig):
    """True iff sig (r || s, 64 bytes) is a valid ECDSA signature of digest under pub
    (65-byte SEC1 uncompressed point). Any malformed input gives False.

    The code is in p256v.py, loaded on the first call and left loaded: verifying is
    the boot check's and an update's work, never the running app's, so whoever is done
    with it drops p256v again (logboot.py after the boot, updcheck.py after the
    manifest), and the app runs with only the signing code resident."""
    from hashtrail import p256v

    return p256v.verify(pub, digest, sig)


def _mul2(u1, u2, x, y):
    """u1*G + u2*Q in Jacobian coordinates (Z == 0: infinity). u2 is not the scalar
    but its wNAF digits, and x, y the lists of Q's odd multiples' coordinates (p256v.py
    makes both: verify); u2 None gives u1*G alone (sign, public_key) and skips
    everything about Q. (The parameters keep their old names: every new name is one
    more qstr for good, docs/MQTT.md "Heap".)

    u1*G is the fixed-base comb: column i (31 down to 0) indexes COMB with bit
    i + 32*j of u1 as bit j of the index, and u1*G = sum 2^i * COMB[index_i].
    With u2 there is one accumulator and 257 doublings: u2's wNAF digits are
    added at their bit, and the comb columns in the last 32 steps (column i is
    worth 2^i, exactly what the remaining i doublings make of it). One function
    serves both so the code (resident in RAM when loaded from .mpy) exists once;
    _dbl and the general case of mixed addition are inlined (a call costs ~15%
    of a doubling here).
    """
    if u2 is not None:
        top = 256
    else:
        u2 = _NO_DIGITS
        top = 31
    kb = u1.to_bytes(32, "big")
    T = COMB
    f = None if T is not None else open(_TABLE_FILE, "rb")
    row = _ROW
    X = Y = Z = 0
    try:
        for i in range(top, -1, -1):
            if Z:
                d = Z * Z % P
                g = Y * Y % P
                b = X * g % P
                a = (X - d) * (X + d) * 3 % P
                X = (a * a - (b << 3)) % P
                Z = (Y * Z << 1) % P
                Y = (a * ((b << 2) - X) - ((g * g) << 3)) % P
            v = u2[i]
            if i < 32:
                o = 31 - (i >> 3)
                sh = i & 7
                idx = ((kb[o] >> sh) & 1 | ((kb[o - 4] >> sh) & 1) << 1
                       | ((kb[o - 8] >> sh) & 1) << 2 | ((kb[o - 12] >> sh) & 1) << 3
                       | ((kb[o - 16] >> sh) & 1) << 4 | ((kb[o - 20] >> sh) & 1) << 5
                       | ((kb[o - 24] >> sh) & 1) << 6 | ((kb[o - 28] >> sh) & 1) << 7)
            else:
                idx = 0
            # Up to two additions this step: the wNAF digit of u2, then the comb column.
            while v or idx:
                if v:
                    if v < 128:
                        x2 = x[v >> 1]
                        y2 = y[v >> 1]
                    else:
                        x2 = x[(256 - v) >> 1]
                        y2 = P - y[(256 - v) >> 1]  # -(2m+1)Q: made when used
                    v = 0
                else:
                    off = (idx - 1) << 6
                    if f is None:
                        x2 = _b2i(T[off:off + 64])
                    else:
                        f.seek(off)
                        if f.readinto(row) != 64:
                            raise OSError("p256 table file short")
                        x2 = _b2i(row)
                    y2 = x2 & _MASK256
                    x2 >>= 256
                    idx = 0
                if not Z:
                    X, Y, Z = x2, y2, 1
                    continue
                z = Z * Z % P
                H = (x2 * z - X) % P
                R = (y2 * z % P * Z - Y) % P
                if H:
                    HH = H * H % P
                    HHH = H * HH % P
                    V = X * HH % P
                    X = (R * R - HHH - (V << 1)) % P
                    Y = (R * (V - X) - Y * HHH) % P
                    Z = Z * H % P
                else:
                    X, Y, Z = _madd_h0(X, Y, Z, R)
    finally:
        if f is not None:
            f.close()
    return X, Y, Z


def new_key():
    """A private scalar in [1, n-1] from os.urandom, by rejection sampling."""
    while True:
        d = _b2i(os.urandom(32))
        if 0 < d < N:
            return d
