# Receiving a signed firmware update (docs/PROTOCOL.md "Update", docs/FORMATS.md
# "Update package"). Loaded by link.py on the first UPDATE request and dropped again when
# the transfer ends, is refused or is committed, so it costs no heap while the app logs.
#
# The host streams the package bytes in order (UPDATE DATA, offset + up to 86 bytes per
# request line); the device parses them as they come:
#   "HTU1" | manifest length u32 LE | manifest (COSE_Sign1, ES256) | files in order
# 1. The manifest (at most 4096 bytes) is checked before any file byte is accepted
#    (updcheck.py, loaded for that and dropped): its signature by a release key pinned
#    in /ht/release_keys (the package never brings its own trust), its security
#    counter above the stored one (/ht/fw_counter, anti-rollback), its board; file
#    names are checked as each file starts (plain names for /lib/hashtrail/).
# 2. Each file is written to /lib/hashtrail.new/ while it is hashed; a SHA-256 or size
#    that differs from the manifest refuses the update at once.
# 3. COMMIT, once every file matched: /ht/update.tmp (written at step 1: counter, old and
#    new version, manifest hash) is renamed to /ht/update, the marker. littlefs renames
#    are atomic, so a power cut leaves either no marker (the old firmware runs and the
#    staging folder is swept at the next transfer) or a marker over a complete staging
#    folder. Then the device resets; boot.py switches the folders (renames again) and
#    the new firmware's fwboot.py appends the update entry and stores the counter.
# Any refusal removes what was staged and answers ERROR 8 (update-refused) with the
# reason; the application never stopped logging meanwhile.
#
# A full firmware image instead (manifest key 5: size and SHA-256; docs/DEVICE.md
# "Full-image updates"): updimg.py and the board layer's board_ota.py, loaded only once
# the checked manifest names an image (their code is not resident at the manifest check,
# the transfer's heap peak), write it to the next OTA partition; see updimg.py.
#
# Memory: nothing grows with the package. The manifest is hashed as it comes and its
# payload written to /ht/update.pay (a 2 KB buffer for it was refused by a heap the app
# has fragmented, at the board budget); its fields and file rows are read back through a
# 160-byte window. Beyond that: one open file, two sha256 objects, the 66-byte signature.
import hashlib
import os
import struct

from micropython import const

_REP_UPDATE = const(0x88)
_E_UPDATE = const(8)
_OP_BEGIN = const(0)
_OP_DATA = const(1)
_OP_COMMIT = const(2)
_OP_ABORT = const(3)
_OP_PIN = const(4)  # pin a first release key (hashtrail enroll --release-key)
_MAGIC = b"HTU1"
_MAX_MANIFEST = const(4096)  # 48 file rows of ~80 bytes; streamed to flash, never buffered
_PROTECTED = b"\xa2\x01\x26\x04\x50"  # {1: -7, 4: bstr(16)}, the kid follows
_RESERVE = const(16384)  # flash left free for the log after staging
_WINDOW = const(160)  # payload bytes read at once: the map's head fields, or one file row

# The data folder and the firmware's /lib, from the log's root: /ht and /lib on a board
# (as fwboot.paths; a test mounts its flash elsewhere). Set by serve().
ROOT = "/ht"
LIB = "/lib"
# The transfer in progress (module state: the module exists only during a transfer).
_st = None


class Refused(Exception):
    pass


def _head(b, i):
    # One CBOR head at b[i]: (major type, value, index after the head).
    ib = b[i]
    mt = ib >> 5
    ai = ib & 31
    if ai < 24:
        return mt, ai, i + 1
    if ai == 24:
        return mt, b[i + 1], i + 2
    if ai == 25:
        return mt, struct.unpack_from(">H", b, i + 1)[0], i + 3
    if ai == 26:
        return mt, struct.unpack_from(">I", b, i + 1)[0], i + 5
    raise Refused("manifest: unsupported CBOR item")


def _item(b, i, major):
    mt, n, i = _head(b, i)
    if mt != major:
        raise Refused("manifest: unexpected CBOR type")
    if major == 2 or major == 3:
        if i + n > len(b):
            raise Refused("manifest: truncated")
        return b[i:i + n], i + n
    return n, i


def _rmdir(d):
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        os.remove(d + "/" + n)
    os.rmdir(d)


def _remove(p):
    try:
        os.remove(p)
    except OSError:
        pass


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


