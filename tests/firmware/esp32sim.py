# A simulated `esp32` module for the unix port: tests only, never shipped. It gives the
# part of esp32.Partition that the full-image update uses (firmware/lib/hashtrail/
# board_ota.py), with the same names, arguments and return values as MicroPython's
# ports/esp32/esp32_partition.c, over two OTA partitions backed by files, and ESP-IDF's
# bootloader with app rollback enabled (MicroPython's boards/sdkconfig.base).
#
#   install(prefix, size, factory)  ota_0 holds `factory` and runs, ota_1 is erased;
#                                   sys.modules["esp32"] is this module from then on
#   boot() -> label                 a reset: the bootloader picks what runs (below)
#   version() -> str                the firmware version the running image carries (its
#                                   app description's version field: tests/host/appimg.py)
#   read(label, n) -> bytes         a partition's first n bytes
#   POWER                           a ramblock.RamBlock or None: partition erases, writes
#                                   and otadata writes count as its flash operations and
#                                   fail at its power cut like littlefs's
#   SET_BOOT                        one (label, SHA-256 of the partition's first WATCH
#                                   bytes) per set_boot() that took effect
#
# Flash: NOR. An erase (ioctl 6, or the simple 3-argument writeblocks, which erases the
# range first as the real one does) sets 4096-byte blocks to 0xFF; a write ANDs its
# bytes into what is there (it can only clear bits), so a write over unerased flash
# leaves a mix, as on a chip. A power cut at a write programs its first half (with the
# RamBlock's `half`) or nothing, at an erase erases the first half of the block or
# nothing; every later operation fails with OSError(EIO), as esp32.Partition raises
# flash errors (check_esp_err), until the test reboots.
#
# otadata: per OTA slot a sequence number and an image state (ESP-IDF's
# esp_ota_img_states_t). It is written atomically per operation: ESP-IDF keeps two
# copies with CRCs and a cut leaves the previous one valid.
#   set_boot(): refuses an image whose header is not an app image (ESP-IDF verifies the
#     whole image there; this checks magic 0xE9 and the app description's magic only),
#     else that slot gets the highest sequence number and state NEW.
#   boot(): the slot with the highest sequence number whose state is not INVALID or
#     ABORTED runs; NEW becomes PENDING_VERIFY and runs; PENDING_VERIFY (its first boot
#     ended without mark_app_valid_cancel_rollback) becomes ABORTED and the next slot is
#     tried: the old image comes back.
#   mark_app_valid_cancel_rollback(): the running slot, when PENDING_VERIFY, becomes VALID.
import hashlib
import struct
import sys

NEW = 0
PENDING_VERIFY = 1
VALID = 2
INVALID = 3
ABORTED = 4
UNDEFINED = -1
_EIO = 5
_ENOENT = 2
_VALIDATE_FAILED = -0x1503  # ESP_ERR_OTA_VALIDATE_FAILED as check_esp_err raises it
_NATIVE = 4096
_LABELS = ("ota_0", "ota_1")
_FF = b"\xff" * 256
_TMP = bytearray(256)
_TMPV = memoryview(_TMP)

POWER = None
SET_BOOT = []
WATCH = 0
_prefix = None
_size = 0
_running = 0


def _path(i):
    return "%s.%s.bin" % (_prefix, _LABELS[i])


def _op():
    return POWER is not None and POWER._op()


def _half():
    return POWER.half and POWER.ops == POWER.cut_at + 1


def _otadata():
    with open(_prefix + ".otadata", "rb") as f:
        return list(struct.unpack("<iiii", f.read()))


def _put_otadata(s):
    if _op():
        raise OSError(_EIO)
    with open(_prefix + ".otadata", "wb") as f:
        f.write(struct.pack("<iiii", *s))


