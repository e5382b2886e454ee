# Boot-only, and only when needed: the decision of the device's boot check after
# bootcheck.walk() when the common case (every entry signed, links intact, no gap, the
# newest entry's signature verifies: devlog.Log._boot_check) does not hold: which
# problem comes first, and where the range the device no longer vouches for starts.
# Also every boot of a board that signs checkpoints only (policy 0: its newest
# checkpoint is parsed and verified here). devlog imports it then and drops it again.
#
#   decide(store, pub, device_id, wk) -> None or (first_seq, reason)
#     wk: the tuple bootcheck.walk returns (see there). None: nothing new to report.
#
# Problems, each with the seq from which to look back:
#   a link break at b (entry b's prev is not the hash of entry b-1): from b-1
#   policy 1: the last entry before a gap, or the newest entry, without a signature
#             that verifies: from that entry
#   policy 0: the newest checkpoint does not verify, or its head is not the hash of its
#             entry: from its seq
# The lowest problem not inside an earlier report's range is reported. Looking back:
# policy 1, within a run of intact links an entry whose signature verifies proves
# every entry before it (its hash commits to its prev, and so on) and no entry after
# an edited one can verify, so a binary search finds the newest entry that verifies
# (at most _MAX_VERIFY verifies: enough for 65,536 entries; entries with no signature
# count as not verifying, which only moves the answer lower); policy 0, the newest
# checkpoint at or below the problem that verifies and matches its entry. first_seq is
# the seq after it, else the lowest seq the search could not vouch for.
import hashlib

from micropython import const

from hashtrail import cose, p256
from hashtrail.logstore import ENTRY, FLAG_SIG, parse

_HDR = const(8)
_SIG = const(64)
_MAX_VERIFY = const(16)  # ECDSA verifies spent on a walk-back


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


def _matched(device_id, seq, h, b):
    """The checkpoint's head is the hash of its entry (None: entry not walked)."""
    if h is None:
        return None
    c = _cose(b, device_id, seq)
    return c is not None and bytes(c[3]) == h


def cp_problem(pub, device_id, cps):
    seq, h, b = cps[-1]
    if _matched(device_id, seq, h, b) is False:
        return "checkpoint at seq %d does not match entry %d" % (seq, seq)
    if not _cp_verifies(pub, _cose(b, device_id, seq)):
        return "checkpoint at seq %d does not verify" % seq
    return None


def cp_back(pub, device_id, cps, p, lo):
    # Vouched for is what the newest valid checkpoint at or below p covers (its head
    # matched its entry in the walk); nothing else.
    for seq, h, b in reversed(cps):
        if seq <= p and _matched(device_id, seq, h, b) and \
                _cp_verifies(pub, _cose(b, device_id, seq)):
            return seq + 1
    return lo


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


def entry_back(store, pub, lo, p, alerts):
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


def _known(p, alerts):
    for first, seq, _ in alerts:
        if first - 1 <= p < seq:
            return True
    return False


def decide(store, pub, device_id, wk):
    per_entry, lo, last, h, sig, broken, anchors, runs, alerts, cps = wk
    if last is None:
        return None
    problems = []  # (seq from which to look back, reason)
    if broken is not None:
        problems.append((broken - 1, "entry %d does not link to entry %d" % (
            broken, broken - 1)))
    if per_entry:
        for seq, ah, asig in anchors:
            if asig is None or not p256.verify(pub, ah, asig):
                problems.append((seq, "entry %d before a gap is not signed by this device"
                                 % seq))
        if sig is None:
            problems.append((last, "newest entry %d carries no signature" % last))
        elif not p256.verify(pub, h, sig):
            problems.append((last, "signature of newest entry %d does not verify" % last))
    elif cps:
        why = cp_problem(pub, device_id, cps)
        if why is not None:
            problems.append((cps[-1][0], why))
    p = None
    why = None
    for q, r in problems:
        if not _known(q, alerts) and (p is None or q < p):
            p = q
            why = r
    if p is None:
        return None
    if per_entry:
        run = lo
        for r in runs:
            if r <= p:
                run = r
        first = entry_back(store, pub, run, p, alerts)
    else:
        first = cp_back(pub, device_id, cps, p, lo)
    return max(first, lo), why