class _Rx:
    def __init__(self, total, board, fw):
        self.total = total
        self.board = board
        self.fw = fw
        self.off = 0  # package bytes accepted so far
        # Package header (8) and the manifest's fixed COSE prefix (up to 28 bytes):
        # D2 84 | 55 protected(21) | A0 | 58 n or 59 n n (payload bstr head).
        self.pre = bytearray(36)
        self.npre = 0
        self.mlen = 0
        self.mend = 0  # package offset where the manifest ends
        self.pend = 0  # ... where its payload ends
        self.mh = None  # SHA-256 of the manifest bytes (the update entry names it)
        self.sh = None  # SHA-256 of the COSE Sig_structure
        self.pf = None  # the payload, written to flash as it comes (no 2 KB buffer)
        self.sig = None
        self.row = 0  # offset in the payload of the next file row
        self.left_files = 0
        self.f = None  # the open staging file
        self.h = None
        self.left = 0  # bytes of the open file still to come
        self.want = None  # its SHA-256
        self.name = None
        self.done = False
        self.image = 0  # an app image's size (updcheck sets it), 0 for files
        self.w = None  # its board_ota.Writer

    # -- bytes in order ------------------------------------------------------------------
    def feed(self, data):
        mv = memoryview(data)
        i = 0
        n = len(mv)
        while i < n:
            if self.done:
                raise Refused("package has bytes after its last file")
            if self.pend == 0:  # header and COSE prefix, byte by byte into pre
                self.pre[self.npre] = mv[i]
                self.npre += 1
                self.off += 1
                i += 1
                self._prefix()
            elif self.off < self.pend:  # the payload
                k = min(self.pend - self.off, n - i)
                piece = mv[i:i + k]
                self.mh.update(piece)
                self.sh.update(piece)
                self.pf.write(piece)
                self.off += k
                i += k
                if self.off == self.pend:
                    self.pf.close()
                    self.pf = None
                    self.sig = bytearray()
            elif self.off < self.mend:  # the signature's bstr head and the signature
                k = min(self.mend - self.off, n - i)
                self.sig.extend(mv[i:i + k])
                self.mh.update(mv[i:i + k])
                self.off += k
                i += k
                if self.off == self.mend:
                    self._manifest()
            else:
                k = min(self.left, n - i)
                piece = mv[i:i + k]
                if self.w is not None:
                    self.w.write(piece)
                else:
                    self.f.write(piece)
                self.h.update(piece)
                self.left -= k
                self.off += k
                i += k
                if not self.left:
                    self._file_done()

    def _prefix(self):
        p = self.pre
        k = self.npre
        if k == 8:
            if p[0:4] != _MAGIC:
                raise Refused("not a hashtrail update package")
            self.mlen = struct.unpack_from("<I", p, 4)[0]
            if not 100 < self.mlen <= _MAX_MANIFEST:
                raise Refused("manifest length %d out of bounds" % self.mlen)
            self.mend = 8 + self.mlen
        elif (k == 8 + 27 and p[8 + 25] == 0x58) or k == 8 + 28:
            m = memoryview(p)[8:k]
            if m[0] != 0xD2 or m[1] != 0x84 or m[2] != 0x55 or m[3:8] != _PROTECTED \
                    or m[24] != 0xA0 or m[25] not in (0x58, 0x59):
                raise Refused("manifest must be a COSE_Sign1, ES256 with a 16-byte kid")
            plen = m[26] if m[25] == 0x58 else (m[26] << 8) | m[27]
            self.pend = self.off + plen
            if self.pend + 66 != self.mend:
                raise Refused("manifest length does not match its payload")
            self.mh = hashlib.sha256(m)
            self.sh = hashlib.sha256(b"\x84\x6aSignature1")
            self.sh.update(m[2:24])  # bstr head + protected header
            self.sh.update(b"\x40")
            self.sh.update(m[25:])  # the payload's bstr head
            self.pf = open(ROOT + "/update.pay", "wb")

    def _manifest(self):
        # Checked once per transfer by a module of its own, dropped right after: its
        # code is not resident while the files stream in.
        from hashtrail import drop, updcheck

        try:
            updcheck.check(self)
        finally:
            drop("updcheck")
            drop("p256v")  # the manifest's signature checked: no more verifying
        if self.image:  # the image's code is loaded only now (updimg, board_ota)
            from hashtrail import updimg

            updimg.start(self)
            return
        st = os.statvfs(LIB)
        if self.total - self.mend + _RESERVE > st[0] * st[3]:
            raise Refused("package of %d bytes does not fit the free flash" % self.total)
        os.mkdir(LIB + "/hashtrail.new")
        self._next_file()

    def _read(self, pos):
        # A window of the payload file from pos: every item the parser reads from one
        # window (the map's head fields, one file row) is far shorter.
        f = open(ROOT + "/update.pay", "rb")
        f.seek(pos)
        b = f.read(_WINDOW)
        f.close()
        return b

    def _next_file(self):
        if not self.left_files:
            self.done = True
            return
        pay = self._read(self.row)
        mt, n, i = _head(pay, 0)
        if mt != 4 or n != 3:
            raise Refused("manifest file must be [path, size, sha256]")
        path, i = _item(pay, i, 3)
        size, i = _item(pay, i, 0)
        want, i = _item(pay, i, 2)
        self.row += i
        self.left_files -= 1
        name = str(path, "utf-8")
        if not name.startswith("/lib/hashtrail/") or len(want) != 32:
            raise Refused("update file %s is outside /lib/hashtrail" % name)
        name = name[15:]
        if not name or "/" in name or name[0] == ".":
            raise Refused("update file name %s is not a plain name" % name)
        self.name = name
        self.want = want
        self.left = size
        self.h = hashlib.sha256()
        self.f = open(LIB + "/hashtrail.new/" + name, "wb")
        if not size:
            self._file_done()

    def _file_done(self):
        if self.w is not None:
            from hashtrail import updimg

            updimg.done(self)
            return
        self.f.close()
        self.f = None
        if self.h.digest() != self.want:
            raise Refused("file %s: SHA-256 differs from the manifest" % self.name)
        self.h = None
        self._next_file()

    def close(self):
        for f in (self.f, self.pf):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self.f = self.pf = None


