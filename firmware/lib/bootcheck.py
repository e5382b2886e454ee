# Boot-only: the device checks its own log against its own signatures before it appends
# anything (docs/FORMATS.md "Device boot check"). A keyless attacker who rewrites the
# flash of a powered-off device (an entry edited, the later prev links and CRCs
# recomputed, signatures stripped) leaves a log whose newest entry no longer carries a
# signature the device's key made over its hash; the device finds that here and reports
# it with a log-altered entry (kind 6) instead of signing over it.
#
# Why a module of its own: like logscan.py it runs once per boot; devlog.Log imports
# it, runs check() and drops it from sys.modules again, so it is not resident while the
# app runs (the heap is the device's scarcest resource, docs/DEVICE.md).
#
#   check(store, pub, device_id, sign_cfg, full=True) -> (per_entry, found, alerts)
#     store      the recovered logstore.LogStore (its problems already listed)
#     pub        the device's 65-byte public key; device_id its 16-byte id
#     sign_cfg   the board config's sign_entries (used only when entry 0 is not held)
#     full       walk every segment (boot_check), else only the last one
#     per_entry  True when the log's policy is "every entry signed": entry 0's policy
#                when entry 0 is held (a device follows its entry 0, as hosts do),
#                else sign_cfg
#     found      None, or (first_seq, reason): the lowest seq the device no longer
#                vouches for and why (a new alteration, not one already reported)
#     alerts     [(first_seq, seq, reason)] of the log-altered entries already in the
#                log (at most _MAX_ALERTS, newest last)
#
# What is checked (the walk covers every segment when boot_check is on, else the last):
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
# On a failure the check looks back from the first bad point for the newest signature
# that still verifies (policy 1: a binary search over the entries of that run of intact
# links, see _entry_back; policy 0: the newest checkpoints, newest first), at most
# _MAX_VERIFY verifies; first_seq is the seq after the one that verified, else the
# lowest one the search could not vouch for. A problem inside the range of a log-altered entry already on
# flash (first_seq - 1 .. its seq - 1) was reported before: no duplicate alert.
# A truncated tail is not an alteration the device can see (every entry left is
# still what it signed): hosts catch it against the checkpoints they saw.
#
# Allocation: per entry one sha256 object and its 32-byte digest, small ints and
# memoryview slices; per checkpoint one copy of its bytes; after a failure, one
# (hash, signature) per entry the search reads.
import hashlib

from micropython import const

import cose
import entry
import p256
from logstore import CHECKPOINT, ENTRY, FLAG_SIG, parse

_HDR = const(8)
_SIG = const(64)
_MAX_VERIFY = const(16)  # ECDSA verifies spent on the walk-back after a failure
_MAX_ANCHORS = const(8)  # runs before gaps checked by their last entry's signature
_MAX_ALERTS = const(4)
_MAX_CPS = const(4)  # newest checkpoints kept for the policy-0 walk-back
_MAX_REASON = const(80)  # characters of an earlier report's reason kept (HELLO carries it)


def _head(mv, i):
    """(major, value, next offset) of the CBOR item head at mv[i] (null -> (7, None))."""
    ib = mv[i]
    major = ib >> 5
    ai = ib & 31
    if ai < 24:
        return major, ai, i + 1
    if ai > 27:
        return major, None, i + 1
    n = 1 << (ai - 24)
    v = 0
    for k in range(i + 1, i + 1 + n):
        v = (v << 8) | mv[k]
    return major, v, i + 1 + n


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


def _policy(mv, i):
    """Signing policy of a key-created body at mv[i]: {1: pub} or {1: pub, 2: policy}."""
    _, n, i = _head(mv, i)
    if n < 2:
        return entry.POLICY_CHECKPOINTS
    _, _, i = _head(mv, i)  # key 1
    _, ln, i = _head(mv, i)
    _, k, i = _head(mv, i + ln)
    if k != 2:
        return entry.POLICY_CHECKPOINTS
    return _head(mv, i)[1]


