# Firmware updates on the device (update.py, fwboot.py, the boot-time switch htboot.py).
#
# (The app receiving the real package at the board's heap budget: test_update_budget.py.)
# - test_switch_and_finish: boot.py's switch and fwboot on the staged package: the new
#   files in place, the update entry in the chain, the counter stored, a replay refused.
# - test_power_cut_at_every_flash_operation (and with half-programmed writes): the path (staging, commit, switch,
#   finish) replayed with the power cut at each flash operation in turn: after the
#   reboots that follow, /lib/hashtrail is the old firmware complete or the new one
#   complete, never a mix, the new one exactly when the commit's rename was durable,
#   and the chain holds the update entry exactly then.
import gc
import hashlib
import io
import json
import os
import struct
import sys

import devhelp
import dtest
import ramblock
from hashtrail import devlog, entry, fwboot, link

HEAP = 1048576
TIMEOUT = 600
NEEDS = ("update_packages",)
_CHUNK = 86  # package bytes per UPDATE DATA line (the host's UPDATE_CHUNK)
_OLD = {"app.mpy": b"old app " * 40, "cbor.mpy": b"old cbor " * 30}


class _Machine:
    # The board's `machine.reset()`, as the virtual board's ROM gives it (_vmachine.py).
    @staticmethod
    def reset():
        raise SystemExit


def _put(path, data):
    with open(path, "wb") as f:
        f.write(data)


_get = devhelp.read_file
_exists = devhelp.exists


def _layout(base):
    """A board's flash before the update: the old firmware and the pinned key."""
    for d in ("/lib", "/lib/hashtrail", "/ht"):
        os.mkdir(base + d)
    for n, data in _OLD.items():
        _put(base + "/lib/hashtrail/" + n, data)
    _put(base + "/ht/release_keys", _get(dtest.data("update_pub.bin")))


# -- the switch, the finish, power cuts (RAM flash, ramblock.py) ------------------------

# The sweeps cut power with the block device returning -EIO (ramblock `errno`), as a
# flash driver does: raising from the block device unwinds through littlefs's C code
# and crashed the unix port (SIGSEGV) in about 1 run of 3 (ramblock.py says why).

_CFG = {"name": "unix", "log": {"seg_records": 6, "seg_bytes": 1024, "checkpoint_every": 0,
                                "checkpoint_s": 0, "flush_every": 1}}
_BLOCKS_RAM = 64


def _boot_switch(base):
    # What boot.py runs when an update is pending: the compiled switch (/htboot.mpy,
    # beside boot.py), its absolute paths moved under the test's mount point.
    import sys

    import hashtrail

    top = hashtrail.__file__.rsplit("/lib/hashtrail/", 1)[0]
    if top not in sys.path:
        sys.path.append(top)
    import htboot

    try:
        htboot.run(base)
    except Exception as e:  # as boot.py: printed, the REPL stays reachable
        print("hashtrail: update switch failed:", e)


def _log(base):
    return devlog.Log(base + "/ht", "unix", "0.1.0", devhelp.StepClock(None, 100), _CFG,
                      "power_on")


def _send(lnk, pkg):
    """The host's side, straight into update.serve: BEGIN, DATA, COMMIT."""
    from hashtrail import update

    out = lnk.out
    update.serve(lnk, 1, struct.pack("<BI", 0, len(pkg)))
    for off in range(0, len(pkg), _CHUNK):
        from hashtrail import update  # noqa: re-imported after a refusal dropped it

        update.serve(lnk, 2, struct.pack("<BI", 1, off) + pkg[off:off + _CHUNK])
    from hashtrail import update

    update.serve(lnk, 3, struct.pack("<BI", 2, 0))
    return out


def _errors(out):
    v = out.getvalue()
    i = 0
    errs = []
    while i + 8 <= len(v):
        n = struct.unpack_from("<H", v, i + 5)[0]
        if v[i + 3] == 0xFF:
            errs.append(bytes(v[i + 9:i + 8 + n]).decode())
        i += 12 + n
    return errs


