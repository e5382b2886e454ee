# The device's boot check (firmware/lib/bootcheck.py, docs/FORMATS.md "Device boot
# check"): a keyless attacker rewrites the flash of a powered-off device (littlefs on a
# RAM block device, files edited as plain files, later prev links and every CRC
# recomputed: tests/firmware/devhelp.py "keyless attacker"); at the next boot the
# device finds its log no longer matches its own signatures and appends a log-altered
# entry (kind 6) naming the first seq it does not vouch for, before the boot entry,
# and never signs a checkpoint over the rewritten head without that report.
import hashlib

import devhelp
import dtest
import ramblock
from hashtrail import cose, devlog, entry, logstore, p256

HEAP = 1572864
LOG = {"seg_records": 8, "seg_bytes": 4096, "checkpoint_every": 0, "checkpoint_s": 0}
T0 = b"\xf9\x44\x40"  # 4.25 as CBOR float16: the reading the attacker changes
T1 = b"\xf9\x48\x40"  # 8.5
R = [("temp", "Cel", 4.25), ("vbat", "V", 3.7)]


def _fresh(readings=30, **log):
    bd = ramblock.RamBlock(4096, 64)
    root = ramblock.mount(bd, mkfs=True) + "/ht"
    cfg = {"log": dict(LOG, **log)}
    lg = devlog.Log(root, "unix", "0.1.0", devhelp.StepClock(), cfg, "power_on")
    for _ in range(readings):
        lg.reading(R)
    lg.close()
    return bd, root, cfg, lg


def _boot(bd, root, cfg):
    bd = ramblock.reboot(bd)
    return bd, devlog.Log(root, "unix", "0.1.0", devhelp.StepClock(), cfg, "power_on")


def _edit(root, seq, relink=True):
    segs = devhelp.flash_records(root)
    devhelp.replace_bytes(devhelp.entry_record(segs, seq)[3], T0, T1)
    devhelp.write_records(segs, relink)


def _entries(lg):
    """[(seq, kind, body)] of the entries on flash (links not checked)."""
    out = []
    for rec in lg.records(0):
        magic, _, seq, blen = logstore.parse(rec)
        if magic == logstore.ENTRY:
            m = devhelp.loads(bytes(rec[8:8 + blen]))
            out.append((seq, m[7], m[8]))
    return out


def _alert(lg):
    """(seq, body) of the log-altered entries on flash, and the kinds of all entries."""
    ks = _entries(lg)
    return [(s, b) for s, k, b in ks if k == entry.KIND_LOG_ALTERED], [k for _, k, _ in ks]


def _sig_ok(lg, seq):
    for rec in lg.records(seq):
        magic, flags, s, blen = logstore.parse(rec)
        if magic == logstore.ENTRY and s == seq:
            return bool(flags & 1) and p256.verify(
                lg.pub, hashlib.sha256(bytes(rec[8:8 + blen])).digest(),
                bytes(rec[8 + blen:8 + blen + 64]))
    return False


def _request(lg, cmd, args=b""):
    """One request line to a link.Link serving lg; the reply frame's bytes."""
    import io
    import struct
    from binascii import crc32

    from hashtrail import link

    out = io.BytesIO()
    svc = link.Link(lg, out, "unix", "0.1.0", devhelp.StepClock())
    p = bytes((1, 9, cmd)) + args
    p += struct.pack("<I", crc32(p))
    for c in b"@HT" + "".join("%02x" % c for c in p).encode() + b"\n":
        svc.feed_byte(c)
    return out.getvalue()


def _checkpoint_seqs(lg):
    return [logstore.parse(r)[2] for r in lg.records(0) if r[0] == logstore.CHECKPOINT]


def test_an_untouched_log_passes_and_nothing_is_reported():
    bd, root, cfg, lg = _fresh()
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered, None)
    alerts, ks = _alert(lg)
    dtest.eq(alerts, [])
    dtest.eq(ks[-1], entry.KIND_BOOT)


