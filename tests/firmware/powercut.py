# Power-cut sweep for the log store, run on the device VM (tests and tools/ share it).
#
# One clean run of a fixed script (open the store, append chained entries with
# checkpoints, rotate segments, prune once) counts its flash operations T. Then for
# every cut point c in 0..T-1 (or every `stride`-th): restore the freshly formatted
# image, replay the script with the block device failing at operation c (power lost),
# "reboot" (remount the flash as it is), and check:
#   - the log is an exact prefix of what was appended: the same bytes, no holes,
#     the hash chain recomputed from the bodies links up, no problems reported;
#   - every append that returned before the cut is there (flush_every=1: durable);
#   - appending resumes at last_seq + 1 on the right head and survives another reboot.
import hashlib

import ramblock
from hashtrail import logstore

_ZERO = b"\0" * 32
BLOCKS = 24


def _expected(n):
    out = []
    prev = _ZERO
    for seq in range(n):
        body, prev = ramblock.chain_body(prev, seq, 20 + seq * 37 % 90)
        out.append(body)
    return out


def _open(root):
    return logstore.LogStore(root, seg_records=6, seg_bytes=1024, flush_every=1)


def _script(root, bodies, done):
    st = _open(root)
    for seq in range(len(bodies)):
        st.append(seq, bodies[seq])
        done[0] = seq
        if seq % 5 == 4:
            st.append(seq, b"cp" + hashlib.sha256(bodies[seq]).digest(), None,
                      logstore.CHECKPOINT)
        if seq == len(bodies) * 2 // 3:
            st.prune(seq // 2)
    st.close()


def check_after_reboot(root, bodies, done_seq):
    st = _open(root)
    if st.problems:
        raise AssertionError("problems after power cut: %r" % (st.problems,))
    first = st.first_seq
    last = st.last_seq
    if done_seq >= 0 and (last is None or last < done_seq):
        raise AssertionError("lost a completed append: last %r < %d" % (last, done_seq))
    if last is not None and last > done_seq + 1:
        raise AssertionError("entries that were never appended: %d" % last)
    expect = first
    prev = None
    for rec in st.records(0):
        magic, _, seq, blen = logstore.parse(rec)
        body = bytes(rec[8:8 + blen])
        if magic != logstore.ENTRY:
            continue
        if seq != expect or body != bodies[seq]:
            raise AssertionError("entry %d is not the appended one (want %r)" % (seq, expect))
        if prev is not None and body[0:32] != prev:
            raise AssertionError("chain broken at %d" % seq)
        prev = hashlib.sha256(body).digest()
        expect = seq + 1
    if last is not None and expect != last + 1:
        raise AssertionError("records end at %d, last_seq %d" % (expect - 1, last))
    # Resume: the next entry chains on the recovered head.
    nxt = 0 if last is None else last + 1
    head = _ZERO if last is None else hashlib.sha256(st.last_entry()).digest()
    body, _ = ramblock.chain_body(head, nxt, 33)
    st.append(nxt, body)
    st.close()
    return nxt


def sweep(n_entries=30, stride=1, half=False, start=0, limit=-1, verbose=False,
          blocks=BLOCKS):
    """Returns (total_ops, cuts_checked). Raises AssertionError on the first bad cut."""
    bodies = _expected(n_entries)
    bd = ramblock.RamBlock(4096, blocks)
    import vfs

    vfs.VfsLfs2.mkfs(bd)
    image = bd.image()
    mem = bd.mem
    bd.reset_counters()
    done = [-1]
    root = ramblock.mount(bd) + "/ht"
    _script(root, bodies, done)
    total = bd.ops
    bd.arm(0)
    checked = 0
    c = start
    while c < total and (limit < 0 or checked < limit):
        mem.seek(0)
        mem.write(image)
        bd = ramblock.RamBlock(4096, blocks, mem)
        bd.arm(c, half)
        done[0] = -1
        root = ramblock.mount(bd) + "/ht"
        try:
            _script(root, bodies, done)
            raise AssertionError("cut %d of %d never happened" % (c, total))
        except ramblock.PowerCut:
            pass
        try:
            bd = ramblock.reboot(bd)
            nxt = check_after_reboot(root, bodies, done[0])
            bd = ramblock.reboot(bd)
            st = _open(root)
            if st.last_seq != nxt or st.problems:
                raise AssertionError("resumed entry %d lost after reboot" % nxt)
            st.close()
            bd.arm(0)
        except Exception as e:
            raise AssertionError("cut at flash op %d/%d (half=%r, last done %d): %r" % (
                c, total, half, done[0], e))
        checked += 1
        if verbose and checked % 100 == 0:
            print("  %d/%d cuts ok" % (c + 1, total))
        c += stride
    return total, checked
