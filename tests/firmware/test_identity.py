# Device identity on a real littlefs (vfs.VfsLfs2) over a RAM block device.
import os
import vfs

import dtest
from hashtrail import identity, keyfile, p256


class RamBlocks:
    """A block device in RAM, the interface littlefs drives (extended protocol)."""

    def __init__(self, count=32, size=512):
        self.size = size
        self.data = bytearray(count * size)
        self.count = count

    def readblocks(self, block, buf, offset=0):
        start = block * self.size + offset
        buf[:] = self.data[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            offset = 0
        start = block * self.size + offset
        self.data[start:start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return self.count
        if op == 5:
            return self.size
        if op == 6:  # erase
            return 0
        return None


_BD = []


def _mount(bd=None, mkfs=True):
    if bd is None:  # one RAM flash per test process, reformatted: the heap is 100 KB
        if not _BD:
            _BD.append(RamBlocks())
        bd = _BD[0]
    if mkfs:
        vfs.VfsLfs2.mkfs(bd)
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(bd), "/flash")
    return bd


ROOT = "/flash/ht"


def test_first_boot_creates_then_reloads_same_identity():
    bd = _mount()
    a = keyfile.load_or_create(ROOT)
    dtest.true(a.created)
    dtest.eq(len(a.pub), 65)
    dtest.eq(a.pub[0], 4)
    dtest.eq(len(a.device_id), 16)
    dtest.eq(len(a.device_id_hex), 32)
    dtest.eq(os.stat(ROOT + "/key")[6], 105)
    # next boot: remount the same flash, same identity, not re-created
    vfs.umount("/flash")
    _mount(bd, mkfs=False)
    b = keyfile.load_or_create(ROOT)
    dtest.false(b.created)
    dtest.eq(b.pub, a.pub)
    dtest.eq(b.device_id_hex, a.device_id_hex)
    digest = b"\x5a" * 32
    dtest.true(p256.verify(a.pub, digest, b.sign(digest)))
    # the private scalar shows up in no public attribute or repr
    secret = "%x" % b._d
    dtest.false(secret in repr(b) or secret in str(b))
    for name in dir(b):
        if not name.startswith("_"):
            v = getattr(b, name)
            dtest.false(v == b._d, name)
            dtest.false(isinstance(v, (bytes, str)) and secret.encode() in
                        (v if isinstance(v, bytes) else v.encode()), name)


def _corrupt(pos, value=None):
    _mount()
    keyfile.load_or_create(ROOT)
    with open(ROOT + "/key", "rb") as f:
        raw = bytearray(f.read())
    if value is None:
        raw = raw[:pos]
    else:
        raw[pos] ^= value
    with open(ROOT + "/key", "wb") as f:
        f.write(raw)


def test_corrupted_key_file_raises_never_regenerates():
    for pos, flip in ((0, 1), (10, 0x80), (50, 1), (104, 0xFF), (60, None), (0, None)):
        _corrupt(pos, flip)
        dtest.raises(identity.IdentityError, keyfile.load_or_create, ROOT)
        # and nothing was overwritten by a fresh key
        dtest.raises(identity.IdentityError, keyfile.load_or_create, ROOT)


def test_key_file_with_wrong_public_key_raises():
    _mount()
    os.mkdir(ROOT)
    d = 12345
    wrong = p256.public_key(d + 1)
    with open(ROOT + "/key", "wb") as f:
        f.write(keyfile.encode_key(d, wrong))
    e = dtest.raises(identity.IdentityError, keyfile.load_or_create, ROOT)
    dtest.true("match" in str(e))


def test_missing_key_with_existing_log_raises():
    _mount()
    os.mkdir(ROOT)
    os.mkdir(ROOT + "/log")
    with open(ROOT + "/log/0000000000.seg", "wb") as f:
        f.write(b"\xa7")
    dtest.raises(identity.IdentityError, keyfile.load_or_create, ROOT)
    dtest.raises(OSError, os.stat, ROOT + "/key")


def test_empty_log_dir_still_allows_first_boot():
    _mount()
    os.mkdir(ROOT)
    os.mkdir(ROOT + "/log")
    dtest.true(keyfile.load_or_create(ROOT).created)