def test_edit_with_links_and_crcs_recomputed_is_reported_at_boot():
    bd, root, cfg, lg = _fresh()
    last = lg.last_seq
    _edit(root, 10)
    bd, lg = _boot(bd, root, cfg)
    devhelp.walk(lg)  # the attacker's links hold: only signatures can tell
    dtest.eq(lg.altered[:2], (10, last + 1))
    dtest.true("newest entry %d" % last in lg.altered[2], lg.altered[2])
    alerts, ks = _alert(lg)
    dtest.eq(alerts, [(last + 1, {1: 10, 2: lg.altered[2]})])
    dtest.eq(ks[-2:], [entry.KIND_LOG_ALTERED, entry.KIND_BOOT])  # before the boot entry
    dtest.true(_sig_ok(lg, last + 1))  # the report is the device's own, signed
    dtest.true(_sig_ok(lg, 9) and not _sig_ok(lg, 10))
    # Nothing the device signs covers the rewritten head without the report under it.
    lg.checkpoint(b"n")
    dtest.true(min(_checkpoint_seqs(lg)) > last + 1)


def test_edit_far_below_the_head_is_found_exactly():
    bd, root, cfg, lg = _fresh(readings=60)
    _edit(root, 3)  # 58 entries above it: more than 16, the search is a bisection
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[0], 3)


def test_edit_of_the_newest_entry():
    bd, root, cfg, lg = _fresh()
    last = lg.last_seq
    _edit(root, last)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[:2], (last, last + 1))


def test_edit_without_relinking_is_a_link_break():
    bd, root, cfg, lg = _fresh()
    _edit(root, 12, relink=False)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[0], 12)
    dtest.true("does not link" in lg.altered[2], lg.altered[2])


def test_signatures_stripped_is_an_alteration():
    bd, root, cfg, lg = _fresh()
    last = lg.last_seq
    segs = devhelp.flash_records(root)
    for _, recs in segs:
        for r in recs:
            r[4] = None  # flag bit cleared, signature gone, CRC recomputed
    devhelp.write_records(segs)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[:2], (0, last + 1))  # nothing on flash carries its signature
    dtest.true("no signature" in lg.altered[2], lg.altered[2])
    dtest.true(lg.sign_entries)  # entry 0 says every entry: the device keeps signing


def test_the_newest_signature_stripped_is_an_alteration():
    bd, root, cfg, lg = _fresh()
    last = lg.last_seq
    segs = devhelp.flash_records(root)
    devhelp.entry_record(segs, last)[4] = None
    devhelp.write_records(segs)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[:2], (last, last + 1))


def test_a_report_is_honoured_at_later_boots_without_a_duplicate():
    bd, root, cfg, lg = _fresh()
    _edit(root, 10, relink=False)  # the link break stays on flash for good
    bd, lg = _boot(bd, root, cfg)
    first = lg.altered
    lg.close()
    for _ in range(2):
        bd, lg = _boot(bd, root, cfg)
        dtest.eq(lg.altered, first)
        dtest.eq(len(_alert(lg)[0]), 1)
        lg.close()


def test_a_new_edit_after_a_report_is_reported_again():
    bd, root, cfg, lg = _fresh()
    _edit(root, 10)
    bd, lg = _boot(bd, root, cfg)
    for _ in range(5):
        lg.reading(R)
    last = lg.last_seq
    lg.close()
    _edit(root, last - 1)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[:2], (last - 1, last + 1))
    dtest.eq(len(_alert(lg)[0]), 2)


def test_truncated_tail_is_not_an_alteration():
    # Every entry left is still what the device signed: hosts catch a dropped tail
    # against the checkpoints they saw (docs/FORMATS.md "Device boot check").
    bd, root, cfg, lg = _fresh()
    segs = devhelp.flash_records(root)
    segs[-1][1][:] = segs[-1][1][:-3]
    devhelp.write_records(segs)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered, None)


def _damage_entry9(root):
    # One byte of entry 9's body (the second record of the second segment) flipped:
    # its CRC no longer holds, as after a flash fault.
    path, recs = devhelp.flash_records(root)[1]
    dtest.eq((recs[0][2], recs[1][2]), (8, 9))
    with open(path, "r+b") as f:
        f.seek(8 + len(recs[0][3]) + 64 + 4 + 8 + 20)
        b = f.read(1)
        f.seek(f.tell() - 1)
        f.write(bytes([b[0] ^ 0xFF]))


