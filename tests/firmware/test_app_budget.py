# The whole device application inside the esp32 heap budget (100 KB), from .mpy.
#
# Runs the real app.App (boardcfg, board_unix layer, devlog on littlefs, link) and its
# real main loop, App.run(), with the console replaced by a scripted host: an
# io.IOBase stream that select.poll() polls, that the app reads request lines from
# byte by byte, and that receives and checks every frame the app writes. Two boots on
# the same flash: the first makes the key, the second recovers the log. On each boot
# the app samples readings every loop pass (with automatic checkpoints), and the host
# sends HELLO, SET_TIME, CHECKPOINT with a nonce, RECORDS streamed chunk by chunk with
# credit, and ACK (which prunes segments), then stops the app the way a user does:
# KeyboardInterrupt (Ctrl-C) out of the loop, the log closed in `finally`. Each boot
# is its own test, so its own VM with a fresh heap, as on a board: the second boot
# starts from a flash image a first boot made (vectors_app.make_app_image).
#
# The heap is measured at every host event after gc.collect(): the smallest free heap
# seen is printed as "@@APPHEAP" (tools/bench_heap.py reads it and bisects the smallest
# heap at which each boot's run still succeeds, which also covers the transient peaks
# inside signing that a sample after gc.collect() cannot see).
#
# Conservative on purpose: this test module, its host script and a Python block device
# live in the same heap, and the unix port is 64-bit (8-byte object words, about
# 1.5-2x the ESP32's 4-byte words for the same objects).
import gc
import io
import os
import struct
import sys
from binascii import crc32

import dtest
import vfs

BOARD = "esp32"
TIMEOUT = 300
NEEDS = ("app_board", "app_image")
_MIN_FREE = 16 * 1024  # required headroom at the worst sampled point
_READINGS = 300  # readings per boot: more than one segment (seg_records 256), so ACK prunes
_BS = 4096
_BLOCKS = 256  # 1 MB of flash
_STALL_POLLS = 2000  # loop passes without any frame while a reply is due: the app is stuck


