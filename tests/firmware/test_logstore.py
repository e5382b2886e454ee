# Log store on littlefs (RAM block device): framing, rotation, recovery, pruning, full.
# HEAP: the RAM "flash" itself lives on the VM heap here (the store's own heap use is
# measured at the board budget in test_logstore_heap.py on a file-backed device).
import os
import struct

import dtest
import ramblock
from hashtrail import logstore

HEAP = 1572864


def _fresh(blocks=48, bs=4096):
    bd = ramblock.RamBlock(bs, blocks)
    root = ramblock.mount(bd, mkfs=True) + "/ht"
    return bd, root


def _fill(st, n, start=0, prev=b"\0" * 32, size=40, sig_every=0, cp_every=0):
    """Append n chained entries (and checkpoints); returns (bodies, head)."""
    bodies = []
    for seq in range(start, start + n):
        body, prev = ramblock.chain_body(prev, seq, size + seq % 13)
        sig = bytes([seq & 0xFF]) * 64 if sig_every and seq % sig_every == 0 else None
        st.append(seq, body, sig)
        bodies.append((seq, body, sig))
        if cp_every and seq % cp_every == cp_every - 1:
            st.append(seq, b"cp" + prev, None, logstore.CHECKPOINT)
    return bodies, prev


def _entries(st, from_seq=0):
    out = []
    for rec in st.records(from_seq):
        magic, flags, seq, blen = logstore.parse(rec)
        if magic == logstore.ENTRY:
            sig = bytes(rec[8 + blen:8 + blen + 64]) if flags & 1 else None
            out.append((seq, bytes(rec[8:8 + blen]), sig))
    return out


def test_append_read_rotate_reopen():
    bd, root = _fresh()
    st = logstore.LogStore(root, seg_records=10, seg_bytes=4096)
    bodies, head = _fill(st, 95, sig_every=7, cp_every=20)
    dtest.eq(st.first_seq, 0)
    dtest.eq(st.last_seq, 94)
    names = sorted(os.listdir(root + "/log"))
    dtest.eq(names, ["%010d.seg" % s for s in range(0, 95, 10)])
    dtest.eq(_entries(st), bodies)
    st.close()
    bd = ramblock.reboot(bd)
    st = logstore.LogStore(root, seg_records=10, seg_bytes=4096)
    dtest.eq(st.problems, [])
    dtest.eq((st.first_seq, st.last_seq), (0, 94))
    dtest.eq(st.last_entry(), bodies[-1][1])
    dtest.eq(_entries(st, 50), bodies[50:])
    # Checkpoint records come back too, right after the entry they cover.
    seqs = [(logstore.parse(r)[0], logstore.parse(r)[2]) for r in st.records(55)]
    dtest.true((logstore.CHECKPOINT, 59) in seqs and seqs.index((logstore.CHECKPOINT, 59)) ==
               seqs.index((logstore.ENTRY, 59)) + 1, seqs)
    more, head = _fill(st, 3, 95, head)
    dtest.eq(_entries(st, 90), bodies[90:] + more)


def test_byte_rotation_and_record_layout():
    bd, root = _fresh()
    st = logstore.LogStore(root, seg_records=1000, seg_bytes=512)
    _fill(st, 30, size=60)
    for name in os.listdir(root + "/log"):
        size = os.stat(root + "/log/" + name)[6]
        dtest.true(size <= 512, "segment %s is %d bytes" % (name, size))
    # Byte layout of one record, straight from docs/FORMATS.md.
    rec = bytes(next(st.records(3)))
    import binascii
    dtest.eq(rec[0], 0xA7)
    dtest.eq(rec[1], 0)
    dtest.eq(struct.unpack("<I", rec[2:6])[0], 3)
    blen = struct.unpack("<H", rec[6:8])[0]
    dtest.eq(len(rec), 8 + blen + 4)
    dtest.eq(struct.unpack("<I", rec[-4:])[0], binascii.crc32(rec[:-4]))


