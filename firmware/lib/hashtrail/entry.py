# Log entries (docs/FORMATS.md "Entry"): the bytes the device chains and signs.
#
# API
#   VERSION, KIND_READING, KIND_BOOT, KIND_TIME_SET, KIND_KEY_CREATED, KIND_OVERFLOW,
#   KIND_ACK, KIND_LOG_ALTERED, KIND_UPDATE, KIND_UPDATE_REVERTED,
#   POLICY_CHECKPOINTS, POLICY_EVERY_ENTRY    protocol numbers
#   genesis_prev(pub) -> bytes(32)            prev of the entry with seq 0
#   encode(w, seq, t, up, boot, prev, fw, kind, body) -> int
#       resets cbor.Writer w and writes one entry into its buffer; returns the length.
#       For KIND_READING, body is a list of (name, unit, value) tuples (unit may be
#       None) written as a SenML pack; for other kinds body is a dict made by the
#       *_body() helpers below (or any canonical-encodable value).
#   entry_hash(b) -> bytes(32)                SHA-256 of the entry bytes
#   boot_body(cause) time_set_body(prev_t, new_t) key_body(pub, policy)
#   overflow_body(missed, reason) ack_body(acked_seq, first_held)
#   altered_body(first_seq, reason)                                  -> dict
#   (the update and update-reverted entries' bodies are made by fwboot.py, which
#   appends them)
#   EntryError (ValueError)                   a field of the wrong type or size
#
# Allocation: encode() allocates only small ints plus the UTF-8 copies of the firmware
# version and the reading names/units (cbor.Writer.text); a dict body allocates its
# keys' encodings for sorting. entry_hash() allocates one sha256 object and 32 bytes.
import hashlib

from micropython import const

from hashtrail import cbor

VERSION = const(1)

KIND_READING = const(0)
KIND_BOOT = const(1)
KIND_TIME_SET = const(2)
KIND_KEY_CREATED = const(3)
KIND_OVERFLOW = const(4)
KIND_ACK = const(5)
KIND_LOG_ALTERED = const(6)
KIND_UPDATE = const(7)
KIND_UPDATE_REVERTED = const(8)
_KIND_MAX = const(8)

# Signing policy, fixed at first boot and recorded in entry 0 (key-created body key 2).
POLICY_CHECKPOINTS = const(0)  # only checkpoints are signed: entries unprotected until one
POLICY_EVERY_ENTRY = const(1)  # every entry carries its own signature when written

# SenML CBOR labels (RFC 8428 section 6): n = 0, u = 1, v = 2.
_SENML_N = const(0)
_SENML_U = const(1)
_SENML_V = const(2)

RESET_CAUSES = ("power_on", "hard", "soft", "watchdog", "deepsleep", "brownout", "unknown")

_GENESIS_TAG = b"hashtrail/genesis/v1"


class EntryError(ValueError):
    pass


def genesis_prev(pub):
    if len(pub) != 65 or pub[0] != 4:
        raise EntryError("public key must be 65-byte SEC1 uncompressed")
    h = hashlib.sha256(_GENESIS_TAG)
    h.update(pub)
    return h.digest()


def entry_hash(b):
    return hashlib.sha256(b).digest()


def _uint(v, what):
    if not isinstance(v, int) or v < 0:
        raise EntryError(what + " must be an unsigned integer")
    return v


def encode(w, seq, t, up, boot, prev, fw, kind, body):
    _uint(seq, "seq")
    _uint(up, "up")
    _uint(boot, "boot")
    _uint(kind, "kind")
    if t is not None:
        _uint(t, "t")
    if kind > _KIND_MAX:
        raise EntryError("unknown entry kind")
    if len(prev) != 32:
        raise EntryError("prev must be 32 bytes")
    w.reset()
    w.map(9)
    w.uint(0)
    w.uint(VERSION)
    w.uint(1)
    w.uint(seq)
    w.uint(2)
    if t is None:
        w.null()
    else:
        w.uint(t)
    w.uint(3)
    w.uint(up)
    w.uint(4)
    w.uint(boot)
    w.uint(5)
    w.bytes(prev)
    w.uint(6)
    w.text(fw)
    w.uint(7)
    w.uint(kind)
    w.uint(8)
    if kind == KIND_READING:
        _senml(w, body)
    else:
        w.value(body)
    return w.n


def _senml(w, readings):
    w.array(len(readings))
    for r in readings:
        name, unit, value = r
        if not isinstance(name, str) or not name:
            raise EntryError("reading name must be a non-empty str")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EntryError("reading value must be a number")
        w.map(2 if unit is None else 3)
        w.uint(_SENML_N)
        w.text(name)
        if unit is not None:
            w.uint(_SENML_U)
            w.text(unit)
        w.uint(_SENML_V)
        if isinstance(value, float):
            w.float(value)
        else:
            w.int(value)


def boot_body(cause):
    if cause not in RESET_CAUSES:
        cause = "unknown"
    return {1: cause}


def time_set_body(prev_t, new_t):
    if prev_t is not None:
        _uint(prev_t, "previous time")
    return {1: prev_t, 2: _uint(new_t, "new time"), 3: "host"}


def key_body(pub, policy=POLICY_EVERY_ENTRY):
    # The policy is device-signed history: a host reads it from entry 0 and holds the
    # device to it, whatever /board.json says later (docs/FORMATS.md "Entry").
    if len(pub) != 65:
        raise EntryError("public key must be 65 bytes")
    if policy != POLICY_CHECKPOINTS and policy != POLICY_EVERY_ENTRY:
        raise EntryError("unknown signing policy")
    return {1: bytes(pub), 2: policy}


def overflow_body(missed, reason):
    return {1: _uint(missed, "missed readings"), 2: reason}


def altered_body(first_seq, reason):
    # The device's own testimony: entries from first_seq up to this one are not what it
    # signed (found by its check at boot). No signature of the device vouches for them.
    return {1: _uint(first_seq, "first altered seq"), 2: reason}


def ack_body(acked_seq, first_held):
    return {1: _uint(acked_seq, "acknowledged seq"), 2: _uint(first_held, "first held seq")}