def _script(base, pkg, done, bd=None):
    """Staging and commit under the running (old) firmware, the reset, then the next
    boot: boot.py's switch and the app's boot with fwboot.finish. boot.py prints any
    exception (the REPL must stay reachable), so a cut inside it is re-raised here: a
    board without power runs nothing after it."""
    log = _log(base)
    lnk = link.Link(log, io.BytesIO(), "unix", "0.1.0", None)
    try:
        _send(lnk, pkg)
    except SystemExit:  # machine.reset() after COMMIT
        pass
    done[0] = "committed" if not _errors(lnk.out) else "refused"
    log.close()
    _boot_switch(base)
    if bd is not None and 0 <= bd.cut_at < bd.ops:
        raise ramblock.PowerCut("power cut in boot.py")
    log = _log(base)
    fwboot.finish(log, base + "/ht")
    log.close()
    if bd is not None and 0 <= bd.cut_at < bd.ops:
        raise ramblock.PowerCut("power cut in the app's boot")  # fwboot prints OSError
    done[0] = "finished"


def _installed(base):
    names = sorted(os.listdir(base + "/lib/hashtrail"))
    got = {n: _get(base + "/lib/hashtrail/" + n) for n in names}
    if got == _OLD:
        return "old"
    new = json.loads(_get(dtest.data("update_small.json")))
    if sorted(new) == names and all(got[n] == bytes.fromhex(new[n]) for n in names):
        return "new"
    raise AssertionError("/lib/hashtrail is neither firmware: %r" % names)


def _updates(base, pub):
    log = _log(base)
    es = devhelp.walk(log.store, pub)
    log.close()
    return [k for k in devhelp.kinds(es) if k[1] == entry.KIND_UPDATE]


def _fresh(blocks):
    bd = ramblock.RamBlock(4096, blocks)
    base = ramblock.mount(bd, mkfs=True)
    _layout(base)
    _log(base).close()  # first boot: key and entries 0, 1
    bd.arm(0)
    return bd.image(), bd.mem


def test_switch_and_finish():
    sys.modules["machine"] = _Machine
    image, mem = _fresh(_BLOCKS_RAM)
    bd = ramblock.RamBlock(4096, _BLOCKS_RAM, mem)
    base = ramblock.mount(bd)
    pkg = _get(dtest.data("update_small.htu"))
    done = [None]
    _script(base, pkg, done)
    dtest.eq(done[0], "finished")
    dtest.eq(_installed(base), "new")
    for p in ("/ht/update", "/ht/update.tmp", "/ht/update.pay", "/lib/hashtrail.new",
              "/lib/hashtrail.old"):
        dtest.false(_exists(base + p), p + " left behind")
    dtest.eq(fwboot.read_counter(base + "/ht"), 3)
    log = _log(base)
    pub = log.pub
    ups = _updates(base, pub)
    dtest.eq(len(ups), 1, "one update entry")
    body = ups[0][2]
    dtest.eq((body[1], body[2], body[3]), ("0.1.0", "0.2.0", 3))
    n = struct.unpack_from("<I", pkg, 4)[0]
    dtest.eq(body[4], hashlib.sha256(pkg[8:8 + n]).digest(), "manifest hash")
    # The same package again: a replay, refused by the counter; nothing changes.
    lnk = link.Link(log, io.BytesIO(), "unix", "0.2.0", None)
    _send(lnk, pkg)
    errs = _errors(lnk.out)
    dtest.true(errs and "not above the installed 3" in errs[0], "replay refused: %r" % errs)
    log.close()
    dtest.eq(_installed(base), "new")
    dtest.false(_exists(base + "/lib/hashtrail.new"), "refusal swept the staging folder")


def _stage(base, pkg):
    """Transfer and COMMIT under the old firmware; returns the errors it answered."""
    log = _log(base)
    lnk = link.Link(log, io.BytesIO(), "unix", "0.1.0", None)
    try:
        _send(lnk, pkg)
    except SystemExit:
        pass
    log.close()
    return _errors(lnk.out)


def _left(base):
    return [p for p in ("/ht/update", "/ht/update.tmp", "/ht/update.pay", "/ht/update.try",
                        "/ht/update.reverted", "/lib/hashtrail.new", "/lib/hashtrail.old",
                        "/lib/hashtrail.bad")
            if _exists(base + p)]


def _reverted(base, pub):
    log = _log(base)
    es = devhelp.walk(log.store, pub)
    log.close()
    return [k for k in devhelp.kinds(es) if k[1] == entry.KIND_UPDATE_REVERTED]


