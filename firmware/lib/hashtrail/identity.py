# Device identity (docs/FORMATS.md "Device identity", "Device files"): the P-256 key
# made on the device at first boot and the device id derived from it.
#
# API
#   Identity(d, pub, created=False)  made by keyfile.load / keyfile.load_or_create (the
#       key file: first boot makes the key, later boots load and check it; see there)
#   Identity.pub            65-byte SEC1 uncompressed public key
#   Identity.device_id      16 bytes = SHA-256(pub)[:16]
#   Identity.device_id_hex  32 lowercase hex characters (what tools print)
#   Identity.created        True when the key was made in this boot
#   Identity.sign(digest) -> 64-byte r || s (ECDSA P-256, RFC 6979 nonce)
#   device_id_of(pub) -> 16 bytes
#   IdentityError           the key file is corrupt, or missing under an existing log
#
# The private scalar stays in Identity._d: no public attribute, method, repr or str
# returns, prints or serialises it. Only keyfile._write_key() writes it, to the key file.
#
# This module is what stays resident while the app runs: the key file code (parse,
# check, create) is boot-only and lives in keyfile.py, which imports this module and
# which devlog imports for the boot and drops again. The dependency goes one way
# (keyfile -> identity). Allocation: sign() allocates what p256.sign does.
import binascii
import hashlib

from hashtrail import p256


class IdentityError(Exception):
    pass


def device_id_of(pub):
    return hashlib.sha256(pub).digest()[:16]


class Identity:
    def __init__(self, d, pub, created=False):
        self._d = d
        self.pub = pub
        self.device_id = device_id_of(pub)
        self.device_id_hex = binascii.hexlify(self.device_id).decode()
        self.created = created

    def sign(self, digest):
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        return p256.sign(self._d, digest)

    def __repr__(self):
        return "<Identity %s>" % self.device_id_hex

    __str__ = __repr__