class _FileBlock:
    """littlefs block device on one host file, allocation-free after __init__ (like a
    board's C partition object; littlefs may call it with the heap locked)."""

    def __init__(self, path):
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        self.f = f
        self._ff = b"\xff" * 256
        f.seek(0, 2)
        if f.tell() < _BS * _BLOCKS:
            for _ in range(_BS * _BLOCKS // 256):
                f.write(self._ff)
            f.flush()

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * _BS + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=None):
        self.f.seek(block * _BS + (off or 0))
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return _BLOCKS
        if op == 5:
            return _BS
        if op == 6:
            self.f.seek(arg * _BS)
            for _ in range(_BS // 256):
                self.f.write(self._ff)
            return 0
        return 0  # sync (3): the host file's OS cache is enough; fsync only costs time


def _req(rid, cmd, args=b""):
    p = bytes((1, rid, cmd)) + args
    p += struct.pack("<I", crc32(p))
    return b"@HT" + "".join("%02x" % c for c in p).encode() + b"\n"


class Host(io.IOBase):
    """The host end of the console. `steps` is a list of (request line or None,
    expected reply type); None means "let the app run `idle` loop passes". Raises
    KeyboardInterrupt once the script is done, as Ctrl-C does on a board."""

    def __init__(self, steps, idle):
        self.steps = steps
        self.idle = idle
        self.step = -1
        self.line = b""
        self.pos = 0
        self.waiting = None  # reply type awaited
        self.got = False  # ... and received
        self.polls = 0
        self.min_free = 1 << 30
        self.frames = 0
        self.records = 0
        self.entries = 0
        self.next_seq = None
        self.chunk_no = 0
        self.last_seq = None
        self.first_seq = None
        self.replies = []
        self._next()

    def measure(self):
        gc.collect()
        f = gc.mem_free()
        if f < self.min_free:
            self.min_free = f

    def _next(self):
        self.measure()
        self.step += 1
        if self.step >= len(self.steps):
            raise KeyboardInterrupt
        line, want = self.steps[self.step]
        if callable(line):
            line = line(self)
        self.polls = 0
        self.line = line or b""
        self.pos = 0
        self.waiting = want
        self.got = False

    # -- console: the app reads requests --------------------------------------------
    def ioctl(self, req, arg):
        if req == 10:  # MP_STREAM_GET_FILENO: no fd, so select.poll() uses POLL below
            return -1
        if req != 3:  # MP_STREAM_POLL
            return 0
        if self.pos < len(self.line):
            return arg & 1
        # The next step starts once the app has read the whole line and answered it
        # (or, for an idle step, after `idle` loop passes).
        if self.waiting is None:
            self.polls += 1
            if self.polls >= self.idle:
                self._next()
        elif self.got:
            self._next()
        else:
            self.polls += 1
            if self.polls > _STALL_POLLS:
                dtest.fail("no reply 0x%02x after %d loop passes" % (self.waiting, self.polls))
        return 0

    def readinto(self, buf):
        if self.pos >= len(self.line):
            return 0
        buf[0] = self.line[self.pos]
        self.pos += 1
        return 1

    # -- console: the app writes frames ------------------------------------------------
    def write(self, b):
        if b[0] != 0xA5 or b[1] != 0x5A or b[2] != 1:
            dtest.fail("bad sync/version")
        n = struct.unpack_from("<H", b, 5)[0]
        if b[7] != crc32(b[0:7]) & 0xFF or struct.unpack_from("<I", b, 8 + n)[0] != crc32(
                b[0:8 + n]):
            dtest.fail("bad frame check")
        self.frames += 1
        self.polls = 0
        t = b[3]
        if t == 0xFF:
            dtest.fail("device error %d: %s" % (b[8], bytes(b[9:8 + n])))
        if t == 0x82:
            self._chunk(b, n)
            self.measure()
            self.line = _req(b[4], 0x03, struct.pack("<H", 1))  # one more chunk of credit
            self.pos = 0
            return len(b)
        if t != self.waiting:
            dtest.fail("reply 0x%02x, expected 0x%02x" % (t, self.waiting))
        if t == 0x83:
            sent, nxt = struct.unpack_from("<II", b, 8)
            dtest.eq(sent, self.records, "END count")
            dtest.eq(nxt, self.next_seq, "END next seq")
            self.last_seq = nxt - 1
        elif t == 0x86:
            self.first_seq = struct.unpack_from("<I", b, 8)[0]
        self.replies.append(t)
        self.got = True
        return len(b)

    def _chunk(self, b, n):
        dtest.eq(struct.unpack_from("<H", b, 8)[0], self.chunk_no, "chunk number")
        self.chunk_no += 1
        pos = 10
        while pos < 8 + n:
            ln = struct.unpack_from("<H", b, pos + 6)[0]
            size = 8 + ln + (64 if b[pos + 1] & 1 else 0) + 4
            if struct.unpack_from("<I", b, pos + size - 4)[0] != crc32(b[pos:pos + size - 4]):
                dtest.fail("record CRC")
            if b[pos] == 0xA7:
                seq = struct.unpack_from("<I", b, pos + 2)[0]
                if self.next_seq is not None:
                    dtest.eq(seq, self.next_seq, "seq order")
                self.next_seq = seq + 1
                self.entries += 1
            self.records += 1
            pos += size
        dtest.eq(pos, 8 + n, "chunk holds whole records")


def _no_errors(what, e):
    # Raised from the app's own `except Exception` handler, so it leaves App.run().
    raise AssertionError("the app hit an error (%s): %s: %s" % (what, type(e).__name__, e))


# Loaded for the boot only (hashtrail.drop): their code must not stay resident.
_BOOT_ONLY = ("boardcfg", "logboot", "keyfile", "logscan", "bootcheck", "bootfind",
              "fwboot", "p256v")


def _boot(root, cfg_path, steps):
    """One boot of the real app, driven by a host script, stopped by Ctrl-C."""
    from hashtrail import app

    app._log_error = _no_errors  # the app survives errors by logging them: here, fail
    gc.collect()
    host = Host(steps, _READINGS)
    a = app.App(root=root, cfg_path=cfg_path, inp=host, out=host)
    import hashtrail

    for name in _BOOT_ONLY:  # dropped: neither in sys.modules nor bound in the package
        dtest.false("hashtrail." + name in sys.modules or hasattr(hashtrail, name),
                    "boot-only module %s still loaded after boot" % name)
    try:
        a.run(poll_src=host)
    except KeyboardInterrupt:
        pass
    dtest.true(host.step >= len(steps), "script not finished")
    dtest.true(host.chunk_no > 10, "a real stream (%d chunks)" % host.chunk_no)
    dtest.true(a.samples >= _READINGS - 2, "samples %d" % a.samples)
    return a.log, host


def _ack_streamed(host):
    return _req(5, 0x06, struct.pack("<I", host.last_seq))


def _mount(img, fresh):
    os.chdir(dtest.DATA_DIR)
    if fresh:
        try:
            os.remove(img)
        except OSError:
            pass
    bd = _FileBlock(img)
    if fresh:
        vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/fl")
    gc.collect()
    print("heap before boot: free %d, used %d" % (gc.mem_free(), gc.mem_alloc()))


def _first_boot(img):
    # First boot makes the key; the app samples, then the host's requests.
    _mount(img, True)
    log, h = _boot("/fl/ht", "board.json", [
        (None, None),  # the app samples _READINGS times (auto checkpoints among them)
        (_req(1, 0x01), 0x81),  # HELLO
        (_req(2, 0x05, struct.pack("<Q", 1700000000)), 0x85),  # SET_TIME
        (_req(3, 0x04, b"nonce-0123456789abcdef0123456789"), 0x84),  # CHECKPOINT: signs
        (_req(4, 0x02, struct.pack("<IH", 0, 1)), 0x83),  # RECORDS, credit per chunk
    ])
    dtest.true(h.last_seq > _READINGS, "entries streamed through seq %r" % h.last_seq)
    dtest.eq(h.entries, h.last_seq + 1, "every entry streamed once")
    vfs.umount("/fl")
    return h


def first_boot_image():
    """Not a test: vectors_app.make_app_image runs this (big heap) to make the flash
    image the second-boot test starts from, so each boot gets a fresh VM and heap, as
    a board's reboot does."""
    _first_boot("booted.img")


def _report(h):
    print("@@APPHEAP min_free=%d" % h.min_free)
    dtest.true(h.min_free >= _MIN_FREE, "headroom %d < %d bytes" % (h.min_free, _MIN_FREE))


def test_first_boot_at_board_budget():
    _report(_first_boot("first.img"))


def _copy(src_path, dst_path):
    # In its own function: the 4 KB copy buffer must not stay alive (as a local of the
    # test function) while the app runs; it is harness, not firmware.
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        buf = bytearray(4096)
        while True:
            n = src.readinto(buf)
            if not n:
                break
            dst.write(memoryview(buf)[:n])


def test_second_boot_at_board_budget():
    # A copy of a log made by a first boot: recovered from flash, streamed, ACKed.
    _copy(dtest.data("booted.img"), dtest.data("second.img"))
    _mount("second.img", False)
    log, h = _boot("/fl/ht", "board.json", [
        (None, None),
        (_req(1, 0x01), 0x81),
        (_req(3, 0x04, b"second-boot-nonce"), 0x84),
        (_req(4, 0x02, struct.pack("<IH", 0, 1)), 0x83),
        (_ack_streamed, 0x86),  # ACK: persists, prunes acknowledged segments
        (None, None),  # sampling goes on after the prune
    ])
    dtest.eq(h.entries, h.last_seq + 1, "every entry of both boots streamed once")
    dtest.true(h.last_seq > 2 * _READINGS, "the first boot's log was recovered")
    dtest.true(h.first_seq > 0, "ACK pruned the first segment (first held %r)" % h.first_seq)
    dtest.eq(log.first_seq, h.first_seq)
    dtest.true(log.last_seq > h.last_seq + _READINGS - 5, "sampling after the ACK")
    vfs.umount("/fl")
    _report(h)
