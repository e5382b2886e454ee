# Device tests for p256: RFC 6979 vectors, edge scalars, the point at infinity,
# strict rejection of malformed input, new_key. Runs on the MicroPython VM at the
# esp32 heap budget (100 KB) from the compiled .mpy firmware.
import hashlib

import dtest
from hashtrail import p256

BOARD = "esp32"

# RFC 6979 appendix A.2.5: P-256, private key and public key.
RFC_D = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC_UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
RFC_UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
# (message, k, r, s) for SHA-256.
RFC_SHA256 = (
    (b"sample",
     0xA6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60,
     0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
     0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8),
    (b"test",
     0xD16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0,
     0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
     0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083),
)


def _i2b(x):
    return x.to_bytes(32, "big")


def _rfc_pub():
    return b"\x04" + _i2b(RFC_UX) + _i2b(RFC_UY)


def test_rfc6979_public_key():
    dtest.eq(p256.public_key(RFC_D), _rfc_pub())


def test_rfc6979_sha256_sample_and_test():
    for msg, k, r, s in RFC_SHA256:
        h = hashlib.sha256(msg).digest()
        dtest.eq(p256.rfc6979_k(RFC_D, h), k, msg)
        sig = p256.sign(RFC_D, h)
        dtest.eq(sig, _i2b(r) + _i2b(s), msg)
        dtest.eq(p256.sign(RFC_D, h, k), sig, "explicit k")
        dtest.true(p256.verify(_rfc_pub(), h, sig), msg)


def test_generator_multiples():
    g = b"\x04" + _i2b(p256.GX) + _i2b(p256.GY)
    dtest.eq(p256.public_key(1), g)
    # (n-1)*G = -G: same x, y = p - GY.
    dtest.eq(p256.public_key(p256.N - 1), b"\x04" + _i2b(p256.GX) + _i2b(p256.P - p256.GY))
    # 2*G from the doubling formula, independent of the comb table.
    X, Y, Z = p256._dbl(p256.GX, p256.GY, 1)
    zi = pow(Z, p256.P - 2, p256.P)
    two = b"\x04" + _i2b(X * zi * zi % p256.P) + _i2b(Y * zi * zi * zi % p256.P)
    dtest.eq(p256.public_key(2), two)


def test_out_of_range_private_keys_raise():
    h = hashlib.sha256(b"x").digest()
    for d in (0, -1, p256.N, p256.N + 1, 1 << 256):
        dtest.raises(ValueError, p256.public_key, d)
        dtest.raises(ValueError, p256.sign, d, h)
    for k in (0, p256.N):
        dtest.raises(ValueError, p256.sign, 1, h, k)
    for bad in (b"", h[:31], h + b"\x00"):
        dtest.raises(ValueError, p256.sign, 1, bad)


def test_inverse():
    for m in (p256.P, p256.N):
        for a in (1, 2, 3, m - 1, m - 2, 0x1234567 << 200, m >> 1):
            dtest.eq(a * p256._inv(a, m) % m, 1)
    dtest.raises(ValueError, p256._inv, 0, p256.N)


def test_sum_at_infinity_is_rejected():
    # Q = G (d = 1): u1*G + u2*G = (e + r)/s * G is the point at infinity when
    # e = n - r. verify must return False, not raise.
    pub = p256.public_key(1)
    for r in (1, 12345, p256.N - 1, p256.N >> 1):
        e = p256.N - r
        for s in (1, 7, p256.N - 1):
            dtest.false(p256.verify(pub, _i2b(e), _i2b(r) + _i2b(s)), "r=%x s=%x" % (r, s))
    # And the additions inside the loop that meet equal or opposite points: for
    # Q = G, u1 = u2 walks both scalars in step (e = r).
    for r in (1, 2, 3, 0xFFFFFFFF, p256.N - 1):
        s = (2 * r) % p256.N  # u1 + u2 = 2r/s = 1: R = G, so x(R) = GX
        ok = p256.verify(pub, _i2b(r), _i2b(r) + _i2b(s))
        dtest.eq(ok, p256.GX % p256.N == r, "r=%x" % r)
    r = p256.GX % p256.N
    dtest.true(p256.verify(pub, _i2b(r), _i2b(r) + _i2b(2 * r % p256.N)), "u1 = u2, R = G")