def test_caller_errors_are_log_errors():
    bd, root = _fresh()
    st = logstore.LogStore(root, max_body=100)
    st.append(0, b"x")
    dtest.raises(logstore.LogError, st.append, 2, b"x")
    dtest.raises(logstore.LogError, st.append, 0, b"x")
    dtest.raises(logstore.LogError, st.append, 1, b"x" * 101)
    dtest.raises(logstore.LogError, st.append, 1, b"")
    dtest.raises(logstore.LogError, st.append, 1, b"x", b"short")
    dtest.raises(logstore.LogError, st.append, 1, b"x", None, logstore.CHECKPOINT)
    st.append(0, b"cp", None, logstore.CHECKPOINT)
    dtest.eq(st.last_seq, 0)


def test_prune_deletes_only_fully_acknowledged_segments():
    bd, root = _fresh()
    st = logstore.LogStore(root, seg_records=10)
    bodies, _ = _fill(st, 45)
    dtest.eq(st.prune(8), 0)  # segment 0..9 still holds 9
    dtest.eq(st.prune(9), 1)
    dtest.eq(st.first_seq, 10)
    dtest.eq(st.prune(1000), 3)  # never the segment being written (holds the head)
    dtest.eq(st.first_seq, 40)
    dtest.eq(sorted(os.listdir(root + "/log")), ["0000000040.seg"])
    dtest.eq(_entries(st), bodies[40:])
    st.close()
    bd = ramblock.reboot(bd)
    st = logstore.LogStore(root, seg_records=10)
    dtest.eq((st.first_seq, st.last_seq, st.problems), (40, 44, []))


def _flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x10]))


def _offset_of(st, seq):
    """Byte offset of entry seq inside its segment."""
    seg = max(s for s in st._segs if s <= seq)
    off = 0
    for rec in st.records(seg):
        if logstore.parse(rec)[2] == seq and rec[0] == logstore.ENTRY:
            return seg, off
        off += len(rec)
    raise AssertionError("seq not found")


def test_corruption_in_the_middle_is_reported_with_its_seq():
    bd, root = _fresh()
    st = logstore.LogStore(root, seg_records=10)
    bodies, head = _fill(st, 35)
    seg, off = _offset_of(st, 13)
    lseg, loff = _offset_of(st, 32)
    st.close()
    _flip(root + "/log/%010d.seg" % seg, off + 20)  # body byte of entry 13
    _flip(root + "/log/%010d.seg" % lseg, loff + 3)  # seq byte of entry 32 (last segment)
    bd = ramblock.reboot(bd)
    st = logstore.LogStore(root, seg_records=10)
    dtest.eq(st.problems, [("corrupt", 13, "0000000010.seg", off),
                           ("corrupt", 32, "0000000030.seg", loff)])
    dtest.eq(st.last_seq, 34)
    got = _entries(st)
    dtest.eq(got, bodies[:13] + bodies[14:32] + bodies[33:])
    more, _ = _fill(st, 2, 35, head)
    dtest.eq(_entries(st, 34), bodies[34:] + more)


def test_missing_segment_is_a_gap():
    bd, root = _fresh()
    st = logstore.LogStore(root, seg_records=10)
    bodies, _ = _fill(st, 35)
    st.close()
    os.remove(root + "/log/0000000010.seg")
    bd = ramblock.reboot(bd)
    st = logstore.LogStore(root, seg_records=10)
    dtest.eq(st.problems, [("gap", 10, "0000000020.seg", 0)])
    dtest.eq(_entries(st), bodies[:10] + bodies[20:])
    dtest.eq(st.last_seq, 34)


