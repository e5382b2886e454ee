# Boot-only part of logstore.py: the recovery scan of the segment files and the repair
# of a torn tail (docs/STORAGE.md; what the scan reports: logstore.py "Boot").
#
# Why a module of its own: this code runs once per boot (and again only when a failed
# write makes the store reload its state from flash), while the heap is the device's
# scarcest resource (boards/esp32.json: 100 KB for everything). LogStore._recover
# imports it, runs recover() and drops it again (hashtrail.drop), so it does not stay
# resident while the app runs.
#
#   recover(store, full)   full: walk every segment (else only the last one(s))
import os
import struct

from micropython import const

from hashtrail.logstore import ENTRY, seg_name

# Private const()s are folded into the bytecode, not module attributes: own copies.
_MAX_PROBLEMS = const(16)  # logstore.py: "problems ... at most 16"
_STAT_SIZE = const(6)


def _problem(s, what, seq, seg, off):
    if len(s.problems) < _MAX_PROBLEMS:
        s.problems.append((what, seq, seg, off))


def recover(s, full):
    segs = []
    for ent in os.ilistdir(s.dir):
        name = ent[0]
        if name.endswith(".tmp"):
            os.remove(s.dir + "/" + name)  # an interrupted repair: the .seg is intact
        elif name.endswith(".seg") and len(name) == 14:
            try:
                segs.append(int(name[:10]))
            except ValueError:
                pass
    segs.sort()
    s._segs = segs
    if not segs:
        return
    s.first_seq = segs[0]
    if s._observe is not None and s._observer is None:
        s._observer = s._observe()  # the boot check's walk (bootcheck.Walk)
    last = len(segs) - 1
    if full:
        prev_last = None
        for i in range(last + 1):
            first = segs[i]
            if prev_last is not None and first > prev_last + 1:
                _problem(s, "gap", prev_last + 1, seg_name(first), 0)
            elif prev_last is not None and first <= prev_last:
                _problem(s, "order", first, seg_name(first), 0)
            res = _scan(s, first, i == last)
            if res is not None:
                prev_last = res
        s.last_seq = prev_last
        return
    # Quick boot: only the last segment (and earlier ones if it holds no entry).
    i = last
    while i >= 0:
        res = _scan(s, segs[i], i == last)
        if res is not None:
            s.last_seq = res
            return
        i -= 1


def _scan(s, first, is_last):
    """Walk one segment; returns its last entry seq (None if it has none).

    In the last segment, also sets the append state and cuts a torn tail."""
    path = s.dir + "/" + seg_name(first)
    size = os.stat(path)[_STAT_SIZE]
    expect = first
    last = None
    n = 0
    last_off = -1
    last_len = 0
    good_end = 0
    with open(path, "rb") as f:
        off = 0
        while off < size:
            rl = s._read_at(f, off, size, s._mv)
            if rl <= 0:
                # Report the seq the bad bytes should have held: one past the last
                # good entry (the segment's first seq when there is none).
                at = first if last is None else last + 1
                nxt = s._resync(f, off + 1, size)
                if nxt < 0:
                    _problem(s, "torn" if is_last else "corrupt", at, seg_name(first), off)
                    break
                _problem(s, "corrupt", at, seg_name(first), off)
                off = nxt
                expect = -1  # whatever follows the damage is not an order error
                continue
            if s._observer is not None:
                s._observer(s._mv[:rl])
            magic = s._buf[0]
            seq = struct.unpack_from("<I", s._buf, 2)[0]
            if magic == ENTRY:
                if expect >= 0 and seq != expect:
                    _problem(s, "order", seq, seg_name(first), off)
                last = seq
                expect = seq + 1
                n += 1
                last_off = off
                last_len = rl
            off += rl
            good_end = off
    if is_last:
        s._sealed = False
        if good_end < size:
            try:
                _truncate(s, path, good_end)
            except OSError:
                # No room to repair: never append after the bad bytes; the next
                # entry opens a new segment and this tail reads as "corrupt".
                s._sealed = True
        s._seg_n = n
        s._seg_size = good_end
        s._last_off = last_off
        s._last_len = last_len
    return last


def _truncate(s, path, keep):
    """Cut a segment to its first `keep` bytes: copy to .tmp, then atomic rename."""
    tmp = path[:-4] + ".tmp"
    chunk = s._mv[:256] if len(s._buf) >= 256 else s._mv
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        left = keep
        while left:
            n = src.readinto(chunk[: min(len(chunk), left)])
            if not n:
                break
            dst.write(chunk[:n])
            left -= n
    os.rename(tmp, path)

