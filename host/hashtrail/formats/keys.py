"""Device public keys and the ids derived from them (docs/FORMATS.md "Device identity").

Why: the public key is the root of every check, so it is validated by hand before any
crypto library sees it: `cryptography` accepts some out-of-range coordinates when a
key is built from integers, and an off-curve or infinity point must never become a
verifier. The device id (first 16 bytes of SHA-256(pub), 32 hex chars) is what every
tool prints and accepts.

`DeviceKey` is the key parsed once per device, with the one ECDSA check every host
path uses (chain verifier, checkpoints, reconcile, `verify --ledger`, fork evidence):
parsing the key costs more than a verify, and one check cannot drift from another.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, NewType, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hashtrail.errors import FormatError, InputError

DeviceId = NewType("DeviceId", str)

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GENESIS_TAG = b"hashtrail/genesis/v1"
KEY_PATH = "/ht/key"      # where the device keeps its key file (FORMATS.md "Device files")
KEY_FILE_MAGIC = b"HTK1"
KEY_FILE_LEN = 4 + 32 + 65 + 4     # magic, private scalar, public key, CRC-32
_ES256_PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
_HEX_ID = re.compile(r"[0-9a-f]{32}")
# Signatures per thread below which a thread costs more than the verifies it takes over.
_PER_THREAD_MIN = 64


_T = TypeVar("_T")


def map_slices(fn: Callable[[int, int], list[_T]], n: int,
               workers: int | None = None) -> list[_T]:
    """fn(lo, hi) over range(n) cut into one slice per thread, results in order.

    Why: the host's batch checks spend most of their time in OpenSSL's ECDSA verify,
    which drops the GIL, so one slice per CPU runs at the same time. Below
    _PER_THREAD_MIN items a slice, a thread costs more than it takes over, and with
    `workers=1` (or one CPU) everything stays on the calling thread."""
    k = min(workers or cpu_workers(), n // _PER_THREAD_MIN)
    if k < 2:
        return fn(0, n)
    step = -(-n // k)
    out: list[_T] = []
    with ThreadPoolExecutor(k, thread_name_prefix="ecdsa") as pool:
        for part in pool.map(lambda lo: fn(lo, min(n, lo + step)), range(0, n, step)):
            out.extend(part)
    return out


def cpu_workers() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_pub(pub: bytes) -> bytes:
    """Return pub if it is a valid SEC1 uncompressed P-256 point, else FormatError."""
    pub = bytes(pub)
    if len(pub) != 65 or pub[0] != 4:
        raise FormatError("public key must be 65 bytes, SEC1 uncompressed (04 || X || Y)")
    x = int.from_bytes(pub[1:33], "big")
    y = int.from_bytes(pub[33:], "big")
    if x >= P or y >= P:
        raise FormatError("public key coordinate out of range")
    if (y * y - (x * x * x - 3 * x + B)) % P:
        raise FormatError("public key is not on the P-256 curve")
    return pub


def ec_public_key(pub: bytes) -> ec.EllipticCurvePublicKey:
    """A `cryptography` verifier key, built only from a checked point."""
    check_pub(pub)
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)


_ZERO32 = bytes(32)
_N32 = N.to_bytes(32, "big")


# The DER around a signature's halves when neither starts with 0x00: indexed by whether
# r, then s, has its top bit set (its INTEGER then takes a leading 0x00), the SEQUENCE and
# r's INTEGER head, then s's INTEGER head (DeviceKey.signed_all).
_DER_HEADS = [[(bytes((0x30, 68 + a + b, 2, 32 + a)) + bytes(a), bytes((2, 32 + b)) + bytes(b))
               for b in (0, 1)] for a in (0, 1)]


def der_signature(r: bytes, s: bytes) -> bytes:
    """The DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) of 32-byte big-endian r and s,
    both non-zero: what `encode_dss_signature` makes of the same integers
    (tests/host/test_keys_der.py holds the two equal), without the integers. Each is
    its minimal two's-complement form: leading zero bytes dropped, one 0x00 put back
    when the top bit is set; at most 70 bytes, so every length is one byte."""
    r = r.lstrip(b"\0")
    s = s.lstrip(b"\0")
    if r[0] & 0x80:
        r = b"\0" + r
    if s[0] & 0x80:
        s = b"\0" + s
    lr, ls = len(r), len(s)
    return bytes((0x30, lr + ls + 4, 2, lr)) + r + bytes((2, ls)) + s


class DeviceKey:
    """A device's P-256 public key, checked and parsed once.

    `device_id` is the 16-byte id (bytes, as in checkpoints), `id` the printed form."""

    __slots__ = ("_key", "device_id", "genesis_prev", "id", "pub")

    def __init__(self, pub: bytes) -> None:
        self.pub = check_pub(pub)
        self._key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.pub)
        self.device_id = device_id_bytes(self.pub)
        self.id = DeviceId(self.device_id.hex())
        self.genesis_prev = genesis_prev(self.pub)

    def signed(self, digest: bytes, sig: bytes) -> bool:
        """ECDSA P-256 over a SHA-256 digest, with a 64-byte r || s (0 < r, s < n).

        The range check compares the 32-byte big-endian halves as bytes (for equal
        lengths the same order as the integers) and the DER form is built by hand
        (der_signature): a per-entry-signed reconcile calls this once per entry, and
        the two integer conversions and the library's encoder cost about 2 us of the
        verify's 60 (docs/LEDGER.md "Per-entry signatures in worker processes")."""
        if len(sig) != 64:
            return False
        r, s = sig[:32], sig[32:]
        if not (_ZERO32 < r < _N32 and _ZERO32 < s < _N32):
            return False
        try:
            self._key.verify(der_signature(r, s), digest, _ES256_PREHASHED)
        except InvalidSignature:
            return False
        return True

    def signed_all(self, digests: Sequence[bytes], sigs: bytes) -> bytearray:
        """`signed` of each digest with its signature, the i-th at sigs[64 * i:64 * i + 64],
        as verdict bytes in order (1: it verifies).

        Why: a verify worker (chain.verify_pool) checks a task of per-entry signatures
        at once, and `signed` spends about 5 us a call around OpenSSL's own verify.
        Here a signature whose halves each start with a byte from 0x01 to 0xfe (98% of
        them) is in range without comparing (0 < r, s < n: n starts with 0xff) and its
        DER form is the halves between two heads from a table (`_DER_HEADS`, each half
        padded with a 0x00 when its top bit is set, as der_signature does): 2.8 us
        around the verify instead of 4.8 (docs/LEDGER.md, after "Balanced workers").
        Any other signature takes `signed` (tests/host/test_keys_der.py holds the two
        to each other)."""
        n = len(digests)
        if len(sigs) != 64 * n:
            raise ValueError(f"{len(sigs)} signature bytes for {n} digests")
        ok = bytearray(n)
        verify, alg, one, heads = self._key.verify, _ES256_PREHASHED, self.signed, _DER_HEADS
        for i, h in enumerate(digests):
            at = 64 * i
            r0, s0 = sigs[at], sigs[at + 32]
            if 0 < r0 < 0xFF and 0 < s0 < 0xFF:
                head, mid = heads[r0 >> 7][s0 >> 7]
                try:
                    verify(head + sigs[at:at + 32] + mid + sigs[at + 32:at + 64], h, alg)
                except InvalidSignature:
                    continue
                ok[i] = 1
            else:
                ok[i] = one(h, sigs[at:at + 64])
        return ok

    def signed_batch(self, pairs: Sequence[tuple[bytes, bytes]],
                     workers: int | None = None) -> list[bool]:
        """`signed` for many (digest, sig) pairs, verdicts in order.

        Why: OpenSSL verifies without holding the GIL, so a large batch (a bundle of
        per-entry-signed entries) is cut into one slice per CPU and the slices are
        checked at the same time; measured 2.1x on 2 cores (tools/bench_ledger.py).
        `workers=1` keeps it on the calling thread.
        """
        signed = self.signed
        return map_slices(lambda lo, hi: [signed(d, s) for d, s in pairs[lo:hi]],
                          len(pairs), workers)

    def signs(self, message: bytes, sig: bytes) -> bool:
        """ECDSA P-256 / SHA-256 over a whole message."""
        return self.signed(hashlib.sha256(message).digest(), sig)


