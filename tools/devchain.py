"""Host-made device chains that follow docs/FORMATS.md, for ledger tests and benchmarks.

Why: the ledger needs many realistic chains (forks, clones, gaps, per-entry signatures)
faster than the firmware under the unix port can sign them. The bytes follow the format
contract exactly (canonical CBOR entries, COSE_Sign1 checkpoints over the RFC 9052
Sig_structure); tests also run the real firmware modules to prove that both agree.
Signatures use `cryptography` (OpenSSL); `deterministic=True` signs with python-ecdsa's
RFC 6979 `sign_deterministic`, byte-identical to the device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hashtrail.formats import checkpoint as cp
from hashtrail.formats import entry as en
from hashtrail.formats.keys import device_id_bytes, genesis_prev


def canon(obj: Any) -> bytes:
    return bytes(cbor2.dumps(obj, canonical=True))


def _uint(n: int) -> bytes:
    """Canonical CBOR of an unsigned integer (major type 0, shortest form)."""
    if n < 24:
        return bytes((n,))
    for head, size in ((0x18, 1), (0x19, 2), (0x1A, 4), (0x1B, 8)):
        if n < 1 << (8 * size):
            return bytes((head,)) + n.to_bytes(size, "big")
    raise ValueError(f"{n} does not fit a CBOR unsigned integer")


def _int(n: int) -> bytes:
    """Canonical CBOR of an integer: `_uint` for the usual, cbor2 for a negative one."""
    return _uint(n) if n >= 0 else canon(n)


# The ten reading bodies `readings` cycles through, in canonical CBOR.
_READING_BODIES = [canon([{en.SENML_N: "temp", en.SENML_U: "Cel", en.SENML_V: 20 + i / 4}])
                   for i in range(10)]


@dataclass
class Device:
    """A virtual device key and its chain state; `entries` holds (seq, bytes, sig)."""

    secret: int
    per_entry_sig: bool = False
    deterministic: bool = False
    entries: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    head: bytes = b""
    t: int = 1_700_000_000
    # entry 0's signing policy (docs/FORMATS.md); None: 1 when per_entry_sig, else an
    # entry 0 without key 2 (format 1 before the policy existed: checkpoints only)
    policy: int | None = None
    # the boot counter and firmware version the next entries carry (a test reboots the
    # device or changes its firmware by setting them)
    boot: int = 1
    fw: str = "0.1.0"

    def __post_init__(self) -> None:
        self.key = ec.derive_private_key(self.secret, ec.SECP256R1())
        self.pub = self.key.public_key().public_bytes(Encoding.X962,
                                                      PublicFormat.UncompressedPoint)
        self.device_id = device_id_bytes(self.pub)
        self.id_hex = self.device_id.hex()
        self.head = genesis_prev(self.pub)

    def sign(self, digest: bytes) -> bytes:
        if self.deterministic:
            import ecdsa  # dev dependency; only for byte-exact comparisons
            sk = ecdsa.SigningKey.from_secret_exponent(self.secret, curve=ecdsa.NIST256p,
                                                       hashfunc=hashlib.sha256)
            return bytes(sk.sign_digest_deterministic(digest, hashfunc=hashlib.sha256))
        der = self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def entry(self, kind: int, body: Any, *, t: int | None = -1) -> bytes:
        seq = len(self.entries)
        when = self.t + seq if t == -1 else t
        raw = canon({en.KEY_V: en.VERSION, en.KEY_SEQ: seq, en.KEY_T: when,
                     en.KEY_UP: seq * 1000, en.KEY_BOOT: self.boot,
                     en.KEY_PREV: self.head, en.KEY_FW: self.fw, en.KEY_KIND: kind,
                     en.KEY_BODY: body})
        self.head = hashlib.sha256(raw).digest()
        sig = self.sign(self.head) if self.per_entry_sig else None
        self.entries.append((seq, raw, sig))
        return raw

    def key_created(self) -> bytes:
        """Entry 0: the key and, unless left out, the signing policy."""
        policy = 1 if self.policy is None and self.per_entry_sig else self.policy
        return self.entry(en.KIND_KEY_CREATED,
                          {1: self.pub} if policy is None else {1: self.pub, 2: policy})

    def log_altered(self, first: int, reason: str = "entry does not match its signature"
                    ) -> bytes:
        """The device's own report that entries first..seq-1 are not what it signed."""
        return self.entry(en.KIND_LOG_ALTERED, {1: first, 2: reason})

    def update(self, old: str, new: str, counter: int, manifest: bytes) -> bytes:
        """A reboot into firmware `new` and the update entry it writes (kind 7)."""
        self.boot += 1
        self.fw = new
        self.entry(en.KIND_BOOT, {1: "soft"})
        return self.entry(en.KIND_UPDATE, {en.UPDATE_OLD: old, en.UPDATE_NEW: new,
                                           en.UPDATE_COUNTER: counter,
                                           en.UPDATE_MANIFEST: manifest})

    def readings(self, n: int) -> None:
        """n readings (the i-th of value 20 + (i % 10) / 4), encoded by hand: the same
        bytes as `entry` writes (tests/host/test_devchain.py), at an eighth of the cost
        (ledger tests make millions of them)."""
        if not self.entries:
            self.key_created()
        # a map of the nine keys 0..8 (one byte each) in canonical order
        v, boot = canon(en.VERSION), _int(self.boot)
        fw, kind = canon(self.fw), _uint(en.KIND_READING)
        head, append, sha = self.head, self.entries.append, hashlib.sha256
        sign = self.sign if self.per_entry_sig else None
        seq = len(self.entries)
        for i in range(n):
            raw = b"".join((b"\xa9\x00", v, b"\x01", _uint(seq), b"\x02", _int(self.t + seq),
                            b"\x03", _uint(seq * 1000), b"\x04", boot, b"\x05\x58\x20", head,
                            b"\x06", fw, b"\x07", kind, b"\x08", _READING_BODIES[i % 10]))
            head = sha(raw).digest()
            append((seq, raw, None if sign is None else sign(head)))
            seq += 1
        self.head = head

    def checkpoint(self, nonce: bytes | None = None, seq: int | None = None) -> bytes:
        s = len(self.entries) - 1 if seq is None else seq
        head = hashlib.sha256(self.entries[s][1]).digest()
        prot = canon({cp.HDR_ALG: cp.ALG_ES256, cp.HDR_KID: self.device_id})
        p: dict[int, Any] = {cp.CP_V: cp.VERSION, cp.CP_DEVICE: self.device_id, cp.CP_SEQ: s,
                             cp.CP_HEAD: head, cp.CP_T: self.t + s, cp.CP_UP: 5}
        if nonce is not None:
            p[cp.CP_NONCE] = nonce
        payload = canon(p)
        sig = self.sign(hashlib.sha256(cp.sig_structure(prot, payload)).digest())
        return canon(cbor2.CBORTag(cp.TAG_COSE_SIGN1, [prot, {}, payload, sig]))

    def fork(self, at_seq: int) -> Device:
        """A clone of this device whose chain is cut back to `at_seq` (exclusive)."""
        twin = Device(self.secret, self.per_entry_sig, self.deterministic,
                      list(self.entries[:at_seq]), t=self.t + 500_000, policy=self.policy)
        twin.head = (hashlib.sha256(self.entries[at_seq - 1][1]).digest() if at_seq
                     else twin.head)
        return twin