def _altered(mv, i):
    """(first_seq, reason) of a log-altered body {1: first, 2: reason} at mv[i]."""
    _, _, i = _head(mv, i)  # map(2)
    _, _, i = _head(mv, i)  # key 1
    _, first, i = _head(mv, i)
    _, _, i = _head(mv, i)  # key 2
    _, n, i = _head(mv, i)
    return first, str(bytes(mv[i:i + n]), "utf-8")[:_MAX_REASON]


def _cose(b, device_id, seq):
    """(protected, payload, signature, head) of a device checkpoint, or None if it is
    not one of this device's for this seq."""
    mv = memoryview(b)
    try:
        major, tag, i = _head(mv, 0)
        _, n, i = _head(mv, i)
        if major != 6 or tag != 18 or n != 4:
            return None
        _, n, i = _head(mv, i)
        prot = mv[i:i + n]
        i += n
        _, _, i = _head(mv, i)  # unprotected {}
        _, n, i = _head(mv, i)
        pl = mv[i:i + n]
        i += n
        _, n, i = _head(mv, i)
        if n != _SIG or i + n != len(mv):
            return None
        sig = mv[i:i + n]
        # payload {0: 1, 1: device id, 2: seq, 3: head, ...}
        _, _, j = _head(pl, 0)
        _, _, j = _head(pl, j)
        _, _, j = _head(pl, j)
        _, _, j = _head(pl, j)
        _, n, j = _head(pl, j)
        if n != 16 or bytes(pl[j:j + 16]) != device_id:
            return None
        _, _, j = _head(pl, j + 16)
        _, s, j = _head(pl, j)
        _, _, j = _head(pl, j)
        _, n, j = _head(pl, j)
        if s != seq or n != 32:
            return None
        return prot, pl, sig, pl[j:j + 32]
    except (IndexError, ValueError, TypeError):
        return None


def _cp_verifies(pub, c):
    return c is not None and p256.verify(pub, cose.sig_structure_digest(c[0], c[1]), c[2])


class _Walk:
    """One pass over the entries (and checkpoints) on flash."""

    def __init__(self, store, device_id, keep_cps):
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
        self.cps = []  # [(seq, matched, cose bytes)] newest last (policy 0 only)
        self.bad = False  # an entry whose fields cannot be read at all
        self.device_id = device_id
        self.keep_cps = keep_cps
        self.store = store

    def run(self, from_seq):
        for rec in self.store.records(from_seq):
            magic, flags, seq, blen = parse(rec)
            if magic == ENTRY:
                self._entry(rec, flags, seq, blen)
            elif magic == CHECKPOINT and self.keep_cps:
                self._checkpoint(rec, seq, blen)

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
        b = bytes(rec[_HDR:_HDR + blen])
        c = _cose(b, self.device_id, seq)
        # The checkpoint follows the entry it signs: compare heads when that entry is
        # the one just walked (None: its entry is not held here, cannot compare).
        matched = None
        if seq == self.seq:
            matched = c is not None and bytes(c[3]) == self.h
        if len(self.cps) >= _MAX_CPS:
            self.cps.pop(0)
        self.cps.append((seq, matched, b))


def _known(p, alerts):
    for first, seq, _ in alerts:
        if first - 1 <= p < seq:
            return True
    return False


def _entry_at(store, want):
    """(hash, signature or None) of the entry with seq want, or None if not held."""
    it = store.records(want)
    try:
        for rec in it:
            magic, flags, seq, blen = parse(rec)
            if magic == ENTRY:
                if seq != want:
                    return None
                return (hashlib.sha256(rec[_HDR:_HDR + blen]).digest(),
                        bytes(rec[_HDR + blen:_HDR + blen + _SIG]) if flags & FLAG_SIG
                        else None)
    finally:
        it.close()
    return None


def _bisect(store, pub, a, b, budget):
    """Newest seq in a..b whose signature verifies, assuming none does above an edit
    (None: none found). budget: [verifies left], shared by the whole walk-back."""
    good = None
    while a <= b and budget[0] > 0:
        m = (a + b + 1) // 2
        got = _entry_at(store, m)
        ok = False
        if got is not None and got[1] is not None:
            budget[0] -= 1
            ok = p256.verify(pub, got[0], got[1])
        if ok:
            good = m
            a = m + 1
        else:
            b = m - 1
    return good


