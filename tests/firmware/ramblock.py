# A littlefs block device in RAM that can lose power after N flash operations.
#
# Flash model: NOR flash as littlefs sees it through MicroPython's extended block
# protocol. A "flash operation" is one program (writeblocks call) or one erase
# (ioctl 6). cut_at=N lets operations 0..N-1 happen and fails operation N: either not
# at all (half=False) or with only the first half of its bytes programmed (half=True),
# then every later operation fails too, like a board without power. The failure is a
# preallocated exception: littlefs calls the block device with the heap locked.
#
# Counters (ops, prog_calls, prog_bytes, erases) measure flash wear for docs/STORAGE.md.
from micropython import const

_IOCTL_INIT = const(1)
_IOCTL_DEINIT = const(2)
_IOCTL_SYNC = const(3)
_IOCTL_COUNT = const(4)
_IOCTL_SIZE = const(5)
_IOCTL_ERASE = const(6)


class PowerCut(Exception):
    pass


POWER_CUT = PowerCut("power cut")


class RamBlock:
    def __init__(self, block_size, blocks, data=None):
        self.bs = block_size
        self.n = blocks
        self.data = bytearray(block_size * blocks) if data is None else data
        self.cut_at = -1
        self.half = False
        self._ff = b"\xff" * block_size
        self.reset_counters()

    def reset_counters(self):
        self.ops = 0
        self.prog_calls = 0
        self.prog_bytes = 0
        self.erases = 0

    def _op(self):
        if self.cut_at >= 0 and self.ops >= self.cut_at:
            self.ops += 1
            return True
        self.ops += 1
        return False

    def readblocks(self, block, buf, off=0):
        a = block * self.bs + off
        buf[:] = memoryview(self.data)[a:a + len(buf)]

    def writeblocks(self, block, buf, off=0):
        a = block * self.bs + off
        n = len(buf)
        if self._op():
            if self.half and self.ops == self.cut_at + 1:
                h = n // 2
                self.data[a:a + h] = memoryview(buf)[:h]
            raise POWER_CUT
        self.data[a:a + n] = buf
        self.prog_calls += 1
        self.prog_bytes += n

    def ioctl(self, op, arg):
        if op == _IOCTL_COUNT:
            return self.n
        if op == _IOCTL_SIZE:
            return self.bs
        if op == _IOCTL_ERASE:
            if self._op():
                raise POWER_CUT
            a = arg * self.bs
            self.data[a:a + self.bs] = self._ff
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
    """Power back on: drop the old filesystem object (its RAM state dies with the
    power) and mount the flash contents afresh."""
    bd.cut_at = -1
    return mount(bd)


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