def test_damaged_record_is_a_gap_not_an_alteration():
    bd, root, cfg, lg = _fresh()
    _damage_entry9(root)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq([p[0] for p in lg.problems], ["corrupt"])
    dtest.eq(lg.altered, None)


def test_edit_before_a_damaged_record_is_still_found():
    bd, root, cfg, lg = _fresh()
    _edit(root, 4)  # relinked up to the end, then entry 9 damaged (bad CRC)
    _damage_entry9(root)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq([p[0] for p in lg.problems], ["corrupt"])
    dtest.eq(lg.altered[0], 4)


def test_checkpoint_refuses_a_head_changed_under_the_running_device():
    bd, root, cfg, lg = _fresh(readings=5, checkpoint_every=1)
    bd, lg = _boot(bd, root, cfg)
    lg.reading(R)
    n = len(_checkpoint_seqs(lg))
    edited = lg.last_seq
    lg.store.close()  # the append file is reopened by the next append
    _edit(root, edited)
    e = dtest.raises(devlog.LogAltered, lg.checkpoint, b"n")
    dtest.true(isinstance(e, ValueError))
    f = _request(lg, 0x04, b"nonce")  # CHECKPOINT over the link: ERROR 5 (device)
    dtest.eq((f[3], f[8]), (0xFF, 5))
    dtest.true(b"LogAltered" in f, f)
    dtest.eq(len(_checkpoint_seqs(lg)), n)
    # The next entry links to the entry the device wrote, not to the edited one: what
    # it signs from now on never covers the edit (a host sees the link break).
    dtest.true(lg.reading(R) is not None)
    dtest.eq(_checkpoint_seqs(lg).count(edited), 1)  # the one signed before the edit
    lg.close()
    bd, lg = _boot(bd, root, cfg)  # and the next boot reports it
    dtest.eq(lg.altered[0], edited, lg.altered[2])


# ---- a board with entry signing off (policy 0: checkpoints only) --------------------

def test_policy0_unsigned_edit_after_the_last_checkpoint_is_not_detectable():
    # What "unprotected until checkpoint N" means: the device cannot tell.
    bd, root, cfg, lg = _fresh(sign_entries=False)
    _edit(root, 20)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered, None)
    dtest.false(lg.sign_entries)


def test_policy0_link_break_is_detected():
    bd, root, cfg, lg = _fresh(sign_entries=False)
    _edit(root, 20, relink=False)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[0], 0)  # no checkpoint: nothing is vouched for
    dtest.true("does not link" in lg.altered[2], lg.altered[2])


def test_policy0_edit_under_a_checkpoint_is_detected():
    bd = ramblock.RamBlock(4096, 64)
    root = ramblock.mount(bd, mkfs=True) + "/ht"
    cfg = {"log": dict(LOG, sign_entries=False)}
    lg = devlog.Log(root, "unix", "0.1.0", devhelp.StepClock(), cfg, "power_on")
    for i in range(30):
        lg.reading(R)
        if i in (9, 19):
            lg.checkpoint()  # at seq 11 and 21
    lg.close()
    _edit(root, 15)  # covered by the checkpoint at 21, relinked to the end
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(lg.altered[0], 12)  # after the newest checkpoint that still verifies
    dtest.true("checkpoint at seq 21" in lg.altered[2], lg.altered[2])


def test_the_device_follows_its_entry0_policy_not_the_config():
    bd, root, cfg, lg = _fresh()
    bd = ramblock.reboot(bd)
    lg = devlog.Log(root, "unix", "0.1.0", devhelp.StepClock(),
                    {"log": dict(LOG, sign_entries=False)}, "power_on")
    dtest.true(lg.sign_entries)
    dtest.true(_sig_ok(lg, lg.last_seq))
    dtest.eq(lg.altered, None)


def test_checkpoint_verifies_after_a_report():
    # The device signs over its own report: its COSE checkpoint still verifies.
    bd, root, cfg, lg = _fresh()
    _edit(root, 7)
    bd, lg = _boot(bd, root, cfg)
    c = lg.checkpoint(b"nonce")
    _, _, (prot, _, payload, sig) = devhelp.loads(c)
    dtest.true(p256.verify(lg.pub, cose.sig_structure_digest(prot, payload), sig))


