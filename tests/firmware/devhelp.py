# Shared by the devlog device tests: a settable clock and a chain walker.
import os

from hashtrail import devlog, entry, logstore


class StepClock:
    """A board clock whose uptime advances a fixed step per reading, so two runs of
    the same script write byte-identical entries (power-cut tests compare them)."""

    def __init__(self, t=None, step_ms=250):
        self.t = t
        self.up = 0
        self.step = step_ms

    def uptime_ms(self):
        self.up += self.step
        return self.up

    def now(self):
        return self.t

    def set(self, t):
        prev = self.t
        self.t = t
        return prev


def link_fields(b):
    """(seq, prev) of entry bytes: keys 0..5 in order, read with this file's own CBOR
    decoder (an independent reading, not the device's code)."""
    mv = memoryview(b)
    if mv[0] != 0xA9:
        raise ValueError("not an entry (map of 9)")
    i = 1
    vals = []
    for key in range(6):
        k, i = _item(mv, i)
        if k != key:
            raise ValueError("entry key %r where %d was expected" % (k, key))
        v, i = _item(mv, i)
        vals.append(v)
    if vals[0] != entry.VERSION or not isinstance(vals[5], bytes) or len(vals[5]) != 32:
        raise ValueError("not a version-1 entry with a 32-byte prev")
    return vals[1], vals[5]


def walk(store_or_log, pub=None):
    """Entries on flash as [(seq, bytes)], checking the hash chain link by link (from
    genesis when seq 0 is held and pub given): each entry must carry the next seq and
    the hash of the entry before it as prev. Raises ValueError on a broken link."""
    out = []
    want = None  # (seq, prev) the next entry must carry
    for rec in store_or_log.records(0):
        magic, _, seq, blen = logstore.parse(rec)
        if magic != logstore.ENTRY:
            continue
        b = bytes(rec[8:8 + blen])
        got = link_fields(b)
        if want is None:
            want = (0, entry.genesis_prev(pub)) if seq == 0 and pub is not None else got
        if got != want:
            raise ValueError("entry %d (seq %d in its bytes) does not link to entry %d"
                             % (seq, got[0], want[0] - 1))
        want = (got[0] + 1, entry.entry_hash(b))
        out.append((seq, b))
    return out


def loads(b):
    """A small CBOR decoder for tests (the device itself never decodes CBOR)."""
    v, i = _item(memoryview(b), 0)
    if i != len(b):
        raise ValueError("trailing bytes")
    return v


def _item(b, i):
    import struct

    ib = b[i]
    major = ib >> 5
    ai = ib & 31
    i += 1
    if major == 7:
        if ai == 20:
            return False, i
        if ai == 21:
            return True, i
        if ai == 22:
            return None, i
        fmt, n = {25: (">e", 2), 26: (">f", 4), 27: (">d", 8)}[ai]
        return struct.unpack(fmt, bytes(b[i:i + n]))[0], i + n
    if ai < 24:
        v = ai
    else:
        n = 1 << (ai - 24)
        v = int.from_bytes(bytes(b[i:i + n]), "big")
        i += n
    if major == 0:
        return v, i
    if major == 1:
        return -1 - v, i
    if major == 2:
        return bytes(b[i:i + v]), i + v
    if major == 3:
        return str(bytes(b[i:i + v]), "utf-8"), i + v
    if major == 4:
        out = []
        for _ in range(v):
            x, i = _item(b, i)
            out.append(x)
        return out, i
    if major == 5:
        out = {}
        for _ in range(v):
            k, i = _item(b, i)
            x, i = _item(b, i)
            out[k] = x
        return out, i
    if major == 6:
        x, i = _item(b, i)
        return ("tag", v, x), i
    raise ValueError("unsupported CBOR")


def kinds(entries):
    """[(seq, kind, body)] of walk()'s output."""
    out = []
    for seq, b in entries:
        m = loads(b)
        out.append((seq, m[7], m[8]))
    return out


