# Device checkpoints vs checkpoints built from RFC 9052 with cbor2 + python-ecdsa:
# with RFC 6979 nonces the signatures, and so the whole message, must be identical.
import binascii

import dtest
import fmtvec
from hashtrail import cose, p256

NEEDS = ("cose_vectors",)


def test_checkpoints_match_host_bytes():
    it = fmtvec.lines(dtest.data("cose_vectors.jsonl"))
    key = next(it)
    d = int(key["d"], 16)
    pub = binascii.unhexlify(key["pub"])
    from hashtrail import identity

    kid = identity.device_id_of(pub)
    count = 0
    for vec in it:
        nonce = None if vec["nonce"] is None else binascii.unhexlify(vec["nonce"])
        raw = cose.checkpoint(d, kid, int(vec["seq"]), binascii.unhexlify(vec["head"]),
                              fmtvec.opt_int(vec["t"]), int(vec["up"]), nonce)
        dtest.eq(binascii.hexlify(raw).decode(), vec["e"])
        count += 1
    dtest.eq(count, 12)


def test_signature_verifies_on_device():
    d = 0xC0FFEE
    pub = p256.public_key(d)
    kid = b"\x01" * 16
    raw = cose.checkpoint(d, kid, 7, b"\x22" * 32, None, 99)
    # d2 (tag 18) 84 (array 4) 55 (bstr 21: protected) a0 (unprotected {}) 58 LL payload
    dtest.eq(raw[0:3], b"\xd2\x84\x55")
    protected = raw[3:24]
    dtest.eq(raw[24:26], b"\xa0\x58")
    payload = raw[27:27 + raw[26]]
    dtest.eq(raw[27 + raw[26]:27 + raw[26] + 2], b"\x58\x40")
    sig = raw[-64:]
    digest = cose.sig_structure_digest(protected, payload)
    dtest.true(p256.verify(pub, digest, sig))
    dtest.false(p256.verify(pub, cose.sig_structure_digest(protected, payload + b"\x00"), sig))


def test_argument_checks():
    dtest.raises(cose.CoseError, cose.checkpoint, 5, b"k" * 15, 0, b"h" * 32, None, 0)
    dtest.raises(cose.CoseError, cose.checkpoint, 5, b"k" * 16, 0, b"h" * 31, None, 0)
    dtest.raises(cose.CoseError, cose.checkpoint, 5, b"k" * 16, 0, b"h" * 32, None, 0, b"")
    dtest.raises(cose.CoseError, cose.checkpoint, 5, b"k" * 16, 0, b"h" * 32, None, 0, b"n" * 33)