def test_torn_tail_is_cut_and_appending_resumes():
    for tail in (b"\xa7", b"\xa7\x00\x05\x00\x00\x00\x30\x00abc", b"\xff" * 100):
        bd, root = _fresh()
        st = logstore.LogStore(root, seg_records=10)
        bodies, head = _fill(st, 15)
        st.close()
        path = root + "/log/0000000010.seg"
        size = os.stat(path)[6]
        with open(path, "ab") as f:
            f.write(tail)
        open(root + "/log/0000000010.tmp", "wb").close()  # a repair cut short
        bd = ramblock.reboot(bd)
        st = logstore.LogStore(root, seg_records=10)
        dtest.eq(st.problems, [("torn", 15, "0000000010.seg", size)])
        dtest.eq(os.stat(path)[6], size)
        dtest.eq(sorted(os.listdir(root + "/log")), ["0000000000.seg", "0000000010.seg"])
        dtest.eq(st.last_entry(), bodies[-1][1])
        more, _ = _fill(st, 1, 15, head)
        dtest.eq(_entries(st), bodies + more)


def _fill_until_full(st):
    """Append 200-byte chained entries until the store refuses one; returns (the seq
    refused, the head before it, the body refused)."""
    seq = 0
    prev = b"\0" * 32
    while True:
        body, nprev = ramblock.chain_body(prev, seq, 200)
        try:
            st.append(seq, body)
        except logstore.LogFull:
            return seq, prev, body
        prev = nprev
        seq += 1


def test_flash_full_keeps_the_reserve_and_recovers_after_prune():
    # 24 blocks of 4 KB: littlefs uses 2 for the superblock, a few for directories.
    bd, root = _fresh(blocks=24)
    st = logstore.LogStore(root, seg_records=1000, seg_bytes=4096)
    seq, prev, _ = _fill_until_full(st)
    dtest.true(seq > 100, "only %d entries fit" % seq)
    free = st.free_bytes()
    dtest.true(free >= st.reserve, "reserve eaten: %d < %d" % (free, st.reserve))
    # Entries that must not be lost (boot, overflow, ack) may use half the reserve.
    body, prev = ramblock.chain_body(prev, seq, 40)
    st.append(seq, body, None, logstore.ENTRY, True)
    seq += 1
    body, nprev = ramblock.chain_body(prev, seq, 200)
    dtest.raises(logstore.LogFull, st.append, seq, body)
    dtest.true(st.prune(seq - 1) > 0)
    st.append(seq, body)
    dtest.eq(st.last_seq, seq)
    st.close()
    bd = ramblock.reboot(bd)
    st = logstore.LogStore(root, seg_records=1000, seg_bytes=4096)
    dtest.eq((st.last_seq, st.problems), (seq, []))


def test_refusing_on_a_full_flash_does_not_grow_the_heap():
    # A device left with a full flash refuses a reading at every sample. The refusal
    # once reused one preallocated exception, to which MicroPython appends a traceback
    # entry at every raise: 21.7 KB over 300 refused readings, until the heap ran out.
    import gc

    bd, root = _fresh(blocks=24)
    st = logstore.LogStore(root, seg_records=1000, seg_bytes=4096)
    seq, _, body = _fill_until_full(st)

    def refuse(n):
        for _ in range(n):
            try:
                st.append(seq, body)
            except logstore.LogFull:
                pass

    refuse(20)
    gc.collect()
    before = gc.mem_alloc()
    refuse(300)
    gc.collect()
    grown = gc.mem_alloc() - before
    dtest.true(grown < 1024, "300 refusals kept %d bytes" % grown)


def test_reader_survives_appends_and_prune_between_records():
    bd, root = _fresh()
    st = logstore.LogStore(root, seg_records=10)
    bodies, head = _fill(st, 25)
    got = []
    it = st.records(0)
    for _ in range(3):
        got.append(bytes(next(it)))
    dtest.eq(st.prune(19), 2)  # deletes the segment being read and the next one
    more, head = _fill(st, 10, 25, head)  # and the log grows meanwhile
    for rec in it:
        got.append(bytes(rec))
    seqs = [logstore.parse(r)[2] for r in got]
    dtest.eq(seqs, list(range(10)) + list(range(20, 35)))
