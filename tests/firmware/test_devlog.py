# The Log facade on littlefs (RAM block device): boots, chain, acks, checkpoints, full.
import hashlib

import devhelp
import dtest
import ramblock
from hashtrail import cose, devlog, entry, p256

HEAP = 1572864
CFG = {"name": "unix", "log": {"seg_records": 8, "seg_bytes": 2048, "checkpoint_every": 0,
                               "checkpoint_s": 0}}
R = [("temp", "Cel", 4.25), ("vbat", "V", 3.7)]


def _fresh(blocks=48):
    bd = ramblock.RamBlock(4096, blocks)
    return bd, ramblock.mount(bd, mkfs=True) + "/ht"


def _log(root, clock=None, cfg=CFG, cause="power_on"):
    return devlog.Log(root, "unix", "0.1.0", clock or devhelp.StepClock(), cfg, cause)


def test_first_boot_then_resume_on_the_same_chain():
    bd, root = _fresh()
    log = _log(root)
    dtest.eq((log.first_seq, log.last_seq, log.boot), (0, 1, 1))
    dtest.eq(len(log.device_id), 32)
    dtest.eq(log.device_id, log.ident.device_id_hex)
    dtest.eq(log.reading(R), 2)
    dtest.eq(log.set_time(1700000000), 3)
    dtest.eq(log.clock.now(), 1700000000)
    head = log.head
    log.close()
    bd = ramblock.reboot(bd)
    log = _log(root, cause="watchdog")
    dtest.eq((log.boot, log.last_seq, log.problems), (2, 4, []))
    es = devhelp.walk(log, log.pub)
    dtest.eq(hashlib.sha256(es[3][1]).digest(), head)
    dtest.eq(hashlib.sha256(es[4][1]).digest(), log.head)
    dtest.eq([(s, k) for s, k, _ in devhelp.kinds(es)], [
        (0, entry.KIND_KEY_CREATED), (1, entry.KIND_BOOT), (2, entry.KIND_READING),
        (3, entry.KIND_TIME_SET), (4, entry.KIND_BOOT)])
    ks = devhelp.kinds(es)
    dtest.eq(ks[0][2], {1: log.pub, 2: entry.POLICY_EVERY_ENTRY})  # signed by default
    dtest.eq(ks[2][2], [{0: "temp", 1: "Cel", 2: 4.25}, {0: "vbat", 1: "V", 2: 3.7}])
    dtest.eq(ks[3][2], {1: None, 2: 1700000000, 3: "host"})
    dtest.eq(ks[4][2], {1: "watchdog"})
    dtest.eq(devhelp.loads(es[4][1])[4], 2)  # boot counter in the entry


def test_boot_counter_survives_a_lost_state_file():
    bd, root = _fresh()
    for _ in range(3):
        _log(root).close()
    import os

    os.remove(root + "/state")
    log = _log(root)
    dtest.eq(log.boot, 4)  # taken from the last entry on flash


def test_ack_prunes_and_appends_an_ack_entry():
    # prune_on_ack on (not the default, see test_devlog_pruning.py): prune at once
    bd, root = _fresh()
    cfg = {"name": "unix", "log": dict(CFG["log"], prune_on_ack=True)}
    log = _log(root, cfg=cfg)
    for _ in range(30):
        log.reading(R)
    last = log.last_seq
    dtest.eq(log.ack(20), last + 1)
    dtest.eq(log.first_seq, 16)
    dtest.eq(log.ack(20), None)  # repeated ack: nothing new
    dtest.eq(log.ack(5), None)
    dtest.raises(ValueError, log.ack, 1000)
    es = devhelp.walk(log)
    dtest.eq(es[0][0], 16)
    dtest.eq(devhelp.kinds(es)[-1][1:], (entry.KIND_ACK, {1: 20, 2: 16}))
    log.close()
    bd = ramblock.reboot(bd)
    log = _log(root, cfg=cfg)
    dtest.eq((log.acked, log.first_seq), (20, 16))


def test_checkpoints_verify_and_are_stored():
    bd, root = _fresh()
    cfg = {"log": {"checkpoint_every": 5, "checkpoint_s": 0}}
    log = _log(root, cfg=cfg)
    for _ in range(8):
        log.reading(R)
    c = log.checkpoint(b"nonce-123")
    cps = []
    for rec in log.records(0):
        if rec[0] == 0xC7:
            from hashtrail import logstore
            blen = logstore.parse(rec)[3]
            cps.append((logstore.parse(rec)[2], bytes(rec[8:8 + blen])))
    dtest.eq([s for s, _ in cps], [4, 9, 9])  # every 5 entries, then the requested one
    dtest.eq(cps[-1][1], c)
    tag, num, (prot, unprot, payload, sig) = devhelp.loads(c)
    dtest.eq((tag, num), ("tag", 18))
    p = devhelp.loads(payload)
    dtest.eq((p[2], p[3], p[6]), (9, log.head, b"nonce-123"))
    digest = cose.sig_structure_digest(prot, payload)
    dtest.true(p256.verify(log.pub, digest, sig))