def make_image(path, readings=40, blocks=512, sign=False):
    """Run the real Log on a file-backed littlefs image (what a virtual board's flash
    holds): readings, a time set, checkpoints with and without a nonce, an ack.
    sign: the board's sign_entries, or None for the firmware default.
    Prints one line the host test parses: "@@IMAGE last_seq head_hex"."""
    import binascii
    import vfs

    from hashtrail import blockdev_file

    bd = blockdev_file.FileBlock(path, 4096, blocks)
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/img")
    cfg = {"log": {"checkpoint_every": 16}}
    if sign is not None:
        cfg["log"]["sign_entries"] = sign
    log = devlog.Log("/img/ht", "unix", "0.1.0", StepClock(), cfg, "power_on")
    for i in range(readings):
        log.reading([("temp", "Cel", 4.0 + i / 8), ("vbat", "V", 3.7)])
        if i == 5:
            log.set_time(1700000000)
    log.checkpoint(b"host-nonce-1")
    log.ack(log.last_seq - 3)
    log.close()
    vfs.umount("/img")
    bd.close()
    print("@@IMAGE %d %s" % (log.last_seq, binascii.hexlify(log.head).decode()))


# ---- a keyless attacker with the flash (tests/firmware/test_bootcheck.py) ----------
# Reads the segment files of a powered-off device's log as plain files, lets a test
# change records, and writes them back with every CRC recomputed and (relink=True)
# every entry's prev set to the hash of the entry before it: everything an attacker
# can redo without the device key.


def flash_records(root):
    """[(segment path, [[magic, flags, seq, body (bytearray), sig or None], ...])]."""
    import struct

    d = root + "/log"
    out = []
    for name in sorted(os.listdir(d)):
        if not name.endswith(".seg"):
            continue
        with open(d + "/" + name, "rb") as f:
            raw = f.read()
        recs = []
        off = 0
        while off + 12 <= len(raw):
            blen = struct.unpack_from("<H", raw, off + 6)[0]
            o = off + 8 + blen
            sig = None
            if raw[off + 1] & 1:
                sig = bytes(raw[o:o + 64])
                o += 64
            recs.append([raw[off], raw[off + 1], struct.unpack_from("<I", raw, off + 2)[0],
                         bytearray(raw[off + 8:off + 8 + blen]), sig])
            off = o + 4
        out.append((d + "/" + name, recs))
    return out


def prev_offset(body):
    """Offset of the 32 prev bytes in entry bytes: map head, keys 0..4 with their
    values, key 5 and its bstr(32) head (decoded item by item, not by the device's code)."""
    i = 1
    for _ in range(5):
        _, i = _item(memoryview(body), i)  # key
        _, i = _item(memoryview(body), i)  # value
    _, i = _item(memoryview(body), i)  # key 5
    if body[i] != 0x58 or body[i + 1] != 32:
        raise ValueError("prev is not a bstr(32)")
    return i + 2


def write_records(segs, relink=True):
    """Write segments back: CRCs recomputed, and with relink every entry's prev set to
    the hash of the entry before it (consecutive seqs), in log order."""
    import hashlib
    import struct
    from binascii import crc32

    prev_seq = None
    prev_h = None
    for path, recs in segs:
        out = bytearray()
        for magic, flags, seq, body, sig in recs:
            if magic == logstore.ENTRY:
                if relink and prev_seq is not None and seq == prev_seq + 1:
                    p = prev_offset(body)
                    body[p:p + 32] = prev_h
                prev_seq = seq
                prev_h = hashlib.sha256(body).digest()
            flags = (flags | 1) if sig is not None else (flags & ~1)
            rec = bytearray(struct.pack("<BBIH", magic, flags, seq, len(body)))
            rec += body
            if sig is not None:
                rec += sig
            rec += struct.pack("<I", crc32(rec))
            out += rec
        with open(path, "wb") as f:
            f.write(out)


def entry_record(segs, seq):
    """The [magic, flags, seq, body, sig] list of entry seq in flash_records()' output."""
    for _, recs in segs:
        for r in recs:
            if r[0] == logstore.ENTRY and r[2] == seq:
                return r
    raise KeyError(seq)


def replace_bytes(body, old, new):
    """Replace the first occurrence of old in body (same length), in place."""
    n = len(old)
    for i in range(len(body) - n + 1):
        if body[i:i + n] == old:
            body[i:i + n] = new
            return
    raise ValueError("bytes not found")


def read_file(path):
    """The bytes of the file at `path` (the update tests' flash files)."""
    with open(path, "rb") as f:
        return f.read()


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False
