# Append-only record log on littlefs: segment files, power-cut recovery, pruning.
#
# Layout (docs/FORMATS.md "Records on flash"): `<root>/log/NNNNNNNNNN.seg`, each named
# after the seq of its first entry record, each a run of records (their format, magic
# bytes and file names: logrec.py)
#
#   0 magic (0xA7 entry, 0xC7 checkpoint) | 1 flags (bit 0: 64-byte sig follows body)
#   2 seq u32 LE | 6 body length u16 LE | 8 body | [64 sig] | CRC-32 LE of all before
#
# The store treats bodies as opaque bytes; devlog.py gives them meaning.
#
# API (all seqs are ints; `None` means "no entry yet"):
#   s = LogStore(root, seg_records=256, seg_bytes=16384, max_body=1024,
#                flush_every=1, flush_ms=0, reserve=None, boot_check=True, ticks=None,
#                observe=None)
#       Opens (or creates) the log and recovers it: see "Boot" below. observe, when
#       given, is a function the boot scan calls (no argument) once it finds segment
#       files, after the store's buffers are made; what it returns is then called with
#       every valid record the scan reads, in log order (a memoryview of the scan
#       buffer, valid during the call), and left in s.observed (None when there was no
#       log) for the caller to take. devlog's boot check walks the chain that way,
#       without a second pass over the flash and without its code loaded on a first
#       boot.
#   s.first_seq, s.last_seq          oldest entry held / newest complete entry
#   s.problems                       [(what, seq, segment, offset)], at most 16:
#       "torn"    invalid bytes to the end of the last segment, truncated at boot
#       "corrupt" invalid bytes followed by valid records (skipped, kept on flash)
#       "gap"     entries seq..(next segment first - 1) are missing (segment file gone)
#       "order"   a valid record whose seq does not follow its predecessor
#   s.last_entry()                   body bytes of the newest entry (allocates; boot only)
#   s.newest_hash()                  SHA-256 of the newest entry as it is on flash now
#   s.append(seq, body, sig=None, magic=ENTRY, floor=False) -> record length
#       raises LogFull when the write would eat into the reserve (floor=True lets it
#       use the reserve down to half of it: for entries that must not be lost).
#   s.flush()  s.tick()  s.close()   durability: see docs/STORAGE.md
#   s.records(from_seq=0, buf=None)  generator of memoryviews, each one whole record
#       (valid until the next step); entries with seq >= from_seq and the checkpoints
#       after them. One reusable buffer: a log of any length streams in O(1) heap.
#   s.prune(acked_seq) -> segments deleted (never the segment being written)
#   s.free_bytes()                   filesystem free space (statvfs)
#   ENTRY, CHECKPOINT, FLAG_SIG, parse(rec), seg_name(seq)   logrec.py's, re-exported
#
# Boot: every segment is walked (CRC, seq order, name gaps) when boot_check is set,
# else only the last one. A bad tail of the last segment is cut off by copying the
# valid prefix to `<name>.tmp` and renaming it over the segment: MicroPython's littlefs
# file objects have no truncate(), and littlefs rename is atomic, so a power cut during
# the repair leaves either the old segment or the repaired one (a stale .tmp is removed).
#
# Allocation: append() allocates nothing except when rotating segments (path string,
# file object) and when the free-space estimate runs low (statvfs tuple). Reading
# allocates one small memoryview slice per record. Buffers are made once in __init__.
import hashlib
import os
import struct
from binascii import crc32
from micropython import const
from time import ticks_diff, ticks_ms

from hashtrail import drop
from hashtrail.logrec import CHECKPOINT, ENTRY, FLAG_SIG, parse, seg_name

_HDR = const(8)
_SIG = const(64)
_CRC = const(4)
_STAT_SIZE = const(6)


class LogFull(Exception):
    """The filesystem is too full for this record (the reserve is kept for overflow).
    Raised as a new instance each time: MicroPython appends a traceback entry to an
    exception object at every raise, so one preallocated instance grew without bound on
    a device refusing readings on a full flash."""


class LogError(Exception):
    """A caller bug: wrong seq, body too long. Never a flash fault."""


