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
# returns, prints or serialises it. Only _write_key() writes it, to the key file.
#
# Allocation: load/create allocate the file contents and a few bigints once per boot;
# sign() allocates what p256.sign does.
import binascii
import hashlib
import os
import struct

import p256

_MAGIC = b"HTK1"
_KEY_LEN = 4 + 32 + 65 + 4


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


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _log_has_segments(root):
    try:
        names = os.listdir(root + "/log")
    except OSError:
        return False
    for name in names:
        if name.endswith(".seg"):
            return True
    return False


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        if not _exists(path):
            raise


def _encode_key(d, pub):
    body = _MAGIC + d.to_bytes(32, "big") + pub
    return body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)


def _parse_key(raw):
    if len(raw) != _KEY_LEN:
        raise IdentityError("key file has the wrong size (%d bytes)" % len(raw))
    if raw[0:4] != _MAGIC:
        raise IdentityError("key file has a bad magic")
    crc = struct.unpack("<I", raw[_KEY_LEN - 4:])[0]
    if binascii.crc32(raw[:_KEY_LEN - 4]) & 0xFFFFFFFF != crc:
        raise IdentityError("key file CRC mismatch")
    d = int.from_bytes(raw[4:36], "big")
    pub = bytes(raw[36:101])
    if not 0 < d < p256.N:
        raise IdentityError("key file scalar out of range")
    if p256.public_key(d) != pub:
        raise IdentityError("key file public key does not match its private key")
    return d, pub


def _write_key(root, d, pub):
    _mkdir(root)
    tmp = root + "/key.tmp"
    with open(tmp, "wb") as f:
        f.write(_encode_key(d, pub))
    os.rename(tmp, root + "/key")


def load(root="/ht"):
    path = root + "/key"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        raise IdentityError("no key file at " + path)
    d, pub = _parse_key(raw)
    return Identity(d, pub)


def load_or_create(root="/ht"):
    if _exists(root + "/key"):
        return load(root)
    if _log_has_segments(root):
        raise IdentityError(
            "key file missing but the log has segments: refusing to make a new identity")
    d = p256.new_key()
    pub = p256.public_key(d)
    _write_key(root, d, pub)
    ident = load(root)  # read back: what is on flash is what we use
    ident.created = True
    return ident
