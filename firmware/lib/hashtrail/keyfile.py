# The device key file (docs/FORMATS.md "Device files": <root>/key), boot-only code.
#
# Why a module of its own: reading, checking (the public key recomputed from the
# scalar) and making the key file run once per boot, and the heap is the device's
# scarcest resource (boards/esp32.json: 100 KB for everything). devlog.Log imports this
# module for the boot, calls load_or_create and drops it again (hashtrail.drop), so its
# code does not stay resident while the app runs (about 2 KB on the unix port). It
# builds an identity.Identity; identity.py does not import it (one-way dependency).
#
# API
#   load(root) -> identity.Identity
#       loads and checks <root>/key; raises identity.IdentityError when it is missing
#       or corrupt (size, magic, CRC, scalar out of range, public key not matching the
#       scalar)
#   load_or_create(root) -> identity.Identity
#       first boot (no key file and no log segments): makes a key with p256.new_key(),
#       writes <root>/key atomically (temp file + rename), reads it back and returns it
#       with .created = True. Later boots: load(root). Raises IdentityError as load()
#       does, and when the key file is missing while <root>/log already holds
#       segments: a device never silently takes a new identity under an existing log.
#   encode_key(d, pub) -> bytes                the key file's bytes
import binascii
import os
import struct

from hashtrail import p256
from hashtrail.identity import Identity, IdentityError

_MAGIC = b"HTK1"
_KEY_LEN = 4 + 32 + 65 + 4


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


def encode_key(d, pub):
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
        f.write(encode_key(d, pub))
    os.rename(tmp, root + "/key")


def load(root):
    path = root + "/key"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        raise IdentityError("no key file at " + path)
    d, pub = _parse_key(raw)
    return Identity(d, pub)


def load_or_create(root):
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