def _ticks_ms():
    return ticks_ms()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class LogStore:
    def __init__(self, root, seg_records=256, seg_bytes=16384, max_body=1024,
                 flush_every=1, flush_ms=0, reserve=None, boot_check=True, ticks=None,
                 observe=None):
        if max_body < 1 or max_body > 0xFFFF:
            raise LogError("max_body must be 1..65535")
        self.dir = root + "/log"
        self.seg_records = seg_records
        self.seg_bytes = seg_bytes
        self.max_body = max_body
        self.flush_every = flush_every
        self.flush_ms = flush_ms
        self._ticks = ticks or _ticks_ms
        # One record of the largest size, shared by boot scan and appends' CRC check.
        self._buf = bytearray(_HDR + max_body + _SIG + _CRC)
        self._mv = memoryview(self._buf)
        # records() buffer: made now, on the boot heap; made on the first stream, a
        # 1 KB block may no longer be found in a heap fragmented by signing's bigints.
        self._rbuf = bytearray(len(self._buf))
        self._hdr = bytearray(_HDR)
        self._crcb = bytearray(_CRC)
        self.problems = []
        self.first_seq = None
        self.last_seq = None
        self._segs = []  # first seq of each segment file, ascending
        self._f = None  # segment open for append
        self._seg_n = 0  # entry records in the open (last) segment
        self._seg_size = 0  # bytes in the last segment
        self._last_off = -1  # offset of the newest entry record in the last segment
        self._last_len = 0
        self._unflushed = 0
        self._flushed_at = self._ticks()
        self.flushes = 0
        self._full = False
        self._sealed = False
        self._observe = self._observer = None
        try:
            os.mkdir(root)
        except OSError:
            pass
        try:
            os.mkdir(self.dir)
        except OSError:
            pass
        st = os.statvfs(self.dir)
        self._bsize = st[0]
        # Default reserve: room to repair (copy) one segment plus a few blocks that
        # littlefs needs for copy-on-write of metadata and the file's last block.
        if reserve is None:
            reserve = seg_bytes + 4 * self._bsize
        self.reserve = reserve
        self._observe = observe  # made by the scan when there is a log to scan
        self._recover(boot_check)
        self.observed = self._observer  # the caller takes it (and lets it go)
        self._observe = self._observer = None
        self._measure()

    # ---- boot ----------------------------------------------------------------------
    def _recover(self, full):
        # Boot-only code (the recovery scan, the torn-tail repair) lives in logscan.py,
        # imported for the scan and dropped again: it is not resident while the app runs.
        try:
            from hashtrail import logscan

            logscan.recover(self, full)
        finally:
            drop("logscan")

    def _read_at(self, f, off, size, mv):
        """Length of the valid record at off (read into mv), 0 if invalid, -1 at EOF."""
        if size - off < _HDR + _CRC:
            return 0 if size > off else -1
        f.seek(off)
        if f.readinto(mv[:_HDR]) != _HDR:
            return 0
        buf = mv
        magic = buf[0]
        flags = buf[1]
        if (magic != ENTRY and magic != CHECKPOINT) or flags & ~FLAG_SIG:
            return 0
        blen = buf[6] | (buf[7] << 8)
        if blen == 0 or blen > self.max_body:
            return 0
        rl = _HDR + blen + (_SIG if flags & FLAG_SIG else 0) + _CRC
        if rl > size - off:
            return 0
        if f.readinto(mv[_HDR:rl]) != rl - _HDR:
            return 0
        c = crc32(mv[: rl - _CRC])
        if c != struct.unpack_from("<I", buf, rl - _CRC)[0]:
            return 0
        return rl

    def _resync(self, f, start, size):
        """Offset of the next valid record at or after start, or -1 (corruption repair)."""
        chunk = bytearray(64)
        pos = start
        while pos < size - _HDR - _CRC + 1:
            f.seek(pos)
            got = f.readinto(chunk)
            if not got:
                break
            for i in range(got):
                b = chunk[i]
                if b == ENTRY or b == CHECKPOINT:
                    if self._read_at(f, pos + i, size, self._mv) > 0:
                        return pos + i
            pos += got
        return -1

    def last_entry(self):
        """Body of the newest entry record, as bytes (None when the log is empty)."""
        if self._last_off < 0:
            if self.last_seq is None:
                return None
            # Newest entry sits in an earlier segment (last one holds only checkpoints).
            for rec in self.records(self.last_seq):
                if rec[0] == ENTRY:
                    return bytes(rec[_HDR:_HDR + parse(rec)[3]])
            return None
        path = self.dir + "/" + seg_name(self._segs[-1])
        self._flush_if_open()
        with open(path, "rb") as f:
            f.seek(self._last_off)
            rec = bytearray(self._last_len)
            f.readinto(rec)
        return bytes(rec[_HDR:_HDR + (rec[6] | rec[7] << 8)])

    def newest_hash(self):
        """SHA-256 of the newest entry as it is on flash now (None: empty, unreadable).

        Read into the scan buffer: allocates only the file object and the digest."""
        if self.last_seq is None:
            return None
        if self._last_off < 0:
            b = self.last_entry()
            return None if b is None else hashlib.sha256(b).digest()
        self._flush_if_open()
        with open(self.dir + "/" + seg_name(self._segs[-1]), "rb") as f:
            rl = self._read_at(f, self._last_off, self._seg_size, self._mv)
        if rl <= 0 or self._buf[0] != ENTRY or parse(self._buf)[2] != self.last_seq:
            return None
        return hashlib.sha256(self._mv[_HDR:_HDR + parse(self._buf)[3]]).digest()

    # ---- space ---------------------------------------------------------------------
    def free_bytes(self):
        st = os.statvfs(self.dir)
        return st[0] * st[3]

    def _measure(self):
        self._free = self.free_bytes()
        self._full = self._free < self.reserve

    # ---- append --------------------------------------------------------------------
    def append(self, seq, body, sig=None, magic=ENTRY, floor=False):
        blen = len(body)
        if blen == 0 or blen > self.max_body:
            raise LogError("body length out of range")
        if sig is not None and len(sig) != _SIG:
            raise LogError("signature must be 64 bytes")
        if magic == ENTRY:
            if self.last_seq is not None and seq != self.last_seq + 1:
                raise LogError("entry seq does not follow the log")
        elif magic == CHECKPOINT:
            if self.last_seq is None or seq != self.last_seq:
                raise LogError("checkpoint seq must be the newest entry")
        else:
            raise LogError("bad magic")
        rl = _HDR + blen + (_SIG if sig is not None else 0) + _CRC
        limit = self.reserve // 2 if floor else self.reserve
        if self._free - rl - self._bsize < limit:
            # Estimate says no: ask the filesystem once per state change (statvfs walks
            # the littlefs metadata, too slow to call on every append).
            if not self._full:
                self._measure()
            if self._free - rl - self._bsize < limit:
                self._full = True
                raise LogFull()
        try:
            if self._f is None and self._segs and not self._sealed and (magic == CHECKPOINT or (
                    self._segs[-1] == seq or self._seg_n) and self._room(rl)):
                self._f = open(self.dir + "/" + seg_name(self._segs[-1]), "ab")
            if magic == ENTRY and (self._f is None or not self._room(rl)):
                self._rotate(seq)
        except OSError:
            self._full = True
            raise LogFull()
        hdr = self._hdr
        struct.pack_into("<BBIH", hdr, 0, magic, FLAG_SIG if sig is not None else 0, seq, blen)
        c = crc32(hdr)
        c = crc32(body, c)
        if sig is not None:
            c = crc32(sig, c)
        struct.pack_into("<I", self._crcb, 0, c)
        f = self._f
        try:
            f.write(hdr)
            f.write(body)
            if sig is not None:
                f.write(sig)
            f.write(self._crcb)
        except OSError:
            # littlefs ran out of blocks mid-record: the partial record must not be
            # committed by a later sync. Close, cut the tail back, reopen.
            self._repair_tail()
            self._full = True
            raise LogFull()
        if magic == ENTRY:
            self._last_off = self._seg_size
            self._last_len = rl
            self._seg_n += 1
            self.last_seq = seq
            if self.first_seq is None:
                self.first_seq = seq
        self._seg_size += rl
        self._free -= rl
        self._unflushed += 1
        if self.flush_every and self._unflushed >= self.flush_every:
            self.flush()
        elif self.flush_ms:
            self.tick()
        return rl

    def _room(self, rl):
        """Whether the last segment takes one more entry record of rl bytes."""
        return self._seg_n < self.seg_records and (
            self._seg_n == 0 or self._seg_size + rl <= self.seg_bytes)

    def _rotate(self, seq):
        if self._f is not None:
            self._f.close()
            self._f = None
            self._unflushed = 0
            self.flushes += 1
            self._measure()
        self._segs.append(seq)
        self._seg_n = 0
        self._seg_size = 0
        self._last_off = -1
        self._sealed = False
        self._f = open(self.dir + "/" + seg_name(seq), "ab")

    def reload(self):
        """Forget the in-memory state and recover it from flash again (quick scan)."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        self.first_seq = None
        self.last_seq = None
        self._seg_n = 0
        self._seg_size = 0
        self._last_off = -1
        self._unflushed = 0
        self._recover(False)
        self._measure()

    def _repair_tail(self):
        try:
            self._f.close()
        except OSError:
            pass
        self._f = None
        self.reload()

    def _flush_if_open(self):
        if self._f is not None and self._unflushed:
            self.flush()

    def flush(self):
        """Commit everything appended so far (littlefs sync: survives a power cut)."""
        if self._f is not None:
            try:
                self._f.flush()
            except OSError:
                # No block left for littlefs's copy-on-write: what is durable is what
                # the last sync wrote. Reload the state from flash; caller re-reads it.
                self.reload()
                self._full = True
                raise LogFull()
        self._unflushed = 0
        self._flushed_at = self._ticks()
        self.flushes += 1

    def tick(self):
        """Call now and then: applies the time-based flush policy (flush_ms)."""
        if self._unflushed and self.flush_ms and (
                ticks_diff(self._ticks(), self._flushed_at) >= self.flush_ms):
            self.flush()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
            self._unflushed = 0

    # ---- read ----------------------------------------------------------------------
    def records(self, from_seq=0, buf=None):
        """Yield each valid record (memoryview into buf) of entries >= from_seq, in order.

        Appends and prune() may run while a reader is suspended; a segment is read as it
        was on flash when the reader opened it."""
        self._flush_if_open()
        if buf is None:
            if self._rbuf is None:
                self._rbuf = bytearray(len(self._buf))
            buf = self._rbuf
        mv = memoryview(buf)
        # Walk by seq, not by list index: prune() may drop segments while a reader is
        # suspended between records (littlefs keeps an open file's blocks intact even
        # after it is removed, so the open segment still reads correctly).
        cur = -1
        for s in self._segs:
            if s <= from_seq:
                cur = s
        if cur < 0 and self._segs:
            cur = self._segs[0]
        while cur >= 0:
            self._flush_if_open()
            path = self.dir + "/" + seg_name(cur)
            try:
                size = os.stat(path)[_STAT_SIZE]
                f = open(path, "rb")
            except OSError:
                size = -1
            if size >= 0:
                try:
                    off = 0
                    while off < size:
                        rl = self._read_at(f, off, size, mv)
                        if rl <= 0:
                            off = self._resync(f, off + 1, size)
                            if off < 0:
                                break
                            continue
                        if (buf[2] | buf[3] << 8 | buf[4] << 16 | buf[5] << 24) >= from_seq:
                            yield mv[:rl]
                        off += rl
                finally:
                    f.close()
            nxt = -1
            for s in self._segs:
                if s > cur:
                    nxt = s
                    break
            cur = nxt

    # ---- prune ---------------------------------------------------------------------
    def prune(self, acked_seq):
        """Delete whole segments whose entries are all <= acked_seq; returns how many.

        The segment being written is never deleted: it holds the chain head."""
        segs = self._segs
        n = 0
        while len(segs) > 1 and segs[1] - 1 <= acked_seq:
            os.remove(self.dir + "/" + seg_name(segs[0]))
            segs.pop(0)
            n += 1
        if n:
            self.first_seq = segs[0]
            self._measure()
        elif self._full:
            self._measure()
        return n