def _hello(lg):
    import struct

    f = _request(lg, 0x01)
    dtest.eq(f[3], 0x81)
    return devhelp.loads(f[8:8 + struct.unpack_from("<H", f, 5)[0]])


def test_hello_reports_the_alteration_to_the_host():
    bd, root, cfg, lg = _fresh()
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(_hello(lg)[12], None)
    lg.close()
    _edit(root, 10)
    bd, lg = _boot(bd, root, cfg)
    dtest.eq(_hello(lg)[12], [10, lg.altered[1], lg.altered[2]])
    lg.close()
    bd, lg = _boot(bd, root, cfg)  # still reported at the next boot
    dtest.eq(_hello(lg)[12], [10, lg.altered[1], lg.altered[2]])


def test_quick_boot_checks_the_last_segment_by_entry0s_policy():
    # boot_check off: the recovery scan, and so the walk, covers only the last segment;
    # the policy still comes from entry 0 (read from the first segment).
    bd, root, cfg, lg = _fresh(readings=30)
    last = lg.last_seq
    _edit(root, last - 2)
    cfg = {"log": dict(LOG, boot_check=False, sign_entries=False)}
    bd, lg = _boot(bd, root, cfg)
    dtest.true(lg.sign_entries)
    dtest.eq(lg.altered[:2], (last - 2, last + 1))


def test_an_old_checkpoints_only_log_stays_unsigned_under_the_new_default():
    # A log made with signing off (policy 0 in entry 0), booted with the default config
    # (sign_entries on): the device keeps to its entry 0, no false report.
    bd, root, cfg, lg = _fresh(sign_entries=False)
    bd, lg = _boot(bd, root, {"log": dict(LOG)})
    dtest.false(lg.sign_entries)
    dtest.eq(lg.altered, None)
    dtest.false(_sig_ok(lg, lg.last_seq))


def test_policy_downgrade_in_entry0_is_seen_only_through_a_checkpoint():
    # Someone with the flash rewrites entry 0 to policy 0, strips every signature and
    # recomputes every link: the device now checks by policy 0. A checkpoint record
    # left on flash no longer matches its entry; with the checkpoints removed too,
    # nothing on the device can tell (hosts that saw entry 0 or a checkpoint can).
    def downgrade(root, drop_checkpoints):
        segs = devhelp.flash_records(root)
        body0 = devhelp.entry_record(segs, 0)[3]
        dtest.eq(body0[-2:], b"\x02\x01")  # ... 2: POLICY_EVERY_ENTRY, last in entry 0
        body0[-1] = 0
        for _, recs in segs:
            for r in recs:
                r[4] = None
            if drop_checkpoints:
                recs[:] = [r for r in recs if r[0] == logstore.ENTRY]
        devhelp.write_records(segs)

    for drop in (False, True):
        bd, root, cfg, lg = _fresh(readings=20, checkpoint_every=8)
        downgrade(root, drop)
        bd, lg = _boot(bd, root, cfg)
        dtest.false(lg.sign_entries)
        if drop:
            dtest.eq(lg.altered, None)
        else:
            dtest.true("does not match" in lg.altered[2], lg.altered[2])


def test_refusing_checkpoints_again_and_again_does_not_grow_the_heap():
    # MicroPython appends each raise's traceback to the exception object: a reused
    # exception instance would grow with every refused automatic checkpoint.
    import gc

    bd, root, cfg, lg = _fresh(readings=5)
    bd, lg = _boot(bd, root, cfg)
    lg.store.close()
    _edit(root, lg.last_seq - 1)  # the newest is the boot entry: edit the reading before
    segs = devhelp.flash_records(root)
    r = devhelp.entry_record(segs, lg.last_seq)
    r[3][-2] ^= 0x20  # and the boot entry itself, relinked: the head no longer matches
    devhelp.write_records(segs)
    for _ in range(20):
        lg._auto_checkpoint()
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(200):
        lg._auto_checkpoint()
    gc.collect()
    dtest.true(gc.mem_alloc() - before < 512, "grew %d B" % (gc.mem_alloc() - before))
    dtest.eq(_checkpoint_seqs(lg), [])
