# HMAC-SHA256 (RFC 2104) for the device: MicroPython has no `hmac` module.
#
# Used by p256 for RFC 6979 deterministic nonces, and by anything else on the device
# that needs a keyed hash. The key is padded to the 64-byte SHA-256 block and XORed
# with the ipad/opad bytes as one big-int XOR each (done in C), not byte by byte.
#
# Allocation: two 64-byte pads per call, two sha256 objects, the 32-byte inner digest.
# Built-in sha256 objects cannot be copied, so the padded keys are re-hashed per call.
import hashlib

try:
    from micropython import const
except ImportError:  # CPython (host-side tools) runs this file unchanged

    def const(x):
        return x


_IPAD = const(0x36363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636)
_OPAD = const(0x5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C)
_BLOCK = const(64)


def digest(key, *parts):
    """HMAC-SHA256 of the concatenation of `parts` (bytes-like) under `key`.

    Passing the message in parts avoids building `V || 0x00 || x || h1` style
    concatenations in the caller: each part is fed to the hash in turn.
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    k = int.from_bytes(bytes(key) + bytes(_BLOCK - len(key)), "big")
    h = hashlib.sha256((k ^ _IPAD).to_bytes(_BLOCK, "big"))
    for p in parts:
        h.update(p)
    inner = h.digest()
    h = hashlib.sha256((k ^ _OPAD).to_bytes(_BLOCK, "big"))
    h.update(inner)
    return h.digest()


def compare_digest(a, b):
    """Equality of two byte strings in time independent of where they differ."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0