def test_time_based_checkpoint_on_tick():
    bd, root = _fresh()
    clock = devhelp.StepClock(step_ms=1000)
    log = _log(root, clock, {"log": {"checkpoint_every": 0, "checkpoint_s": 10}})
    log.tick()
    n0 = sum(1 for r in log.records(0) if r[0] == 0xC7)
    for _ in range(12):
        log.tick()
    n1 = sum(1 for r in log.records(0) if r[0] == 0xC7)
    dtest.eq((n0, n1), (0, 1))
    for _ in range(12):
        log.tick()  # nothing new since the last checkpoint: no new one
    dtest.eq(sum(1 for r in log.records(0) if r[0] == 0xC7), 1)


def test_entries_are_signed_by_default():
    dtest.eq(devlog.DEFAULTS["sign_entries"], True)
    bd, root = _fresh()
    log = _log(root, cfg={"log": {"checkpoint_every": 0}})
    log.reading(R)
    from hashtrail import logstore
    n = 0
    for rec in log.records(0):
        magic, flags, seq, blen = logstore.parse(rec)
        dtest.eq(flags, 1)
        h = hashlib.sha256(bytes(rec[8:8 + blen])).digest()
        dtest.true(p256.verify(log.pub, h, bytes(rec[8 + blen:8 + blen + 64])))
        n += 1
    dtest.eq(n, 3)
    dtest.eq(devhelp.kinds(devhelp.walk(log))[0][2][2], entry.POLICY_EVERY_ENTRY)


def test_a_board_may_switch_entry_signing_off():
    bd, root = _fresh()
    log = _log(root, cfg={"log": {"sign_entries": False, "checkpoint_every": 0}})
    log.reading(R)
    from hashtrail import logstore
    dtest.eq([logstore.parse(r)[1] for r in log.records(0)], [0, 0, 0])
    dtest.eq(devhelp.kinds(devhelp.walk(log))[0][2][2], entry.POLICY_CHECKPOINTS)


def test_flash_full_counts_readings_and_writes_an_overflow_entry():
    bd, root = _fresh(blocks=20)
    log = _log(root, cfg={"log": {"seg_records": 16, "seg_bytes": 2048,
                                  "checkpoint_every": 0}})
    seqs = []
    while True:
        s = log.reading(R)
        if s is None:
            break
        seqs.append(s)
    dtest.true(len(seqs) > 50, "only %d readings fit" % len(seqs))
    for _ in range(6):
        dtest.eq(log.reading(R), None)
    dtest.eq(log.dropped, 7)
    last = log.last_seq
    # A reboot while full: the count is in the state file, the boot entry still fits.
    log.close()
    bd = ramblock.reboot(bd)
    log = _log(root, cfg={"log": {"seg_records": 16, "seg_bytes": 2048,
                                  "checkpoint_every": 0}})
    dtest.eq((log.dropped, log.last_seq), (7, last + 1))
    dtest.eq(log.reading(R), None)
    log.ack(log.last_seq)
    ks = devhelp.kinds(devhelp.walk(log))
    dtest.eq([k[1:] for k in ks[-2:]], [(entry.KIND_OVERFLOW, {1: 8, 2: "flash_full"}),
                                         (entry.KIND_ACK, {1: last + 1, 2: log.first_seq})])
    dtest.eq(log.dropped, 0)
    dtest.true(log.reading(R) is not None)


def test_acknowledged_data_kept_until_space_is_needed():
    bd, root = _fresh(blocks=20)
    # 16 signed entries (~170 bytes each with their signature) fill one segment
    cfg = {"log": {"seg_records": 16, "seg_bytes": 3072, "checkpoint_every": 0,
                   "prune_on_ack": False}}
    log = _log(root, cfg=cfg)
    for _ in range(40):
        log.reading(R)
    log.ack(30)
    dtest.eq(log.first_seq, 0)  # still held: a second collector may want it
    n = 0
    while n < 400:
        dtest.true(log.reading(R) is not None, "dropped after %d with acked data held" % n)
        n += 1
        if log.first_seq > 0:
            break
    dtest.eq(log.first_seq, 16)
    dtest.eq(log.dropped, 0)
