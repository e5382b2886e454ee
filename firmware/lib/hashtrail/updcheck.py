# The manifest check of a firmware update (update.py; docs/FORMATS.md "Update package"):
# loaded once per transfer, when the manifest is complete, and dropped right after, so
# its code is not resident while the files stream in.
#
#   check(rx)   rx: update._Rx with the manifest received (its Sig_structure and manifest
#               hashes, the signature, the payload written to flash). Raises
#               update.Refused unless a pinned release key signed it, its counter is
#               above the stored one, its board is this device's; then writes the
#               marker draft /ht/update.tmp (counter, old and new version, manifest
#               SHA-256) that COMMIT renames into place. Sets rx.row and rx.left_files
#               for a package of files, rx.image (size) and rx.want for an app image.
import hashlib
import struct

from micropython import const

from hashtrail import update

_MAX_FILES = const(48)


def _keys():
    try:
        f = open(update.ROOT + "/release_keys", "rb")
    except OSError:
        raise update.Refused("no release key pinned on this device")
    k = f.read()
    f.close()
    if not k or len(k) % 65:
        raise update.Refused("pinned release keys are malformed")
    return k


def _counter():
    # fwboot.read_counter, repeated here so that the check does not load fwboot (its
    # heap is the peak of a transfer: this module, update's and p256.verify's).
    try:
        f = open(update.ROOT + "/fw_counter", "rb")
    except OSError:
        return 0
    b = f.read()
    f.close()
    if len(b) != 4:
        raise update.Refused("fw_counter is malformed")
    return struct.unpack("<I", b)[0]

def check(rx):
    sig = rx.sig
    rx.sig = None
    if sig[0] != 0x58 or sig[1] != 0x40:
        raise update.Refused("manifest signature must be 64 bytes")
    from hashtrail import p256

    digest = rx.sh.digest()
    rx.sh = None
    kid = bytes(memoryview(rx.pre)[8 + 8:8 + 24])
    keys = _keys()
    ok = False
    for j in range(0, len(keys), 65):
        pub = keys[j:j + 65]
        if hashlib.sha256(pub).digest()[:16] == kid and \
                p256.verify(pub, digest, memoryview(sig)[2:]):
            ok = True
            break
    if not ok:
        raise update.Refused("manifest is not signed by a pinned release key")
    mhash = rx.mh.digest()
    rx.mh = sig = keys = None
    # The payload: {0: 1, 1: version, 2: counter, 3: board, 4: [[path, size, sha]...]}
    pay = rx._read(0)
    mt, n, i = update._head(pay, 0)
    if mt != 5 or n != 5:
        raise update.Refused("manifest payload must be a map of 5")
    vals = []
    for k in range(4):
        key, i = update._item(pay, i, 0)
        if key != k:
            raise update.Refused("manifest payload keys must be 0..4")
        if k == 0 or k == 2:
            v, i = update._item(pay, i, 0)
        else:
            v, i = update._item(pay, i, 3)
            v = str(v, "utf-8")
        vals.append(v)
    if vals[0] != 1:
        raise update.Refused("manifest format %d not supported" % vals[0])
    version, counter, board = vals[1], vals[2], vals[3]
    if board != rx.board:
        raise update.Refused("package is for board %s, this device is %s" % (
            board, rx.board))
    floor = _counter()
    if counter <= floor:
        raise update.Refused("security counter %d is not above the installed %d "
                             "(rollback)" % (counter, floor))
    if len(version) > 32:
        raise update.Refused("version too long")
    key, i = update._item(pay, i, 0)
    if key == 5:  # a full firmware image: [size, SHA-256] (board_ota.py writes it)
        mt, n, i = update._head(pay, i)
        if mt != 4 or n != 2:
            raise update.Refused("manifest image must be [size, sha256]")
        size, i = update._item(pay, i, 0)
        want, i = update._item(pay, i, 2)
        if not size or len(want) != 32:
            raise update.Refused("manifest image must be [size, sha256]")
        rx.image = size
        rx.want = bytes(want)
    elif key != 4:
        raise update.Refused("manifest payload keys must be 0..4")
    else:
        nfiles, i = update._item(pay, i, 4)
        if not 0 < nfiles <= _MAX_FILES:
            raise update.Refused("manifest lists %d files" % nfiles)
        rx.row = i
        rx.left_files = nfiles
    # Everything the update entry will say, kept by the marker written at COMMIT.
    old = rx.fw.encode()
    new = version.encode()
    f = open(update.ROOT + "/update.tmp", "wb")
    f.write(struct.pack("<IB", counter, len(old)))
    f.write(old)
    f.write(bytes((len(new),)))
    f.write(new)
    f.write(mhash)
    f.close()