def test_point_off_curve_and_encodings_rejected():
    h = hashlib.sha256(b"sample").digest()
    sig = p256.sign(RFC_D, h)
    good = _rfc_pub()
    bad_pubs = [
        b"", b"\x00", b"\x04" + bytes(64),  # infinity encodings / (0, 0)
        b"\x02" + good[1:33], b"\x03" + good[1:33],  # compressed: not accepted
        b"\x05" + good[1:], b"\x06" + good[1:], b"\x07" + good[1:],
        good[:64], good + b"\x00",
        b"\x04" + _i2b(RFC_UX) + _i2b(RFC_UY ^ 1),  # off the curve
        b"\x04" + _i2b(p256.P) + _i2b(RFC_UY),  # x >= p
        b"\x04" + _i2b(RFC_UX) + _i2b(p256.P),  # y >= p
        b"\x04" + _i2b(RFC_UX) + _i2b(p256.P - RFC_UY),  # -Q: on the curve, wrong key
        b"\x04" + _i2b(p256.GX) + _i2b(p256.GY),  # G: on the curve, wrong key
    ]
    for pub in bad_pubs:
        dtest.false(p256.verify(pub, h, sig), pub)
    dtest.true(p256.verify(good, h, sig))


def test_signature_range_checks():
    h = hashlib.sha256(b"sample").digest()
    pub = _rfc_pub()
    sig = p256.sign(RFC_D, h)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    dtest.true(p256.verify(pub, h, sig))
    for rr, ss in ((0, s), (r, 0), (0, 0), (r + p256.N, s), (r, s + p256.N),
                   (p256.N, s), (r, p256.N), (p256.N - r, s)):
        if rr >= 1 << 256 or ss >= 1 << 256:
            continue
        dtest.false(p256.verify(pub, h, _i2b(rr) + _i2b(ss)), "r=%x s=%x" % (rr, ss))
    # (r, n - s) is the other valid signature for the same R (ECDSA malleability).
    dtest.true(p256.verify(pub, h, _i2b(r) + _i2b(p256.N - s)))
    # Every single-bit flip of the signature, the digest or the key fails.
    for i in range(512):
        bad = bytearray(sig)
        bad[i >> 3] ^= 1 << (i & 7)
        dtest.false(p256.verify(pub, h, bytes(bad)), "sig bit %d" % i)
    for i in range(0, 256, 7):
        bad = bytearray(h)
        bad[i >> 3] ^= 1 << (i & 7)
        dtest.false(p256.verify(pub, bytes(bad), sig), "digest bit %d" % i)
    for i in range(8, 520, 11):
        bad = bytearray(pub)
        bad[i >> 3] ^= 1 << (i & 7)
        dtest.false(p256.verify(bytes(bad), h, sig), "pub bit %d" % i)


def test_verify_never_raises_on_garbage():
    import os

    h = hashlib.sha256(b"sample").digest()
    pub = _rfc_pub()
    sig = p256.sign(RFC_D, h)
    for n in range(0, 140):
        junk = os.urandom(n)
        dtest.false(p256.verify(junk, h, sig), "pub len %d" % n)
        dtest.false(p256.verify(pub, h, junk), "sig len %d" % n)
        p256.verify(pub, junk, sig)  # any digest length is a defined result
        dtest.false(p256.verify(junk, junk, junk), "all junk len %d" % n)
    for odd in (None, 5, "x" * 65, [4] * 65, b"\x04" * 65, bytearray(65), memoryview(bytes(64))):
        dtest.false(p256.verify(odd, h, sig), repr(odd))
        dtest.false(p256.verify(pub, h, odd), repr(odd))
        dtest.false(p256.verify(pub, odd, sig), repr(odd))
    # bytes-like inputs are accepted
    dtest.true(p256.verify(bytearray(pub), bytearray(h), bytearray(sig)))
    dtest.true(p256.verify(memoryview(pub), memoryview(h), memoryview(sig)))


def test_new_key_range_and_rejection_sampling():
    seen = set()
    for _ in range(40):
        d = p256.new_key()
        dtest.true(0 < d < p256.N)
        seen.add(d)
    dtest.eq(len(seen), 40, "new_key repeated a key")

    class SeqRandom:
        """os stand-in that replays chosen 32-byte draws (tests the rejection loop)."""

        def __init__(self, draws):
            self.draws = list(draws)
            self.calls = 0

        def urandom(self, n):
            dtest.eq(n, 32)
            self.calls += 1
            return self.draws.pop(0)

    real = p256.os
    try:
        rng = SeqRandom([b"\xff" * 32, bytes(32), _i2b(p256.N), _i2b(p256.N - 1)])
        p256.os = rng
        dtest.eq(p256.new_key(), p256.N - 1)
        dtest.eq(rng.calls, 4)
        rng = SeqRandom([_i2b(1)])
        p256.os = rng
        dtest.eq(p256.new_key(), 1)
    finally:
        p256.os = real


def test_sign_verify_roundtrip_new_keys():
    for i in range(10):
        d = p256.new_key()
        pub = p256.public_key(d)
        h = hashlib.sha256(b"msg %d" % i).digest()
        sig = p256.sign(d, h)
        dtest.true(p256.verify(pub, h, sig))
        dtest.false(p256.verify(pub, hashlib.sha256(b"other").digest(), sig))
