# Device HMAC-SHA256 (hmac256): RFC 4231 test cases, and CPython's hmac on keys
# and messages around the 64-byte block boundary (tests/firmware/vectors_p256.py).
import dtest
from hashtrail import hmac256

BOARD = "esp32"
NEEDS = ("hmac_random",)

# RFC 4231 section 4: (key, data, HMAC-SHA-256). Case 5 (truncated output) omitted.
RFC4231 = (
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the "
     b"HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_rfc4231():
    for key, data, mac in RFC4231:
        dtest.eq(hmac256.digest(key, data), dtest.unhex(mac), mac)
        # The message may be given in parts.
        dtest.eq(hmac256.digest(key, data[:3], data[3:]), dtest.unhex(mac), mac)


def test_matches_cpython_hmac():
    n = 0
    with open(dtest.data("hmac_random.txt")) as f:
        for line in f:
            k, m, mac = line.split()
            key = b"" if k == "-" else dtest.unhex(k)
            msg = b"" if m == "-" else dtest.unhex(m)
            dtest.eq(hmac256.digest(key, msg), dtest.unhex(mac), line[:40])
            dtest.eq(hmac256.digest(bytearray(key), memoryview(msg)), dtest.unhex(mac))
            n += 1
    dtest.eq(n, 70)


def test_compare_digest():
    dtest.true(hmac256.compare_digest(b"abc", b"abc"))
    dtest.true(hmac256.compare_digest(b"", b""))
    dtest.false(hmac256.compare_digest(b"abc", b"abd"))
    dtest.false(hmac256.compare_digest(b"abc", b"ab"))
    dtest.false(hmac256.compare_digest(b"\x00", b"\x80"))
