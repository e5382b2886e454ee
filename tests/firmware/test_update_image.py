# Full-image firmware updates (board_ota.py through update.py and fwboot.py) against a
# simulated esp32.Partition (esp32sim.py: two OTA partitions in files, NOR flash, the
# rollback-enabled bootloader). The heap is test_update.py's (1 MB: this module, the
# simulator and the sweeps' bookkeeping are compiled from source in the VM's heap); the
# app receiving an image at the esp32 budget is test_update_image_budget.py.
#
# - test_image_installs_and_is_confirmed: the image written to ota_1 and read back, one
#   set_boot on the complete image, the new image's first boot appends the update entry,
#   confirms itself and stores the counter; the bootloader keeps it; a replay is refused.
# - test_refusals_never_call_set_boot: another key, another board, a counter not above
#   the stored one, a tampered image (refused at its last byte), a short transfer, an
#   image larger than the partition, an image the bootloader's check refuses: each
#   answered with its reason, no set_boot (or none that took), the old image running,
#   the log going on.
# - test_a_board_without_esp32_refuses_an_image: the unix port's own board.
# - test_an_image_that_never_confirms_is_rolled_back / ..._reports_another_version_...:
#   the bootloader brings the old image back and the old firmware appends the
#   update-reverted entry (kind 8); the counter was never stored, the package installs
#   again.
# - test_power_cut_at_every_flash_operation (and half-programmed): littlefs and partition
#   operations counted together; after each cut and the boots that follow, the old image
#   runs or the new one, complete, exactly as the bootloader's state at the cut says, and
#   the chain holds the entries that say so.
import gc
import hashlib
import os
import struct
import sys

import devhelp
import dtest
import esp32sim
import ramblock
from hashtrail import devlog, entry, fwboot, link

HEAP = 1048576
NEEDS = ("image_packages",)
TIMEOUT = 600
_CHUNK = 86  # package bytes per UPDATE DATA line (the host's UPDATE_CHUNK)
_PART = 32768  # each simulated OTA partition
_BLOCKS = 48  # littlefs blocks
_CFG = {"name": "unix", "log": {"seg_records": 6, "seg_bytes": 1024, "checkpoint_every": 0,
                                "checkpoint_s": 0, "flush_every": 1}}
_BUF = bytearray(512)


class _Machine:
    @staticmethod
    def reset():
        raise SystemExit


class _Out:
    # The link's output: keeps the ERROR reasons only (no growing buffer in the heap).
    def __init__(self):
        self.errors = []

    def write(self, b):
        n = struct.unpack_from("<H", b, 5)[0]
        if b[3] == 0xFF:
            self.errors.append(bytes(b[9:8 + n]).decode())
        return len(b)


_get = devhelp.read_file
_exists = devhelp.exists


def _copy(src, dst):
    with open(src, "rb") as a:
        with open(dst, "wb") as b:
            while True:
                n = a.readinto(_BUF)
                if not n:
                    break
                b.write(_BUF if n == len(_BUF) else _BUF[:n])


def _log(base, fw):
    return devlog.Log(base + "/ht", "unix", fw, devhelp.StepClock(None, 100), _CFG,
                      "power_on")


def _send(base, fw, pkg_path, upto=None, commit=True):
    """The host's side straight into update.serve (BEGIN, DATA, COMMIT) under the
    firmware `fw`; returns the errors answered. The package is read a line at a time."""
    log = _log(base, fw)
    out = _Out()
    lnk = link.Link(log, out, "unix", fw, None)
    f = open(pkg_path, "rb")
    f.seek(0, 2)
    total = f.tell()
    f.seek(0)
    buf = bytearray(_CHUNK)
    try:
        from hashtrail import update

        update.serve(lnk, 1, struct.pack("<BI", 0, total))
        off = 0
        end = total if upto is None else upto
        while off < end and not out.errors:  # the host stops at the first refusal
            n = f.readinto(buf)
            from hashtrail import update  # noqa: re-imported after a refusal dropped it

            update.serve(lnk, 2, struct.pack("<BI", 1, off) + buf[:n])
            off += n
        if commit and not out.errors:
            from hashtrail import update

            update.serve(lnk, 3, struct.pack("<BI", 2, 0))
    except SystemExit:  # machine.reset() after COMMIT
        pass
    finally:
        f.close()
    try:
        log.close()
    except OSError:  # a power cut took the flash away
        pass
    return out.errors