def _entry_back(store, pub, lo, p, alerts):
    """The first seq not vouched for, when entry p (or the link after it) is bad and
    lo..p is one run of intact links. Within such a run an entry whose signature
    verifies proves every entry before it (its hash commits to its prev, and so on),
    and no entry after an edited one can verify: a binary search for the newest entry
    that verifies, at most _MAX_VERIFY verifies (enough for 65,536 entries). Entries
    with no signature count as not verifying, which only moves the answer lower.
    Ranges already reported (first .. alert seq - 1 of a log-altered entry) break that
    order: the search runs in the stretches between them, newest first."""
    budget = [_MAX_VERIFY]
    hi = p
    for first, seq, _ in reversed(alerts):
        if seq < lo or seq > hi:
            continue
        good = _bisect(store, pub, seq, hi, budget)
        if good is not None:
            return good + 1
        hi = first - 1
        if hi < lo:
            return lo
    good = _bisect(store, pub, lo, hi, budget)
    return lo if good is None else good + 1


def check(store, pub, device_id, sign_cfg, full=True):
    if store.last_seq is None:
        return bool(sign_cfg), None, []
    # Checkpoints matter under policy 0 only: kept until entry 0 says otherwise.
    w = _Walk(store, device_id, store.first_seq == 0 or not sign_cfg)
    start = store.first_seq if full or not store._segs else store._segs[-1]
    if store.first_seq == 0 and start > 0:
        # Quick boot: the walk starts in the last segment; entry 0 (the policy) is
        # the first record of the first segment.
        it = store.records(0)
        try:
            for rec in it:
                magic, flags, seq, blen = parse(rec)
                if magic == ENTRY:
                    w._entry(rec, flags, seq, blen)
                    break
        finally:
            it.close()
        w.first = w.seq = w.h = None
        w.broken = None
    w.run(start)
    per_entry = (w.policy0 == entry.POLICY_EVERY_ENTRY) if w.policy0 is not None \
        else bool(sign_cfg)
    if w.seq is None:
        return per_entry, None, w.alerts
    problems = []  # (seq from which to walk back, reason)
    if w.broken is not None:
        problems.append((w.broken - 1, "entry %d does not link to entry %d" % (
            w.broken, w.broken - 1)))
    if per_entry:
        for seq, h, sig in w.anchors:
            if sig is None or not p256.verify(pub, h, sig):
                problems.append((seq, "entry %d before a gap is not signed by this device"
                                 % seq))
        if not w.signed:
            problems.append((w.seq, "newest entry %d carries no signature" % w.seq))
        elif not p256.verify(pub, w.h, w.sig):
            problems.append((w.seq, "signature of newest entry %d does not verify" % w.seq))
    elif w.cps:
        seq, matched, b = w.cps[-1]
        if matched is False:
            problems.append((seq, "checkpoint at seq %d does not match entry %d" % (
                seq, seq)))
        elif not _cp_verifies(pub, _cose(b, device_id, seq)):
            problems.append((seq, "checkpoint at seq %d does not verify" % seq))
    p = None
    why = None
    for q, r in problems:
        if not _known(q, w.alerts) and (p is None or q < p):
            p = q
            why = r
    if p is None:
        return per_entry, None, w.alerts
    if per_entry:
        lo = w.first
        for r in w.runs:
            if r <= p:
                lo = r
        first = _entry_back(store, pub, lo, p, w.alerts)
    else:
        # Policy 0: vouched for is what the newest valid checkpoint at or below p
        # covers (its head matched its entry in the walk); nothing else.
        first = w.first
        n = 0
        for seq, matched, b in reversed(w.cps):
            if seq <= p and matched and n < _MAX_VERIFY:
                n += 1
                if _cp_verifies(pub, _cose(b, device_id, seq)):
                    first = seq + 1
                    break
    return per_entry, (max(first, w.first), why), w.alerts
