# Device identity (docs/FORMATS.md "Device identity", "Device files"): the P-256 key
# made on the device at first boot and the device id derived from it.
#
# API
#   load_or_create(root="/ht") -> Identity
#       first boot (no key file and no log segments): makes a key with p256.new_key(),
#       writes <root>/key atomically (temp file + rename), returns it with
#       .created = True. Later boots: loads and checks the key file.
#       Raises IdentityError when the key file is corrupt (size, magic, CRC, scalar
#       out of range, public key not matching the scalar) or when the key file is
#       missing while <root>/log already holds segments: a device never silently
#       takes a new identity under an existing log.
#   Identity.pub            65-byte SEC1 uncompressed public key
#   Identity.device_id      16 bytes = SHA-256(pub)[:16]
#   Identity.device_id_hex  32 lowercase hex characters (what tools print)
#   Identity.created        True when the key was made in this boot
#   Identity.sign(digest) -> 64-byte r || s (ECDSA P-256, RFC 6979 nonce)
#   device_id_of(pub) -> 16 bytes
#
# The private scalar stays in Identity._d: no public attribute, method, repr or str
# returns, prints or serialises it. Only keyfile._write_key() writes it, to the key file.
#
# The key file code (parse, check, create) is boot-only and lives in keyfile.py:
# load()/load_or_create() import it and drop it again, so it is not resident while the
# app runs. Allocation: load/create allocate the file contents and a few bigints once
# per boot; sign() allocates what p256.sign does.
import binascii
import hashlib

from hashtrail import drop, p256


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


def _keyfile(fn, root):
    try:
        from hashtrail import keyfile

        return getattr(keyfile, fn)(root)
    finally:
        drop("keyfile")


def load(root="/ht"):
    return _keyfile("load", root)


def load_or_create(root="/ht"):
    return _keyfile("load_or_create", root)