def _boot(base, run=True):
    """A reset: the bootloader picks the image; its firmware boots (the app opens the log
    and fwboot finishes what is pending) unless `run` is False (it crashes first)."""
    esp32sim.boot()
    fw = esp32sim.version()
    if not run:
        return fw
    log = _log(base, fw)
    try:
        fwboot.finish(log, base + "/ht")
    except SystemExit:  # board_ota.reset(): the image took itself back
        return fw + " (reset)"
    log.close()
    return fw


def _entries(base, kind):
    log = _log(base, esp32sim.version())
    es = devhelp.walk(log.store, log.pub)
    log.reading([("t", "Cel", 1.5)])  # the log goes on
    log.close()
    return [k for k in devhelp.kinds(es) if k[1] == kind]


def _running():
    """'old' or 'new': which image runs, checked byte for byte."""
    lbl = esp32sim.Partition(esp32sim.Partition.RUNNING).info()[4]
    if lbl == "ota_0":
        dtest.eq(esp32sim.read("ota_0", 10000), _get(dtest.data("image_old.bin")), "old image")
        return "old"
    dtest.eq(esp32sim.read("ota_1", 10000), _get(dtest.data("image_new.bin")), "new image")
    return "new"


def _fresh(tag):
    """The device before the update: littlefs with the pinned key and a first boot, the
    factory image in ota_0. Returns (block device, mount point, flash file)."""
    sys.modules["machine"] = _Machine
    lfs = dtest.data(tag + ".lfs")
    with open(lfs, "wb") as f:
        ff = b"\xff" * 4096
        for _ in range(_BLOCKS):
            f.write(ff)
        ff = None
    mem = open(lfs, "r+b")
    bd = ramblock.RamBlock(4096, _BLOCKS, mem)
    base = ramblock.mount(bd, mkfs=True)
    for d in ("/lib", "/ht"):
        os.mkdir(base + d)
    _copy(dtest.data("update_pub.bin"), base + "/ht/release_keys")
    esp32sim.install(dtest.data(tag), _PART, _get(dtest.data("image_old.bin")))
    esp32sim.WATCH = 10000
    dtest.eq(_boot(base), "0.1.0")
    gc.collect()
    return bd, base, mem


def _manifest_hash(path):
    b = _get(path)
    n = struct.unpack_from("<I", b, 4)[0]
    return hashlib.sha256(b[8:8 + n]).digest()


def test_image_installs_and_is_confirmed():
    bd, base, mem = _fresh("ok")
    pkg = dtest.data("image_new.htu")
    dtest.eq(_send(base, "0.1.0", pkg), [])
    dtest.false("hashtrail.board_ota" in sys.modules, "board_ota dropped after COMMIT")
    new_sha = hashlib.sha256(_get(dtest.data("image_new.bin"))).digest()
    dtest.eq(esp32sim.SET_BOOT, [("ota_1", new_sha)], "one set_boot, on the whole image")
    dtest.true(_exists(base + "/ht/update.img"), "marker committed")
    dtest.eq(esp32sim.state("ota_1"), esp32sim.NEW)
    dtest.eq(_boot(base), "0.2.0")
    dtest.false("hashtrail.board_ota" in sys.modules, "board_ota dropped after the finish")
    dtest.eq(esp32sim.state("ota_1"), esp32sim.VALID, "confirmed at its first boot")
    dtest.false(_exists(base + "/ht/update.img"), "marker removed")
    dtest.eq(fwboot.read_counter(base + "/ht"), 3)
    for _ in range(2):  # the bootloader keeps it
        dtest.eq(_boot(base), "0.2.0")
    dtest.eq(_running(), "new")
    ups = _entries(base, entry.KIND_UPDATE)
    dtest.eq(len(ups), 1, "one update entry")
    b = ups[0][2]
    dtest.eq((b[1], b[2], b[3], b[4]), ("0.1.0", "0.2.0", 3, _manifest_hash(pkg)))
    dtest.eq(_entries(base, entry.KIND_UPDATE_REVERTED), [])
    # The same package again, now from ota_1 into ota_0: a replay, refused.
    errs = _send(base, "0.2.0", pkg)
    dtest.true(errs and "not above the installed 3" in errs[0], "replay: %r" % errs)
    dtest.eq(len(esp32sim.SET_BOOT), 1)
    # The next release goes into ota_0, over the old image: each block is erased first
    # (NOR flash: a write only clears bits; the read-back would refuse a mix).
    nxt = _get(dtest.data("image_next.bin"))
    esp32sim.WATCH = len(nxt)
    dtest.eq(_send(base, "0.2.0", dtest.data("image_next.htu")), [])
    dtest.eq(esp32sim.SET_BOOT[1], ("ota_0", hashlib.sha256(nxt).digest()))
    dtest.eq(_boot(base), "0.3.0")
    dtest.eq(esp32sim.read("ota_0", len(nxt)), nxt)
    dtest.eq(esp32sim.state("ota_0"), esp32sim.VALID)
    dtest.eq([e[2][2] for e in _entries(base, entry.KIND_UPDATE)], ["0.2.0", "0.3.0"])
    dtest.eq(fwboot.read_counter(base + "/ht"), 4)
    mem.close()


