# A firmware update received by the running app at the board's heap budget (issue 16).
# The switch, the finish and power cuts: test_update.py (a larger heap for the sweep).
#
# - test_update_while_logging_at_board_budget: the real app.App and its main loop at the
#   esp32 heap budget (like test_app_budget.py), a scripted host on its console sending
#   the real firmware package (compiled by the release code, ~80 KB) in UPDATE DATA
#   lines between readings, then COMMIT; the heap is sampled after gc.collect() at every
#   reply ("@@UPDHEAP min_free=").
import gc
import io
import os
import struct
import sys
from binascii import crc32, hexlify

import dtest
import vfs
from hashtrail import fwboot

# The harness (this module compiled from source, its host, the block device and the
# mount) shares the VM's heap: the heap is the esp32 budget plus the harness, measured
# before the firmware's app module is imported, and the test checks that what the
# firmware got was within the budget. The harness measured 18,112 B. (Until this
# version app.py was imported before the measurement, so its ~5.9 KB of code counted as
# harness and the firmware ran ~7 KB below the budget, failing at the edge: a 257-byte
# MemoryError in 1 of 2 runs once the package grew with MQTT over TLS.)
HEAP = 119808  # 102400 + 17408: the firmware gets 101,696 B
_BUDGET = 102400
TIMEOUT = 600
NEEDS = ("app_board", "update_packages")
_BS = 4096
_BLOCKS = 256
_MIN_FREE = 4 * 1024  # after gc.collect(), at the worst reply
_CHUNK = 86  # package bytes per UPDATE DATA line (the host's UPDATE_CHUNK)
_OLD = {"app.mpy": b"old app " * 40, "cbor.mpy": b"old cbor " * 30}


class _Machine:
    # The board's `machine.reset()`, as the virtual board's ROM gives it (_vmachine.py):
    # the VM ends, the next boot starts from the flash.
    @staticmethod
    def reset():
        raise SystemExit


def _req(rid, cmd, args=b""):
    # hexlify: the harness shares the app's heap, so a request line costs one buffer,
    # not a list of 98 two-character strings.
    p = bytes((1, rid, cmd)) + args
    p += struct.pack("<I", crc32(p))
    return b"@HT" + hexlify(p) + b"\n"


class Host(io.IOBase):
    """The host end of the console: BEGIN, DATA lines read from the package file one at
    a time, COMMIT; each line goes out once the reply to the one before arrived."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.f.seek(0, 2)
        self.total = self.f.tell()
        self.buf = bytearray(_CHUNK)
        self.off = 0
        self.line = _req(1, 0x08, struct.pack("<BI", 0, self.total))
        self.pos = 0
        self.min_free = 1 << 30
        self.replies = 0
        self.committed = False
        self.hold = False  # the next line is not readable at once: the loop samples

    def measure(self):
        gc.collect()
        f = gc.mem_free()
        if f < self.min_free:
            self.min_free = f

    def ioctl(self, req, arg):
        if req == 10:
            return -1
        if req != 3:
            return 0
        return arg & 1 if self.pos < len(self.line) else 0

    def readinto(self, buf):
        if self.hold:  # a UART delivers the next line later: the app loops meanwhile
            self.hold = False
            return 0
        if self.pos >= len(self.line):
            return 0
        buf[0] = self.line[self.pos]
        self.pos += 1
        return 1

    def write(self, b):
        n = struct.unpack_from("<H", b, 5)[0]
        dtest.eq(struct.unpack_from("<I", b, 8 + n)[0], crc32(b[0:8 + n]), "frame CRC")
        if b[3] == 0xFF:
            dtest.fail("device error %d: %s" % (b[8], bytes(b[9:8 + n])))
        dtest.eq(b[3], 0x88, "UPDATE reply")
        op, nxt = struct.unpack_from("<BI", b, 8)
        self.replies += 1
        self.hold = True
        self.measure()
        if op == 2:
            self.committed = True
            self.line = b""
            return len(b)
        dtest.eq(nxt, self.off, "device offset")
        if self.off >= self.total:
            self.line = _req(3, 0x08, struct.pack("<BI", 2, 0))
        else:
            self.f.seek(self.off)
            k = self.f.readinto(self.buf)
            self.line = _req(2, 0x08, struct.pack("<BI", 1, self.off)
                             + bytes(memoryview(self.buf)[:k]))
            self.off += k
        self.pos = 0
        return len(b)


class _FileBlock:
    """littlefs on a host file, allocation-free after __init__ (test_app_budget.py)."""

    def __init__(self, path):
        f = open(path, "w+b")
        self.f = f
        self._ff = b"\xff" * 256
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


def _put(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _get(path):
    with open(path, "rb") as f:
        return f.read()


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _layout(base):
    """A board's flash before the update: the old firmware and the pinned key."""
    for d in ("/lib", "/lib/hashtrail", "/ht"):
        os.mkdir(base + d)
    for n, data in _OLD.items():
        _put(base + "/lib/hashtrail/" + n, data)
    _put(base + "/ht/release_keys", _get(dtest.data("update_pub.bin")))


def _no_errors(what, e):
    raise AssertionError("the app hit an error (%s): %s: %s" % (what, type(e).__name__, e))


def test_update_while_logging_at_board_budget():
    os.chdir(dtest.DATA_DIR)
    bd = _FileBlock("upd.img")
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/fl")
    _layout("/fl")
    sys.modules["machine"] = _Machine
    host = Host(dtest.data("update_real.htu"))
    ready = open("/dev/zero", "rb")
    gc.collect()
    harness = gc.mem_alloc()
    dtest.true(HEAP - harness <= _BUDGET, "the firmware got %d bytes, more than the "
               "budget" % (HEAP - harness))
    from hashtrail import app  # firmware: its code counts against the budget

    app._log_error = _no_errors
    a = app.App(root="/fl/ht", cfg_path="board.json", inp=host, out=host)
    host.measure()
    booted = host.min_free
    # The app polls a real descriptor that is always ready (/dev/zero, opened above)
    # and reads the console from `host`: polling an io.IOBase sleeps 1 ms per call on
    # the unix port, 200 ms per request line, which no board's UART does.
    try:
        a.run(poll_src=ready)
        dtest.fail("the app did not reset after COMMIT")
    except SystemExit:
        pass
    ready.close()
    dtest.true(host.committed, "COMMIT answered")
    dtest.true(a.samples > 100, "the app kept sampling during the transfer (%d)" % a.samples)
    dtest.false("hashtrail.update" in sys.modules, "update.py dropped after COMMIT")
    dtest.true(_exists("/fl/ht/update"), "marker committed")
    staged = sorted(os.listdir("/fl/lib/hashtrail.new"))
    dtest.true("app.mpy" in staged and "p256.mpy" in staged, "staged %r" % staged)
    counter, old, new, _h = fwboot.parse_marker(_get("/fl/ht/update"))
    dtest.eq((counter, old, new), (3, "0.1.0", "0.2.0"))
    print("@@UPDHEAP min_free=%d booted_free=%d harness=%d replies=%d samples=%d" % (
        host.min_free, booted, harness, host.replies, a.samples))
    vfs.umount("/fl")
    dtest.true(host.min_free >= _MIN_FREE, "headroom %d < %d" % (host.min_free, _MIN_FREE))


