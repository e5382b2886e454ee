# Boot-only: the walk of the device's boot check, which checks its own log against its
# own signatures before it appends anything (docs/FORMATS.md "Device boot check"). A
# keyless attacker who rewrites the flash of a powered-off device (an entry edited, the
# later prev links and CRCs recomputed, signatures stripped) leaves a log whose newest
# entry no longer carries a signature the device's key made over its hash; the device
# finds that and reports it with a log-altered entry (kind 6) instead of signing over it.
#
# Why a module of its own: like logscan.py it runs once per boot; devlog.boot_walk
# imports it for the store's recovery scan, and it is dropped with the result, so it is not
# resident while the app runs, nor while the boot check's ECDSA verify runs (the heap
# is the device's scarcest resource, docs/DEVICE.md).
#
#   w = Walk(sign_cfg)          sign_cfg: the board config's sign_entries
#   LogStore(..., observe=...)  makes w when there is a log; the boot scan (logscan)
#                               hands w every valid record
#   w.result(store) -> a tuple of plain data (no object of this module, so the module
#       is garbage once the caller drops w):
#     0 per_entry  True when the log's policy is "every entry signed": entry 0's policy
#                  when entry 0 is held (a device follows its entry 0, as hosts do),
#                  else sign_cfg
#     1 first, 2 last      first and newest entry seq walked (None: no entry)
#     3 head, 4 sig        the newest entry's hash, and its signature or None
#     5 broken     first seq whose prev is not the hash of the entry before it, or None
#     6 anchors    [(seq, hash, sig or None)] of the last entry before each gap
#     7 runs       [seq] of the first entry after each gap
#     8 alerts     [(first_seq, seq, reason)] of the log-altered entries walked
#                  (at most _MAX_ALERTS, newest last)
#     9 cps        [(seq, hash of its entry when walked just before it, or None,
#                  checkpoint bytes)], the newest _MAX_CPS (policy 0 only)
#   What is walked is what the store's recovery scan reads: every segment when
#   boot_check is on, else only the last one(s).
#
# The decision is made by the caller (devlog.boot_verdict) after this module is
# dropped: the common case, every entry signed, links intact, no gap, is one ECDSA
# verify of the newest entry's signature; anything else goes to bootfind.decide.
#
# What is checked:
#   links      every entry's prev equals the hash of the entry before it wherever both
#              are held (consecutive seqs). A seq jump is a gap from damage the store
#              already reported ("corrupt", "gap"): not an alteration by itself; the
#              entry before it is then checked by its own signature.
#   policy 1   the newest entry's signature verifies with the device's key over its
#              hash: one ECDSA verify covers the whole run of links before it. An
#              unsigned newest entry is an alteration.
#   policy 0   the newest checkpoint record verifies and its head is the hash of the
#              entry at its seq (when held). Entries after it cannot be checked: that is
#              what "unprotected until checkpoint N" means.
# On a failure bootfind.py looks back from the first bad point for the newest
# signature that still verifies (see there); a problem inside the range of a
# log-altered entry already on flash (first_seq - 1 .. its seq - 1) was reported
# before: no duplicate alert.
# A truncated tail is not an alteration the device can see (every entry left is
# still what it signed): hosts catch it against the checkpoints they saw.
#
# Allocation: per entry one sha256 object and its 32-byte digest, small ints and
# memoryview slices; per checkpoint (policy 0) one copy of its bytes; after a failure,
# bootfind's code and one (hash, signature) per entry the search reads.
import hashlib

from micropython import const

from hashtrail import entry
from hashtrail.logstore import CHECKPOINT, ENTRY, FLAG_SIG, parse

_HDR = const(8)
_SIG = const(64)
_MAX_ANCHORS = const(8)  # runs before gaps checked by their last entry's signature
_MAX_ALERTS = const(4)
_MAX_CPS = const(4)  # newest checkpoints kept for the policy-0 walk-back
_MAX_REASON = const(80)  # characters of an earlier report's reason kept (HELLO carries it)


def _fields(b):
    """(prev offset, kind, body offset) of canonical entry bytes (keys 0..8 in order).

    Runs once per entry at every boot, so it is written out byte by byte instead of
    calling _head (a function call costs more than the rest here): keys 0..4 are one
    byte each, their values a uint head (or null) of 1, 2, 3, 5 or 9 bytes."""
    if b[0] != 0xA9:
        raise ValueError("not an entry")
    i = 1
    for key in range(5):  # v, seq, t (uint or null), up, boot
        if b[i] != key:
            raise ValueError("not an entry")
        ai = b[i + 1] & 31
        i += 2 if ai < 24 or ai > 27 else 2 + (1 << (ai - 24))
    if b[i] != 5 or b[i + 1] != 0x58 or b[i + 2] != 32:  # 5: prev, bstr(32)
        raise ValueError("not an entry")
    p = i + 3
    i = p + 32
    if b[i] != 6:  # 6: fw, tstr
        raise ValueError("not an entry")
    ai = b[i + 1] & 31
    if ai < 24:
        i += 2 + ai
    elif ai == 24:
        i += 3 + b[i + 2]
    else:
        raise ValueError("not an entry")
    if b[i] != 7 or b[i + 1] > 23 or b[i + 2] != 8:  # 7: kind (< 24), 8: body
        raise ValueError("not an entry")
    return p, b[i + 1], i + 3


def _uint(b, i):
    """(value, next offset) of the CBOR uint head at b[i]."""
    ai = b[i] & 31
    if b[i] >> 5 or ai > 27:
        raise ValueError("not a uint")
    if ai < 24:
        return ai, i + 1
    v = 0
    for k in range(i + 1, i + 1 + (1 << (ai - 24))):
        v = (v << 8) | b[k]
    return v, k + 1