def test_refusals_never_call_set_boot():
    bd, base, mem = _fresh("refuse")
    cases = [
        ("image_other_key.htu", None, "not signed by a pinned release key"),
        ("image_other_board.htu", None, "for board esp32"),
        ("image_tampered.htu", None, "image: SHA-256 differs"),
        ("image_new.htu", 5000, "incomplete"),
        ("image_big.htu", None, "does not fit partition ota_1"),
        ("image_nohead.htu", None, "set_boot refused the image"),
        ("image_new.htu", "counter", "not above the installed 5"),
    ]
    for name, upto, reason in cases:
        if upto == "counter":
            fwboot.write_counter(base + "/ht", 5)
            upto = None
        errs = _send(base, "0.1.0", dtest.data(name), upto)
        dtest.true(len(errs) == 1 and reason in errs[0], "%s: %r" % (name, errs))
        dtest.eq(esp32sim.SET_BOOT, [], name + ": set_boot")
        dtest.false("hashtrail.board_ota" in sys.modules, name + ": board_ota dropped")
        for p in ("/ht/update.img", "/ht/update.tmp", "/ht/update.pay", "/ht/update"):
            dtest.false(_exists(base + p), "%s: %s left" % (name, p))
        dtest.eq(_boot(base), "0.1.0", name)
        dtest.eq(_running(), "old")
    dtest.eq(_entries(base, entry.KIND_UPDATE), [])
    dtest.eq(_entries(base, entry.KIND_UPDATE_REVERTED), [])
    mem.close()


def test_a_board_without_esp32_refuses_an_image():
    bd, base, mem = _fresh("noesp")
    del sys.modules["esp32"]
    errs = _send(base, "0.1.0", dtest.data("image_new.htu"))
    dtest.true(errs and "no OTA partitions" in errs[0], "refused: %r" % errs)
    dtest.false(_exists(base + "/ht/update.tmp"), "draft swept")
    mem.close()


def _rolled_back(base, pkg, first_boot):
    dtest.eq(_send(base, "0.1.0", pkg), [])
    dtest.eq(_boot(base, run=first_boot), "0.2.0" if not first_boot else "0.2.0-x (reset)")
    dtest.eq(esp32sim.state("ota_1"), esp32sim.PENDING_VERIFY)
    dtest.eq(_boot(base), "0.1.0")  # the bootloader took it back; the old firmware logs
    dtest.eq(esp32sim.state("ota_1"), esp32sim.ABORTED)
    dtest.eq(_running(), "old")
    dtest.false(_exists(base + "/ht/update.img"), "marker removed")
    dtest.eq(fwboot.read_counter(base + "/ht"), 0, "counter never stored")
    rev = _entries(base, entry.KIND_UPDATE_REVERTED)
    dtest.eq(len(rev), 1, "one update-reverted entry")
    b = rev[0][2]
    dtest.eq((b[1], b[2], b[3], b[4], b[5]), ("0.2.0", "0.1.0", 3, _manifest_hash(pkg),
                                              "image not confirmed at its first boot"))
    dtest.eq(_entries(base, entry.KIND_UPDATE), [])
    dtest.eq(_boot(base), "0.1.0")
    dtest.eq(len(_entries(base, entry.KIND_UPDATE_REVERTED)), 1, "appended once")


def test_an_image_that_never_confirms_is_rolled_back():
    bd, base, mem = _fresh("crash")
    pkg = dtest.data("image_new.htu")
    _rolled_back(base, pkg, False)
    # The counter was never stored: the package installs now.
    dtest.eq(_send(base, "0.1.0", pkg), [])
    dtest.eq(_boot(base), "0.2.0")
    dtest.eq(_boot(base), "0.2.0")
    dtest.eq(_running(), "new")
    dtest.eq(len(_entries(base, entry.KIND_UPDATE)), 1)
    mem.close()


def test_an_image_reporting_another_version_is_rolled_back():
    bd, base, mem = _fresh("badver")
    _rolled_back(base, dtest.data("image_badver.htu"), True)
    mem.close()


