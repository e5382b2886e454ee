# Board layer for full-image firmware updates (docs/DEVICE.md "Full-image updates"): with
# board_esp32, the only module that imports `esp32`. Loaded by update.py when a signed
# manifest names an app image (key 5) and by fwboot.py at the boot after one, dropped
# after each: it costs no heap while the app logs. Not run on a real board yet: tested
# against a simulated esp32.Partition (tests/firmware/esp32sim.py).
#
#   Writer(size)     the next OTA partition, esp32.Partition(RUNNING).get_next_update();
#                    raises ValueError when the image does not fit it, OSError (ENOENT)
#                    when the board has no OTA partitions
#     .label         that partition's label ("ota_0", "ota_1"): the marker names it
#     .write(mv)     the image's next bytes, in order
#     .end()         after the last byte: write the last page
#     .sha256()      SHA-256 of the image bytes read back from the partition
#     .boot()        set_boot(): the bootloader starts it at the next reset, once, and
#                    goes back to the running image at the reset after unless the new one
#                    calls confirm() (ESP-IDF app rollback, on in MicroPython's builds)
#   running() -> label of the partition running now
#   confirm()  -> True, or False on a build without app rollback (nothing to confirm)
#   reset()          machine.reset(): a new image that fails its check is rolled back
#
# esp32.Partition, as ports/esp32/esp32_partition.c implements it: a partition from
# get_next_update() has 4096-byte blocks; ioctl(6, block) erases one (returns 0, or
# -EINVAL for another block size; flash errors raise OSError); writeblocks(block, buf,
# offset) with an offset is the extended protocol, which programs without erasing, so
# each block is erased here when the image's first byte in it arrives; readblocks(block,
# buf, offset) reads; info() is (type, subtype, address, size, label, encrypted).
#
# Flash and heap: bytes are gathered in one 256-byte page (a flash page, a multiple of
# the 16 bytes an encrypted partition writes at once, a divisor of 4096: a page never
# straddles two blocks) and written a page at a time; the last page is padded with 0xFF,
# which programs nothing. No 4 KB buffer: the app's heap near its budget may hold no
# 4 KB hole (update.py).
import esp32
from micropython import const

_BLOCK = const(4096)
_PAGE = const(256)
_IOCTL_ERASE = const(6)
_NO_ROLLBACK = const(-261)  # OSError of mark_app_valid_cancel_rollback without the feature


class Writer:
    def __init__(self, size):
        P = esp32.Partition
        self.p = P(P.RUNNING).get_next_update()
        info = self.p.info()
        self.label = info[4]
        if size > info[3]:
            raise ValueError("image of %d bytes does not fit partition %s (%d bytes)" % (
                size, self.label, info[3]))
        self.size = size
        self.buf = bytearray(_PAGE)
        self.n = 0  # bytes in buf
        self.addr = 0  # partition offset of buf[0]

    def write(self, mv):
        i = 0
        k = len(mv)
        buf = self.buf
        while i < k:
            m = min(_PAGE - self.n, k - i)
            buf[self.n:self.n + m] = mv[i:i + m]
            self.n += m
            i += m
            if self.n == _PAGE:
                self._page()

    def end(self):
        if self.n:
            for j in range(self.n, _PAGE):
                self.buf[j] = 0xFF
            self._page()

    def _page(self):
        blk = self.addr >> 12
        off = self.addr & (_BLOCK - 1)
        if not off:
            r = self.p.ioctl(_IOCTL_ERASE, blk)
            if r:
                raise OSError(-r)
        self.p.writeblocks(blk, self.buf, off)
        self.addr += _PAGE
        self.n = 0

    def sha256(self):
        import hashlib

        h = hashlib.sha256()
        buf = self.buf
        a = 0
        while a < self.size:
            self.p.readblocks(a >> 12, buf, a & (_BLOCK - 1))
            m = min(_PAGE, self.size - a)
            h.update(buf if m == _PAGE else memoryview(buf)[:m])
            a += m
        return h.digest()

    def boot(self):
        self.p.set_boot()


def running():
    P = esp32.Partition
    return P(P.RUNNING).info()[4]


def confirm():
    try:
        esp32.Partition.mark_app_valid_cancel_rollback()
    except OSError as e:
        if e.args and e.args[0] == _NO_ROLLBACK:
            return False
        raise
    return True


def reset():
    import machine

    machine.reset()