def test_a_new_transfer_never_sweeps_a_committed_update():
    sys.modules["machine"] = _Machine
    image, mem = _fresh(_BLOCKS_RAM)
    base = ramblock.mount(ramblock.RamBlock(4096, _BLOCKS_RAM, mem))
    pkg = _get(dtest.data("update_small.htu"))
    dtest.eq(_stage(base, pkg), [])
    # Before the reboot, another BEGIN: refused, and the staged folder stays.
    errs = _stage(base, pkg)
    dtest.true(errs and "waits for a reboot" in errs[0], "refused: %r" % errs)
    dtest.eq(_left(base), ["/ht/update", "/lib/hashtrail.new"])
    _boot_switch(base)
    log = _log(base)
    dtest.eq(fwboot.finish(log, base + "/ht"), "0.2.0")
    log.close()
    dtest.eq(_installed(base), "new")
    dtest.eq(_left(base), [])


def test_rollback_when_the_new_firmware_never_proves_itself():
    sys.modules["machine"] = _Machine
    image, mem = _fresh(_BLOCKS_RAM)
    base = ramblock.mount(ramblock.RamBlock(4096, _BLOCKS_RAM, mem))
    pkg = _get(dtest.data("update_small.htu"))
    dtest.eq(_stage(base, pkg), [])
    # Two boots of the new firmware that never reach fwboot.finish (it cannot start).
    for _ in range(2):
        _boot_switch(base)
        dtest.eq(_installed(base), "new")
    _boot_switch(base)  # the third: back to the old firmware
    dtest.eq(_installed(base), "old")
    dtest.eq(_left(base), ["/ht/update.reverted"])  # what the old firmware records
    dtest.eq(fwboot.read_counter(base + "/ht"), 0)
    log = _log(base)
    pub = log.pub
    dtest.eq(fwboot.finish(log, base + "/ht"), None)
    log.close()
    dtest.eq(_left(base), [])
    dtest.eq(_updates(base, pub), [])
    # The chain says the update was tried and taken back: the update-reverted entry,
    # written by the old firmware, naming the release that failed.
    rev = _reverted(base, pub)
    dtest.eq(len(rev), 1, "one update-reverted entry")
    body = rev[0][2]
    n = struct.unpack_from("<I", pkg, 4)[0]
    dtest.eq((body[1], body[2], body[3], body[5]),
             ("0.2.0", "0.1.0", 3, "not started in 3 boots"))
    dtest.eq(body[4], hashlib.sha256(pkg[8:8 + n]).digest(), "manifest hash")
    # The counter was never stored: the same package can be sent again.
    dtest.eq(_stage(base, pkg), [])
    _boot_switch(base)
    log = _log(base)
    dtest.eq(fwboot.finish(log, base + "/ht"), "0.2.0")
    log.close()
    dtest.eq(_installed(base), "new")
    dtest.eq(len(_updates(base, pub)), 1)
    dtest.eq(len(_reverted(base, pub)), 1)


def _script_failing(base, pkg, done, bd=None):
    """Staging and commit, then three boots of a new firmware that never starts."""
    _stage(base, pkg)
    done[0] = "committed"
    for _ in range(3):
        _boot_switch(base)
        if bd is not None and 0 <= bd.cut_at < bd.ops:
            raise ramblock.PowerCut("power cut in boot.py")
    done[0] = "finished"