# -- power cuts ---------------------------------------------------------------------------

def _script(base, pkg, bd):
    """The transfer under the old firmware, then two boots; a cut stops it (a board
    without power runs nothing after it)."""
    _send(base, "0.1.0", pkg)
    for _ in range(2):
        if 0 <= bd.cut_at < bd.ops:
            raise ramblock.PowerCut("power cut")
        _boot(base)
    if 0 <= bd.cut_at < bd.ops:
        raise ramblock.PowerCut("power cut")


_FILES = (".lfs", ".ota_0.bin", ".ota_1.bin", ".otadata")


def _snapshot(tag):
    for s in _FILES:
        _copy(dtest.data(tag + s), dtest.data(tag + ".snap" + s))


def _restore(tag, mem):
    for s in _FILES[1:]:
        _copy(dtest.data(tag + ".snap" + s), dtest.data(tag + s))
    mem.seek(0)
    with open(dtest.data(tag + ".snap.lfs"), "rb") as a:
        while True:
            n = a.readinto(_BUF)
            if not n:
                break
            mem.write(_BUF if n == len(_BUF) else _BUF[:n])
    mem.flush()


def _power_on(mem, old=None):
    if old is not None:  # the powered-off device's objects never touch the flash again
        old.arm(0)
        old.errno = True
    bd = ramblock.RamBlock(4096, _BLOCKS, mem)
    ramblock.mount(bd)
    esp32sim.POWER = bd
    return bd


def _sweep(half):
    tag = "cut%d" % half
    bd, base, mem = _fresh(tag)
    pkg = dtest.data("image_new.htu")
    sha = hashlib.sha256(_get(dtest.data("image_new.bin"))).digest()
    mem.flush()
    _snapshot(tag)
    bd = _power_on(mem, bd)
    bd.reset_counters()
    _script(base, pkg, bd)
    total = bd.ops
    dtest.eq(_running(), "new")
    dtest.true(total > 60, "script too small: %d flash ops" % total)
    outcomes = {"old": 0, "new": 0}
    for c in range(total):
        _restore(tag, mem)
        esp32sim.SET_BOOT = []
        bd = _power_on(mem, bd)
        esp32sim.boot()  # the RAM state of the factory boot: ota_0 runs
        bd.reset_counters()
        bd.arm(c, half, errno=True)
        try:
            _script(base, pkg, bd)
        except Exception:  # noqa: the power cut, wherever it surfaced
            pass
        dtest.true(bd.ops > c, "cut %d of %d never happened" % (c, total))
        from hashtrail import drop

        for m in ("update", "updcheck", "board_ota"):
            drop(m)
        gc.collect()
        try:
            for lbl, h in esp32sim.SET_BOOT:
                dtest.eq((lbl, h), ("ota_1", sha), "set_boot on a partial image")
            st = esp32sim.state("ota_1")
            bd = _power_on(mem, bd)
            marker = _exists(base + "/ht/update.img")
            want = "new" if st in (esp32sim.NEW, esp32sim.VALID) else "old"
            for _ in range(3):
                _boot(base)
            got = _running()
            dtest.eq(got, want, "image after the cut (ota_1 state %d)" % st)
            dtest.false(_exists(base + "/ht/update.img"), "marker left")
            ups = len(_entries(base, entry.KIND_UPDATE))
            revs = len(_entries(base, entry.KIND_UPDATE_REVERTED))
            if got == "new":
                dtest.true(1 <= ups <= 2 and revs == 0, "entries %d %d" % (ups, revs))
                dtest.eq(fwboot.read_counter(base + "/ht"), 3)
            else:
                dtest.eq(fwboot.read_counter(base + "/ht"), 0)
                dtest.true(ups <= 2 and revs <= 2, "entries %d %d" % (ups, revs))
                dtest.true(revs >= 1 if (marker or ups) else revs == 0,
                           "reverted %d (marker %r, updates %d)" % (revs, marker, ups))
            outcomes[got] += 1
        except Exception as e:
            raise AssertionError("cut at flash op %d/%d (half=%r): %r" % (c, total, half, e))
    print("@@IMGCUT half=%r total=%d old=%d new=%d" % (half, total, outcomes["old"],
                                                       outcomes["new"]))
    dtest.true(outcomes["old"] > 0 and outcomes["new"] > 0, "both outcomes seen")
    mem.close()


def test_power_cut_at_every_flash_operation():
    _sweep(False)


def test_half_programmed_write_at_every_flash_operation():
    _sweep(True)