def device_id(pub: bytes) -> DeviceId:
    return DeviceId(device_id_bytes(pub).hex())


def device_id_bytes(pub: bytes) -> bytes:
    return hashlib.sha256(pub).digest()[:16]


def parse_device_id(text: object) -> DeviceId:
    """A device id exactly as hashtrail prints it: 32 lower-case hex characters.

    Why strict: ids are compared as text (SQL keys, JSON, file names), so a second
    spelling of one id (upper case, `0x`, spaces) would be a second identity. Any other
    spelling is refused; when it was merely another spelling of a valid id, the error
    shows the canonical form so the user can copy it."""
    if isinstance(text, str) and _HEX_ID.fullmatch(text):
        return DeviceId(text)
    raise FormatError(_noncanonical("device id", text, 32),
                      hint="copy the id exactly as `hashtrail devices list` prints it")


def parse_hex(text: object, nbytes: int, what: str) -> bytes:
    """Bytes written as lower-case hex of exactly `nbytes` bytes (hashes and key ids in
    JSON and on the command line: decision 4, one spelling per value)."""
    if isinstance(text, str) and len(text) == 2 * nbytes and _is_lower_hex(text):
        return bytes.fromhex(text)
    raise FormatError(_noncanonical(what, text, 2 * nbytes))