def _clean():
    # What a transfer that did not commit leaves: the staging folder and the marker draft.
    # Never while a committed update waits for its reboot (or its trial): its staged
    # folder is what boot.py switches to.
    if _exists(ROOT + "/update") or _exists(ROOT + "/update.img"):
        return
    _rmdir(LIB + "/hashtrail.new")
    _remove(ROOT + "/update.tmp")
    _remove(ROOT + "/update.pay")
    _remove(ROOT + "/update.try")  # a count left by a finished update (no marker now)


def _end():
    global _st
    if _st is not None:
        _st.close()
    _st = None
    from hashtrail import drop

    drop("update")
    drop("updcheck")
    drop("p256v")
    drop("updimg")
    drop("board_ota")


def _reply(link, rid, op, value):
    link._reply(_REP_UPDATE, rid, struct.pack("<BI", op, value))


def serve(link, rid, a):
    """One UPDATE request (link.py dispatches here); answers it on `link`."""
    global _st, ROOT, LIB
    ROOT = link.log.root
    LIB = ROOT[:ROOT.rfind("/")] + "/lib"  # as fwboot.paths
    try:
        if len(a) < 1:
            raise Refused("UPDATE takes an op")
        op = a[0]
        if op == _OP_BEGIN:
            if len(a) != 5:
                raise Refused("BEGIN takes u32 size")
            if _st is not None:
                _st.close()
                _st = None
            if _exists(ROOT + "/update") or _exists(ROOT + "/update.img"):
                raise Refused("an update is installed and waits for a reboot")
            if not _exists(ROOT + "/release_keys"):
                raise Refused("no release key pinned on this device")
            _clean()
            import gc

            gc.collect()
            # The manifest checker loads now, not once the manifest is in: its code
            # needs a few contiguous blocks, which a heap the transfer and the logging
            # have cut up may not have at the check, the transfer's peak. So does
            # p256.verify's code (p256v.py), which the running app does not keep.
            from hashtrail import p256v, updcheck  # noqa: F401 (dropped after the check)

            total = struct.unpack_from("<I", a, 1)[0]
            # The manifest goes to flash first; what follows it is checked against the
            # free flash (files) or the partition (an image) once the manifest says.
            st = os.statvfs(LIB)
            if min(total, _MAX_MANIFEST + 8) + _RESERVE > st[0] * st[3]:
                raise Refused("package of %d bytes does not fit the free flash" % total)
            _st = _Rx(total, link.board, link.fw)
            _reply(link, rid, op, 0)
        elif op == _OP_DATA:
            if _st is None:
                raise Refused("no update in progress")
            if len(a) < 5:
                raise Refused("DATA takes u32 offset and bytes")
            off = struct.unpack_from("<I", a, 1)[0]
            if off == _st.off and off + len(a) - 5 <= _st.total:
                _st.feed(a[5:])
            elif off > _st.off or off + len(a) - 5 > _st.total:
                raise Refused("DATA at %d, expected %d" % (off, _st.off))
            # A repeated chunk (its reply was lost) is answered with where to go on.
            _reply(link, rid, op, _st.off)
        elif op == _OP_COMMIT:
            if _st is None or not _st.done or _st.off != _st.total:
                raise Refused("the package is incomplete")
            _remove(ROOT + "/update.pay")
            if _st.w is not None:
                from hashtrail import updimg

                updimg.commit(_st)
            else:
                os.rename(ROOT + "/update.tmp", ROOT + "/update")
            _reply(link, rid, op, _st.off)
            _end()
            _reset(link)
        elif op == _OP_ABORT:
            _clean()
            _reply(link, rid, op, 0)
            _end()
        elif op == _OP_PIN:
            # Rare (once per device, at enrollment): its code loads for it alone.
            from hashtrail import drop, updpin

            try:
                updpin.pin(link, rid, a)
            finally:
                drop("updpin")
            _end()
        else:
            raise Refused("unknown UPDATE op %d" % op)
    except (Refused, OSError, ValueError, IndexError, KeyError, TypeError,
            MemoryError) as e:
        # Any of these refuses the update and the app goes on (a bad package, a full or
        # failing flash, no memory); anything else reaches link.py's own handler.
        try:
            _clean()
        except OSError:
            pass
        _end()
        reason = str(e) if isinstance(e, Refused) else "%s: %s" % (type(e).__name__, e)
        link._error(rid, _E_UPDATE, reason)


def _reset(link):
    # The reply is on the wire; close the log (every entry synced) and reset, so
    # boot.py switches to the new firmware.
    import time

    import machine

    time.sleep_ms(100)
    link.log.close()
    machine.reset()