def test_power_cut_at_every_flash_operation_of_a_rollback():
    sys.modules["machine"] = _Machine
    image, mem = _fresh(_BLOCKS_RAM)
    pkg = _get(dtest.data("update_small.htu"))
    bd = ramblock.RamBlock(4096, _BLOCKS_RAM, mem)
    base = ramblock.mount(bd)
    done = [None]
    _stage(base, pkg)
    commit_at = bd.ops  # flash operations up to a durable commit
    mem.seek(0)
    mem.write(image)
    bd = ramblock.RamBlock(4096, _BLOCKS_RAM, mem)
    base = ramblock.mount(bd)
    _script_failing(base, pkg, done)
    total = bd.ops
    dtest.eq(_installed(base), "old")
    for c in range(total):
        mem.seek(0)
        mem.write(image)
        bd = ramblock.RamBlock(4096, _BLOCKS_RAM, mem)
        bd.arm(c, errno=True)
        base = ramblock.mount(bd)
        try:
            _script_failing(base, pkg, done, bd)
        except Exception:  # noqa: the power cut
            pass
        from hashtrail import drop

        drop("update")
        drop("updcheck")
        gc.collect()
        try:
            bd = ramblock.reboot(bd)
            # The new firmware keeps failing: every boot finds one firmware complete,
            # and after enough of them the old one is back and nothing is left over.
            for _ in range(4):
                _boot_switch(base)
                _installed(base)
            dtest.eq(_installed(base), "old")
            # The old firmware's boot records the roll-back, exactly when there was one
            # (a committed update): one update-reverted entry, nothing left to record.
            rolled = _exists(base + "/ht/update.reverted")
            log = _log(base)
            fwboot.finish(log, base + "/ht")
            pub = log.pub
            log.close()
            dtest.eq(len(_reverted(base, pub)), 1 if rolled else 0, "reverted entries")
            dtest.true(rolled or c < commit_at, "cut %d after the commit, no roll-back" % c)
            # A transfer cut before its commit leaves its drafts for the next BEGIN.
            for p in _left(base):
                dtest.true(p in ("/lib/hashtrail.new", "/ht/update.tmp", "/ht/update.pay"),
                           "%s left behind" % p)
            bd.arm(0)
        except Exception as e:
            raise AssertionError("cut at flash op %d/%d: %r" % (c, total, e))


def test_power_cut_at_every_flash_operation():
    _sweep(False)


def test_half_programmed_write_at_every_flash_operation():
    _sweep(True)


def _sweep(half):
    sys.modules["machine"] = _Machine
    image, mem = _fresh(_BLOCKS_RAM)
    pkg = _get(dtest.data("update_small.htu"))
    bd = ramblock.RamBlock(4096, _BLOCKS_RAM, mem)
    log = _log(ramblock.mount(bd))
    pub = log.pub
    log.close()
    bd.arm(0)
    # A clean run from the same image counts the flash operations.
    mem.seek(0)
    mem.write(image)
    bd = ramblock.RamBlock(4096, _BLOCKS_RAM, mem)
    base = ramblock.mount(bd)
    done = [None]
    _script(base, pkg, done)
    total = bd.ops
    dtest.eq(done[0], "finished")
    dtest.true(total > 60, "script too small: %d flash ops" % total)
    outcomes = {"old": 0, "new": 0}
    for c in range(total):
        mem.seek(0)
        mem.write(image)
        bd = ramblock.RamBlock(4096, _BLOCKS_RAM, mem)
        bd.arm(c, half, errno=True)
        base = ramblock.mount(bd)
        done[0] = None
        try:
            _script(base, pkg, done, bd)
        except Exception:  # noqa: the power cut, wherever it surfaced
            pass
        dtest.true(bd.ops > c, "cut %d of %d never happened" % (c, total))
        # The RAM of the powered-off device is gone: a transfer's state with it.
        from hashtrail import drop

        drop("update")
        drop("updcheck")
        gc.collect()
        try:
            bd = ramblock.reboot(bd)
            committed = _exists(base + "/ht/update")
            # Boots after the cut: each must find a complete firmware.
            for _ in range(2):
                _boot_switch(base)
                state = _installed(base)
                log = _log(base)
                fwboot.finish(log, base + "/ht")
                log.close()
            dtest.eq(state, "new" if committed or done[0] == "finished" else "old",
                     "firmware after the cut")
            if done[0] == "committed":
                dtest.eq(state, "new", "a cut after the commit keeps the update")
            dtest.false(_exists(base + "/ht/update"), "marker left after the boots")
            dtest.false(_exists(base + "/lib/hashtrail.old"), "old firmware left")
            ups = _updates(base, pub)
            if state == "new":
                dtest.true(1 <= len(ups) <= 2, "update entries %r" % (ups,))
                dtest.eq(fwboot.read_counter(base + "/ht"), 3)
            else:
                dtest.eq(ups, [], "no update entry without the update")
                dtest.eq(fwboot.read_counter(base + "/ht"), 0)
            outcomes[state] += 1
            bd.arm(0)
        except Exception as e:
            raise AssertionError("cut at flash op %d/%d (half=%r, done %r): %r" % (
                c, total, half, done[0], e))
    print("@@UPDCUT half=%r total=%d old=%d new=%d" % (
        half, total, outcomes["old"], outcomes["new"]))
    dtest.true(outcomes["old"] > 0 and outcomes["new"] > 0, "both outcomes seen")
