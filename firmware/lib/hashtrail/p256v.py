# P-256 ECDSA verification: the half of p256.py that only checks signatures.
#
# Why a module of its own: the running app only signs (readings, checkpoints); it
# verifies only in the boot check (logboot.py, bootfind.py) and in an update's manifest
# check (updcheck.py). p256.verify imports this module on its first call; logboot and
# updcheck drop it again when done (hashtrail.drop), so its code is not resident while
# the app samples, signs and serves MQTT near the heap budget (tests/firmware/
# test_app_mqtt.py). It uses p256's field helpers and its one _mul2 (the comb for u1*G,
# interleaved with u2's wNAF digits), so that loop exists once.
#
#   verify(pub, digest, sig) -> bool   what p256.verify returns (see there)
#
# How verify is fast: see p256.py. It interleaves u2*Q (width-4 wNAF over 4 odd
# multiples of Q, made with co-Z additions and one inverse) with u1*G (the comb
# columns, added in the last 32 of the 257 doubling steps), and compares x(R) with r in
# Jacobian coordinates (r * Z^2 == X): no final inverse.
try:
    from micropython import const
except ImportError:  # CPython (host-side tools) runs this file unchanged

    def const(x):
        return x


from hashtrail.p256 import _b2i, _bits2int, _inv, _mul2

# p256.py's curve constants, private here so they are folded into the bytecode
_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_A = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFC)  # -3
_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
# wNAF window for u2*Q in verify: digits odd in (-2^(w-1), 2^(w-1)), table of the
# 2^(w-2) odd multiples Q, 3Q, ... (w = 4: 4 points, ~51 additions for 256 bits). w = 5
# took ~1.2 KB more heap (8 points, 7 co-Z factors) for no time measurably saved (3.45
# against 3.50 ms a verify, unix port); verify runs in an update's manifest check, the
# transfer's heap peak, where an edge case of the app's heap left less than that.
_WNAF_W = const(4)
_WMASK = const((1 << _WNAF_W) - 1)
_WHALF = const(1 << (_WNAF_W - 1))
_WSIZE = const(1 << (_WNAF_W - 2))


def _wnaf(k):
    """Width-_WNAF_W NAF of 0 <= k < 2^256: bytearray(257) with digit i stored as
    d & 0xFF (0x81..0xFF are negative); non-zero digits are odd, |d| < 2^(w-1)."""
    out = bytearray(257)
    i = 0
    while k:
        if k & 1:
            d = k & _WMASK
            if d > _WHALF:
                d -= _WMASK + 1
            k -= d
            out[i] = d & 0xFF
        k >>= 1
        i += 1
    return out


def _odd_multiples(x, y):
    """Affine Q, 3Q, 5Q, ... (_WSIZE points) of Q = (x, y), as lists of x and of y.

    Co-Z arithmetic (Meloni; Goundar et al.): T = 2Q is made with Q rescaled to the
    same Z (DBLU), then each ZADDU adds T to the last odd multiple and rescales T to
    the new common Z, for 7 products instead of 16 for a general addition. The Z of
    the i-th multiple is Z0 * t_1 * ... * t_i, so one inverse of the last Z and a
    walk back through the t's make all of them affine. Q has order n (on the curve,
    cofactor 1): no multiple here is infinity and no ZADDU meets equal x.
    """
    # DBLU from affine Q (Z = 1, a = -3): T = 2Q with Z0 = 2y; Q becomes (S, 8L, Z0).
    E = y * y % _P
    L = E * E % _P
    S = (x * E << 2) % _P
    M = (x * x - 1) * 3 % _P
    TX = (M * M - (S << 1)) % _P
    TY = (M * (S - TX) - (L << 3)) % _P
    QX = S
    QY = (L << 3) % _P
    xs = [QX]
    ys = [QY]
    ts = []
    z = (y << 1) % _P
    for _ in range(_WSIZE - 1):
        # ZADDU: (Q + T, T rescaled), both with Z * t.
        t = (TX - QX) % _P
        C = t * t % _P
        W1 = TX * C % _P
        W2 = QX * C % _P
        D = TY - QY
        TY = TY * (W1 - W2) % _P
        QX = (D * D - W1 - W2) % _P
        QY = (D * (W1 - QX) - TY) % _P
        TX = W1
        z = z * t % _P
        ts.append(t)
        xs.append(QX)
        ys.append(QY)
    zi = _inv(z, _P)
    for i in range(_WSIZE - 1, -1, -1):
        zi2 = zi * zi % _P
        xs[i] = xs[i] * zi2 % _P
        ys[i] = ys[i] * zi2 % _P * zi % _P
        if i:
            zi = zi * ts[i - 1] % _P
    return xs, ys


def verify(pub, digest, sig):
    """True iff sig (r || s, 64 bytes) is a valid ECDSA signature of digest under pub
    (65-byte SEC1 uncompressed point). Any malformed input gives False."""
    try:
        if len(pub) != 65 or pub[0] != 4 or len(sig) != 64:
            return False
        x = _b2i(pub[1:33])
        y = _b2i(pub[33:65])
        r = _b2i(sig[:32])
        s = _b2i(sig[32:64])
        e = _bits2int(digest)
    except (TypeError, ValueError, IndexError):
        return False
    if x >= _P or y >= _P or (y * y - (x * x + _A) * x - _B) % _P:
        return False  # coordinates out of range or not on the curve (incl. (0, 0))
    if not (0 < r < _N and 0 < s < _N):
        return False
    w = _inv(s, _N)
    xs, ys = _odd_multiples(x, y)
    X, Y, Z = _mul2(e * w % _N, _wnaf(r * w % _N), xs, ys)
    if not Z:
        return False
    zz = Z * Z % _P
    # x(R) = X / Z^2 is in [0, p); x(R) mod n == r iff x(R) == r or x(R) == r + n.
    if (r * zz - X) % _P == 0:
        return True
    return r + _N < _P and ((r + _N) * zz - X) % _P == 0