def key_fingerprint(pub: bytes) -> str:
    """SHA-256 of a device public key, 64 lower-case hex characters."""
    return hashlib.sha256(pub).hexdigest()


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _noncanonical(what: str, text: object, digits: int) -> str:
    """The message for an identifier not in its one canonical spelling."""
    msg = (f"{what} must be written as hashtrail prints it: {digits} lower-case hex "
           f"characters")
    if not isinstance(text, str):
        return f"{msg}, not {type(text).__name__}"
    guess = text.strip().lower().removeprefix("0x")
    if len(guess) == digits and _is_lower_hex(guess):
        return f"{msg} (did you mean {guess}?)"
    return f"{msg}: {text!r}"


def genesis_prev(pub: bytes) -> bytes:
    """prev of the entry with seq 0: binds a chain to its device key."""
    return hashlib.sha256(GENESIS_TAG + pub).digest()


def load_pub(arg: str) -> bytes:
    """A public key given as 130 hex characters, or a file holding hex or 65 raw bytes."""
    text = arg.strip()
    if re.fullmatch(r"(0x)?[0-9a-fA-F]{130}", text):
        try:
            return check_pub(bytes.fromhex(text.removeprefix("0x")))
        except FormatError as e:
            raise InputError(f"--pubkey {arg[:20]}...: {e}") from None
    from hashtrail import userfile

    what = "a device public key: 130 hex characters (04...), or a file holding them or " \
           "its 65 raw bytes"
    raw = userfile.read_bytes(arg, what, max_bytes=4 * 1024)
    try:
        return check_pub(raw if len(raw) == 65 else
                         bytes.fromhex(raw.decode("ascii").strip().removeprefix("0x")))
    except (UnicodeDecodeError, ValueError, FormatError) as e:
        raise InputError(f"{arg}: not a public key ({e}); expected {what}") from None


class KeyFile(NamedTuple):
    secret: int     # the private scalar d
    pub: bytes


def parse_key_file(raw: bytes) -> KeyFile:
    """The device's key file `/ht/key` (docs/FORMATS.md "Device files"):
    b"HTK1" || d (32) || pub (65) || CRC-32 (4 LE). FormatError unless whole and checked.

    Why the host reads it: whoever holds a powered-off device's flash holds this file;
    the attack suite and the image tests read the key as such a reader would."""
    raw = bytes(raw)
    if len(raw) != KEY_FILE_LEN or raw[:4] != KEY_FILE_MAGIC:
        raise FormatError(f"not a device key file ({KEY_FILE_LEN} bytes starting with "
                          f"{KEY_FILE_MAGIC!r})")
    if struct.unpack_from("<I", raw, KEY_FILE_LEN - 4)[0] != zlib.crc32(raw[:-4]):
        raise FormatError("device key file fails its CRC")
    d = int.from_bytes(raw[4:36], "big")
    if not 0 < d < N:
        raise FormatError("device key file scalar out of range")
    return KeyFile(d, check_pub(raw[36:101]))
