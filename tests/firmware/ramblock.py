# A littlefs block device in RAM that can lose power after N flash operations.
#
# Flash model: NOR flash as littlefs sees it through MicroPython's extended block
# protocol. A "flash operation" is one program (writeblocks call) or one erase
# (ioctl 6). cut_at=N lets operations 0..N-1 happen and fails operation N: either not
# at all (half=False) or with only the first half of its bytes programmed (half=True),
# then every later operation fails too, like a board without power. The failure is a
# preallocated exception (littlefs calls the block device with the heap locked), or,
# with errno=True, the error code -EIO returned as a flash driver returns it.
#
# Why errno: MicroPython calls writeblocks/ioctl from inside littlefs's C code without
# catching (extmod/vfs_blockdev.c, mp_vfs_blockdev_call_rw), so a raised exception
# unwinds (nlr longjmp) straight through littlefs, which never finishes the operation:
# a file being closed is never taken off littlefs's list of open files, and once the
# garbage collector frees it, a later operation walking that list reads freed memory.
# The unix port then segfaulted in about 1 run of 3 of the update sweeps (plain and
# half-programmed alike). An error code lets littlefs unwind itself (lfs_file_close
# unlists the file even when its sync fails); the error reaches Python as OSError(EIO).
# A real board's flash driver (esp32.Partition) returns codes, never raises. And a
# device that has lost its power fails with EIO from the reboot on, whatever its mode:
# its file objects, finalized later by the collector, must not raise through littlefs.
#
# Counters (ops, prog_calls, prog_bytes, erases) measure flash wear for docs/STORAGE.md.
from micropython import const

_IOCTL_INIT = const(1)
_IOCTL_DEINIT = const(2)
_IOCTL_SYNC = const(3)
_IOCTL_COUNT = const(4)
_IOCTL_SIZE = const(5)
_IOCTL_ERASE = const(6)
_EIO = const(-5)


class PowerCut(Exception):
    pass


POWER_CUT = PowerCut("power cut")


class RamBlock:
    """The flash is an io.BytesIO: seek + readinto/write copy without allocating,
    which matters because littlefs may call in with the heap locked (a file closed by
    its finalizer during gc, for one)."""

    def __init__(self, block_size, blocks, mem=None):
        import io

        self.bs = block_size
        self.n = blocks
        self._ff = b"\xff" * block_size
        self._one = bytearray(1)
        self.mem = io.BytesIO(b"\xff" * (block_size * blocks)) if mem is None else mem
        self.cut_at = -1
        self.half = False
        self.errno = False
        self.exc = POWER_CUT
        self.reset_counters()

    def arm(self, cut_at, half=False, errno=False):
        """Lose power at flash operation cut_at (counted from the last reset_counters),
        failing with -EIO (errno) or by raising. A fresh exception per run: a
        preallocated one also collects every traceback."""
        self.exc = PowerCut("power cut at flash op %d" % cut_at)
        self.cut_at = cut_at
        self.half = half
        self.errno = errno

    def image(self):
        return self.mem.getvalue()

    def load(self, image):
        self.mem.seek(0)
        self.mem.write(image)

    def reset_counters(self):
        self.ops = 0
        self.prog_calls = 0
        self.prog_bytes = 0
        self.erases = 0

    def _op(self):
        cut = self.cut_at >= 0 and self.ops >= self.cut_at
        self.ops += 1
        return cut

    def readblocks(self, block, buf, off=0):
        self.mem.seek(block * self.bs + off)
        self.mem.readinto(buf)

    def writeblocks(self, block, buf, off=0):
        m = self.mem
        m.seek(block * self.bs + off)
        if self._op():
            if self.half and self.ops == self.cut_at + 1:
                one = self._one
                for i in range(len(buf) // 2):
                    one[0] = buf[i]
                    m.write(one)
            if self.errno:
                return _EIO
            raise self.exc
        m.write(buf)
        self.prog_calls += 1
        self.prog_bytes += len(buf)

    def ioctl(self, op, arg):
        if op == _IOCTL_COUNT:
            return self.n
        if op == _IOCTL_SIZE:
            return self.bs
        if op == _IOCTL_ERASE:
            if self._op():
                if self.errno:
                    return _EIO
                raise self.exc
            self.mem.seek(arg * self.bs)
            self.mem.write(self._ff)
            self.erases += 1
            return 0
        return 0

MOUNT = "/flash"


def mount(bd, mkfs=False):
    """Mount bd at MOUNT (formatting it first if asked); returns the mount point."""
    import vfs

    if mkfs:
        vfs.VfsLfs2.mkfs(bd)
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(bd), MOUNT)
    return MOUNT


def reboot(bd):
    """Power back on: mount the flash contents afresh through a NEW block device over
    the same memory, and return it. The old device stays dead (every operation past
    its cut fails), so file objects of the old filesystem that the garbage collector
    finalizes later cannot write to the rebooted flash: their RAM died with the power."""
    nbd = RamBlock(bd.bs, bd.n, bd.mem)
    if bd.cut_at < 0:
        bd.arm(0)  # a clean reboot: the old objects are just as dead
        bd.reset_counters()
    bd.errno = True  # its later operations (finalizers of its files) fail with EIO
    mount(nbd)
    return nbd


def chain_body(prev, seq, size):
    """A test entry body that forms a hash chain: prev(32) | seq(4) | filler."""
    import hashlib
    import struct

    b = bytearray(36 + size)
    b[0:32] = prev
    struct.pack_into("<I", b, 32, seq)
    for i in range(size):
        b[36 + i] = (seq * 7 + i) & 0xFF
    return bytes(b), hashlib.sha256(b).digest()
