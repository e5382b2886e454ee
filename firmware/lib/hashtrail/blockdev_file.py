# A littlefs block device backed by one host file: the virtual board's flash.
#
# The unix port of MicroPython has no flash; the virtual device keeps its littlefs
# image in a file on the host (the same bytes a real board's partition would hold, so
# littlefs-python on the host can read it). Extended block protocol as VfsLfs2 uses it:
# readblocks/writeblocks with a byte offset, ioctl 6 erases one block (writes 0xFF).
# littlefs may call these with the heap locked: nothing here allocates after __init__.
# Erased bytes are written from one _FF-byte buffer, not a block-sized one: this class
# shares the heap with the firmware in device tests (a board's flash driver is C), and a
# 4 KB buffer here took 4 KB of the board budget the app under test should have had
# (tests/firmware/test_app_mqtt_stall.py).
#
#   bd = FileBlock(path, block_size=4096, blocks=512)   # creates/extends the file
#   vfs.VfsLfs2.mkfs(bd); vfs.mount(vfs.VfsLfs2(bd), "/ht")
from micropython import const

_IOCTL_SYNC = const(3)
_IOCTL_COUNT = const(4)
_IOCTL_SIZE = const(5)
_IOCTL_ERASE = const(6)
_FF = const(256)  # bytes per erase write (divides every block size littlefs uses here)


class FileBlock:
    def __init__(self, path, block_size=4096, blocks=512):
        self.bs = block_size
        self.n = blocks
        self._ff = b"\xff" * _FF
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        f.seek(0, 2)
        size = f.tell()
        while size < block_size * blocks:
            f.write(self._ff)
            size += _FF
        f.flush()
        self.f = f
        self.prog_calls = 0
        self.prog_bytes = 0
        self.erases = 0

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.write(buf)
        self.prog_calls += 1
        self.prog_bytes += len(buf)

    def ioctl(self, op, arg):
        if op == _IOCTL_COUNT:
            return self.n
        if op == _IOCTL_SIZE:
            return self.bs
        if op == _IOCTL_ERASE:
            self.f.seek(arg * self.bs)
            for _ in range(self.bs // _FF):
                self.f.write(self._ff)
            self.erases += 1
            return 0
        if op == _IOCTL_SYNC:
            self.f.flush()
            return 0
        return 0

    def close(self):
        self.f.flush()
        self.f.close()