def install(prefix, size, factory):
    global _prefix, _size, _running, POWER, SET_BOOT
    _prefix = prefix
    _size = size
    POWER = None
    SET_BOOT = []
    ff = b"\xff" * _NATIVE
    for i in range(2):
        with open(_path(i), "wb") as f:
            for _ in range(size // _NATIVE):
                f.write(ff)
    with open(_path(0), "r+b") as f:
        f.write(factory)
    with open(prefix + ".otadata", "wb") as f:
        f.write(struct.pack("<iiii", 1, VALID, 0, UNDEFINED))
    _running = 0
    sys.modules["esp32"] = sys.modules[__name__]


def boot():
    global _running
    s = _otadata()
    order = (0, 1) if s[0] >= s[2] else (1, 0)
    for i in order:
        seq, st = s[2 * i], s[2 * i + 1]
        if seq <= 0 or st in (INVALID, ABORTED):
            continue
        if st == PENDING_VERIFY:
            s[2 * i + 1] = ABORTED
            _put_otadata(s)
            continue
        if st == NEW:
            s[2 * i + 1] = PENDING_VERIFY
            _put_otadata(s)
        _running = i
        return _LABELS[i]
    raise OSError(_ENOENT)  # no bootable image: a bricked board


def state(label):
    s = _otadata()
    return s[2 * _LABELS.index(label) + 1]


def read(label, n):
    with open(_path(_LABELS.index(label)), "rb") as f:
        return f.read(n)


def version():
    b = read(_LABELS[_running], 80)
    return str(bytes(b[48:80]).split(b"\x00")[0], "utf-8")


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=_NATIVE):
        if id == Partition.RUNNING:
            i = _running
        elif id == Partition.BOOT:
            s = _otadata()
            i = 0 if s[0] >= s[2] else 1
        elif id in _LABELS:
            i = _LABELS.index(id)
        else:
            raise ValueError
        self.i = i
        self.bs = block_size

    @staticmethod
    def find(type=0, subtype=0xFF, label=None, block_size=_NATIVE):
        return [Partition(n, block_size) for n in _LABELS if label in (None, n)] \
            if type == Partition.TYPE_APP else []

    def info(self):
        return (Partition.TYPE_APP, 0x10 + self.i, 0x10000 + self.i * _size, _size,
                _LABELS[self.i], False)

    def get_next_update(self):
        return Partition(_LABELS[1 - self.i])

    def readblocks(self, block, buf, offset=0):
        a = block * self.bs + offset
        if a + len(buf) > _size:
            raise OSError(22)
        with open(_path(self.i), "rb") as f:
            f.seek(a)
            f.readinto(buf)

    # Erase and program allocate nothing: the simulator shares the app's heap in the
    # budget test (test_update_image_budget.py).
    def _erase(self, a, n):
        cut = _op()
        if cut and not _half():
            raise OSError(_EIO)
        with open(_path(self.i), "r+b") as f:
            f.seek(a)
            for _ in range((n // 2 if cut else n) // len(_FF)):
                f.write(_FF)
        if cut:
            raise OSError(_EIO)

    def _program(self, a, buf):
        n = len(buf)
        if a + n > _size:
            raise OSError(22)
        cut = _op()
        if cut and not _half():
            raise OSError(_EIO)
        if cut:
            n //= 2
        with open(_path(self.i), "r+b") as f:
            j = 0
            while j < n:  # a page at a time through _TMP
                k = min(n - j, len(_TMP))
                old = _TMPV[:k]
                f.seek(a + j)
                f.readinto(old)
                for x in range(k):
                    old[x] &= buf[j + x]
                f.seek(a + j)
                f.write(old)
                j += k
        if cut:
            raise OSError(_EIO)

    def writeblocks(self, block, buf, offset=None):
        a = block * self.bs
        if offset is None:  # the simple protocol: erase the blocks, then write
            if self.bs < _NATIVE:
                raise OSError(22)  # not modelled: the update uses 4096-byte blocks
            for b in range(a, a + len(buf), _NATIVE):
                self._erase(b, _NATIVE)
        else:
            a += offset
        self._program(a, buf)

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):
            return 0
        if cmd == 4:
            return _size // self.bs
        if cmd == 5:
            return self.bs
        if cmd == 6:
            if self.bs != _NATIVE:
                return -22
            self._erase(arg * _NATIVE, _NATIVE)
            return 0
        return None

    def set_boot(self):
        head = read(_LABELS[self.i], 36)
        if head[0] != 0xE9 or struct.unpack_from("<I", head, 32)[0] != 0xABCD5432:
            raise OSError(_VALIDATE_FAILED)
        s = _otadata()
        s[2 * self.i] = max(s[0], s[2]) + 1
        s[2 * self.i + 1] = NEW
        _put_otadata(s)
        SET_BOOT.append((_LABELS[self.i],
                         hashlib.sha256(read(_LABELS[self.i], WATCH)).digest()
                         if WATCH else None))

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        s = _otadata()
        if s[2 * _running + 1] == PENDING_VERIFY:
            s[2 * _running + 1] = VALID
            _put_otadata(s)