def _policy(b, i):
    """Signing policy of a key-created body at b[i]: {1: pub} or {1: pub, 2: policy}
    (pub a bstr(65): 0x58 0x41 and 65 bytes)."""
    if b[i] != 0xA2 or b[i + 1] != 1 or b[i + 2] != 0x58 or b[i + 3] != 65 or \
            b[i + 69] != 2:
        return entry.POLICY_CHECKPOINTS
    return _uint(b, i + 70)[0]


def _altered(b, i):
    """(first_seq, reason) of a log-altered body {1: first, 2: reason (tstr)} at b[i]."""
    if b[i] != 0xA2 or b[i + 1] != 1:
        raise ValueError("not a log-altered body")
    first, i = _uint(b, i + 2)
    ai = b[i + 1] & 31  # key 2, then a tstr head: length in it, or in 1 or 2 bytes
    if b[i] != 2 or b[i + 1] >> 5 != 3 or ai > 25:
        raise ValueError("not a log-altered body")
    if ai < 24:
        n = ai
        i += 2
    elif ai == 24:
        n = b[i + 2]
        i += 3
    else:
        n = (b[i + 2] << 8) | b[i + 3]
        i += 4
    return first, str(bytes(b[i:i + n]), "utf-8")[:_MAX_REASON]


class Walk:
    """The boot scan's observer (logstore.LogStore(observe=...)): sees each valid
    record in log order while logscan reads it, so the walk costs no second pass over
    the flash; result() then gives the tuple described at the top of this file."""

    def __init__(self, sign_cfg):
        self.sign_cfg = bool(sign_cfg)
        self.first = None  # first entry seq seen
        self.seq = None  # newest entry seq seen
        self.h = None  # its hash
        self.sig = bytearray(_SIG)
        self.signed = False
        self.broken = None  # first seq whose prev is not the hash of the entry before
        self.anchors = []  # [(seq, hash, sig or None)] of the last entry before a gap
        self.runs = []  # first seq after each gap (the start of a run of intact links)
        self.alerts = []
        self.policy0 = None  # entry 0's policy when entry 0 was seen
        self.cps = []  # [(seq, entry hash or None, cose bytes)] newest last (policy 0)
        self.keep_cps = True  # until entry 0 says every entry is signed

    def __call__(self, rec):
        magic, flags, seq, blen = parse(rec)
        if magic == ENTRY:
            self._entry(rec, flags, seq, blen)
        elif magic == CHECKPOINT and self.keep_cps:
            self._checkpoint(rec, seq, blen)

    def result(self, store):
        if self.policy0 is None and store.first_seq == 0 and self.first != 0:
            # Quick boot: the scan read only the last segment; entry 0 (the policy) is
            # the first record of the first segment.
            it = store.records(0)
            try:
                for rec in it:
                    magic, flags, seq, blen = parse(rec)
                    if magic == ENTRY:
                        if seq == 0:
                            body = rec[_HDR:_HDR + blen]
                            p, kind, bi = _fields(body)
                            if kind == entry.KIND_KEY_CREATED:
                                self.policy0 = _policy(body, bi)
                        break
            except (IndexError, ValueError, TypeError):
                pass
            finally:
                it.close()
        per_entry = (self.policy0 == entry.POLICY_EVERY_ENTRY) \
            if self.policy0 is not None else self.sign_cfg
        return (per_entry, self.first, self.seq, self.h,
                bytes(self.sig) if self.signed else None, self.broken, self.anchors,
                self.runs, self.alerts, self.cps)

    def _entry(self, rec, flags, seq, blen):
        body = rec[_HDR:_HDR + blen]
        h = hashlib.sha256(body).digest()
        try:
            p, kind, bi = _fields(body)
        except (IndexError, ValueError, TypeError):
            # Unreadable yet with a valid CRC: not something the device wrote. The
            # link of the next entry fails on it (its hash is not that entry's prev).
            p = -1
            kind = -1
            if self.broken is None:
                self.broken = seq
        if self.seq is not None:
            if seq == self.seq + 1:
                if self.broken is None and (p < 0 or bytes(body[p:p + 32]) != self.h):
                    self.broken = seq
            elif len(self.anchors) < _MAX_ANCHORS:
                self.anchors.append((self.seq, self.h, bytes(self.sig) if self.signed
                                     else None))
                self.runs.append(seq)
        if self.first is None:
            self.first = seq
        if kind == entry.KIND_KEY_CREATED and seq == 0:
            try:
                self.policy0 = _policy(body, bi)
                self.keep_cps = self.policy0 != entry.POLICY_EVERY_ENTRY
            except (IndexError, ValueError, TypeError):
                pass
        elif kind == entry.KIND_LOG_ALTERED:
            try:
                first, why = _altered(body, bi)
                if len(self.alerts) >= _MAX_ALERTS:
                    self.alerts.pop(0)
                self.alerts.append((first, seq, why))
            except (IndexError, ValueError, TypeError, UnicodeError):
                pass
        self.seq = seq
        self.h = h
        self.signed = bool(flags & FLAG_SIG)
        if self.signed:
            self.sig[:] = rec[_HDR + blen:_HDR + blen + _SIG]

    def _checkpoint(self, rec, seq, blen):
        # Kept with the hash of the entry it follows, when that is the entry it signs
        # (its head is compared later, in bootfind, only under policy 0).
        if len(self.cps) >= _MAX_CPS:
            self.cps.pop(0)
        self.cps.append((seq, self.h if seq == self.seq else None,
                         bytes(rec[_HDR:_HDR + blen])))
