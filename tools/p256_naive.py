# Naive P-256 ECDSA: plain double-and-add in Jacobian coordinates, written straight
# from SEC 1 / FIPS 186-4 and RFC 6979. Runs under MicroPython and CPython.
#
# Why it exists: it is the baseline the device benchmark measures the fast
# firmware/lib/hashtrail/p256.py against in the same run, and a second, obviously-correct
# implementation for tests to compare with. It is not shipped to boards.
import hashlib

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def _inv(x, m):
    # pow(x, -1, m) returns 0 on MicroPython: use Fermat (m is prime).
    return pow(x, m - 2, m)


def _double(X, Y, Z):
    if Z == 0 or Y == 0:
        return 0, 1, 0
    YY = Y * Y % P
    S = 4 * X * YY % P
    ZZ = Z * Z % P
    M = 3 * (X - ZZ) * (X + ZZ) % P
    X3 = (M * M - 2 * S) % P
    Y3 = (M * (S - X3) - 8 * YY * YY) % P
    Z3 = 2 * Y * Z % P
    return X3, Y3, Z3


def _add(X1, Y1, Z1, X2, Y2, Z2):
    if Z1 == 0:
        return X2, Y2, Z2
    if Z2 == 0:
        return X1, Y1, Z1
    Z1Z1 = Z1 * Z1 % P
    Z2Z2 = Z2 * Z2 % P
    U1 = X1 * Z2Z2 % P
    U2 = X2 * Z1Z1 % P
    S1 = Y1 * Z2 * Z2Z2 % P
    S2 = Y2 * Z1 * Z1Z1 % P
    if U1 == U2:
        if S1 != S2:
            return 0, 1, 0
        return _double(X1, Y1, Z1)
    H = (U2 - U1) % P
    R = (S2 - S1) % P
    HH = H * H % P
    HHH = H * HH % P
    V = U1 * HH % P
    X3 = (R * R - HHH - 2 * V) % P
    Y3 = (R * (V - X3) - S1 * HHH) % P
    Z3 = H * Z1 * Z2 % P
    return X3, Y3, Z3


def _affine(X, Y, Z):
    if Z == 0:
        return None
    zi = _inv(Z, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def mul(k, x, y):
    """k * (x, y) by left-to-right double-and-add; returns affine (x, y) or None."""
    RX, RY, RZ = 0, 1, 0
    for i in range(255, -1, -1):
        RX, RY, RZ = _double(RX, RY, RZ)
        if (k >> i) & 1:
            RX, RY, RZ = _add(RX, RY, RZ, x, y, 1)
    return _affine(RX, RY, RZ)


def _i2b(x):
    return x.to_bytes(32, "big")


def _b2i(b):
    return int.from_bytes(b, "big")


def public_key(d):
    x, y = mul(d, GX, GY)
    return b"\x04" + _i2b(x) + _i2b(y)


def _hmac(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def rfc6979_k(d, digest):
    """RFC 6979 section 3.2 nonce for SHA-256 and a 256-bit group order."""
    x = _i2b(d)
    h1 = _i2b(_b2i(digest) % N)
    V = b"\x01" * 32
    K = b"\x00" * 32
    K = _hmac(K, V + b"\x00" + x + h1)
    V = _hmac(K, V)
    K = _hmac(K, V + b"\x01" + x + h1)
    V = _hmac(K, V)
    while True:
        V = _hmac(K, V)
        k = _b2i(V)
        if 1 <= k < N:
            return k
        K = _hmac(K, V + b"\x00")
        V = _hmac(K, V)


def sign(d, digest, k=None):
    e = _b2i(digest)
    while True:
        if k is None:
            k = rfc6979_k(d, digest)
        x, _ = mul(k, GX, GY)
        r = x % N
        s = _inv(k, N) * (e + r * d) % N
        if r and s:
            return _i2b(r) + _i2b(s)
        k = None  # practically unreachable; RFC 6979 would continue the HMAC loop


def verify(pub, digest, sig):
    if len(pub) != 65 or pub[0] != 4 or len(sig) != 64:
        return False
    x, y = _b2i(pub[1:33]), _b2i(pub[33:])
    if x >= P or y >= P or (y * y - x * x * x - A * x - B) % P:
        return False
    r, s = _b2i(sig[:32]), _b2i(sig[32:])
    if not (0 < r < N and 0 < s < N):
        return False
    e = _b2i(digest)
    w = _inv(s, N)
    u1, u2 = e * w % N, r * w % N
    X1, Y1, Z1 = 0, 1, 0
    for i in range(255, -1, -1):  # Shamir's trick is an optimisation; keep it plain
        X1, Y1, Z1 = _double(X1, Y1, Z1)
        if (u1 >> i) & 1:
            X1, Y1, Z1 = _add(X1, Y1, Z1, GX, GY, 1)
        if (u2 >> i) & 1:
            X1, Y1, Z1 = _add(X1, Y1, Z1, x, y, 1)
    pt = _affine(X1, Y1, Z1)
    return pt is not None and pt[0] % N == r
