# Power-cut sweep for the whole Log (real entries, checkpoints, acks, state file).
#
# The flash image starts after a first boot (key file, entries 0-1). The script boots
# again, appends readings, a time-set, a checkpoint and an ack (which prunes), with a
# clock that makes every run write the same bytes. For each cut point: reboot, open
# the store and check every entry on flash is byte-identical to the clean run's entry
# with that seq, links to its predecessor, and every call that returned is durable;
# then boot the Log on it and check the chain resumes on the recovered head, with no
# log-altered report (every entry left is one the device signed).
import devhelp
import ramblock
from hashtrail import devlog, entry, logstore

BLOCKS = 24
CFG = {"name": "unix", "log": {"seg_records": 6, "seg_bytes": 1024, "checkpoint_every": 0,
                               "checkpoint_s": 0, "flush_every": 1}}
_R = [("temp", "Cel", 4.25), ("humidity", "%RH", 55.5)]


def _log(root):
    return devlog.Log(root, "unix", "0.1.0", devhelp.StepClock(None, 100), CFG, "power_on")


def _script(root, done, n):
    log = _log(root)
    done[0] = log.last_seq
    for i in range(n):
        done[0] = log.reading(_R)
        if i == n // 3:
            done[0] = log.set_time(1700000000)
        if i == n // 2:
            log.checkpoint(b"nonce")
        if i == 2 * n // 3:
            done[0] = log.ack(done[0] - 3)
    log.close()


def _entries(root):
    st = logstore.LogStore(root, seg_records=6, seg_bytes=1024)
    es = devhelp.walk(st)
    problems = st.problems
    last = st.last_seq
    st.close()
    return es, problems, last


def sweep(n=16, stride=1, half=False, limit=-1, verbose=False, blocks=BLOCKS):
    import vfs

    bd = ramblock.RamBlock(4096, blocks)
    vfs.VfsLfs2.mkfs(bd)
    root = ramblock.mount(bd) + "/ht"
    _log(root).close()  # first boot: key + entries 0, 1
    bd.arm(0)
    image = bd.image()
    mem = bd.mem

    # Clean run: every entry's bytes by seq (gathered before and after the prune).
    mem.seek(0)
    mem.write(image)
    bd = ramblock.RamBlock(4096, blocks, mem)
    root = ramblock.mount(bd) + "/ht"
    want = {}
    done = [None]
    log = _log(root)
    for s, b in devhelp.walk(log, log.pub):
        want[s] = b
    log.close()
    mem.seek(0)
    mem.write(image)
    bd = ramblock.RamBlock(4096, blocks, mem)
    root = ramblock.mount(bd) + "/ht"
    _script(root, done, n)
    total = bd.ops
    bd = ramblock.reboot(bd)
    for s, b in _entries(root)[0]:
        want[s] = b
    mem.seek(0)
    mem.write(image)  # the prefix the prune removed: replay up to just before the ack
    bd = ramblock.RamBlock(4096, blocks, mem)
    root = ramblock.mount(bd) + "/ht"
    log = _log(root)
    for i in range(n):
        log.reading(_R)
        if i == n // 3:
            log.set_time(1700000000)
        if i == n // 2:
            log.checkpoint(b"nonce")
        if i == 2 * n // 3 - 1:
            break
    for s, b in devhelp.walk(log):
        want[s] = b
    log.close()
    bd.arm(0)
    final = max(want)
    for s in range(final + 1):
        if s not in want:
            raise AssertionError("clean run: entry %d not captured" % s)

    checked = 0
    c = 0
    while c < total and (limit < 0 or checked < limit):
        mem.seek(0)
        mem.write(image)
        bd = ramblock.RamBlock(4096, blocks, mem)
        bd.arm(c, half)
        done[0] = None
        root = ramblock.mount(bd) + "/ht"
        try:
            _script(root, done, n)
            raise AssertionError("cut %d of %d never happened" % (c, total))
        except ramblock.PowerCut:
            pass
        try:
            bd = ramblock.reboot(bd)
            es, problems, last = _entries(root)
            if problems:
                raise AssertionError("problems: %r" % (problems,))
            for s, b in es:
                if want.get(s) != b:
                    raise AssertionError("entry %d differs from the appended one" % s)
            if done[0] is not None and (last is None or last < done[0]):
                raise AssertionError("lost entry %d that was appended" % done[0])
            head_seq = es[-1][0]
            log = _log(root)  # boot: appends a boot entry on the recovered head
            if log.altered is not None:  # a torn tail is never an alteration
                raise AssertionError("boot check reported %r" % (log.altered,))
            if log.last_seq != head_seq + 1:
                raise AssertionError("boot entry at %r, want %d" % (log.last_seq, head_seq + 1))
            after = devhelp.walk(log)  # the links hold across the boot entry
            if after[0] != es[0]:
                raise AssertionError("the boot changed the oldest entry")
            if entry.entry_hash(after[-1][1]) != log.head:
                raise AssertionError("head after boot does not match the chain")
            log.close()
            bd.arm(0)
        except Exception as e:
            raise AssertionError("cut at flash op %d/%d (half=%r, last done %r): %r" % (
                c, total, half, done[0], e))
        checked += 1
        if verbose and checked % 50 == 0:
            print("  %d/%d cuts ok" % (c + 1, total))
        c += stride
    return total, checked
