# Pruning policy with the default config (docs/STORAGE.md "Pruning and flash full"):
# acknowledged data stays on flash until space is needed, so one collector's ACK never
# takes data from a second collector that has not read it yet; when the flash fills,
# the oldest acknowledged segments go first, for readings and for every other entry.
import devhelp
import dtest
import ramblock
from hashtrail import devlog, entry

HEAP = 1572864
# 16 entries a segment: a signed reading is ~170 bytes with its 64-byte signature
SMALL = {"seg_records": 16, "seg_bytes": 3072, "checkpoint_every": 0, "checkpoint_s": 0}
R = [("temp", "Cel", 4.25), ("vbat", "V", 3.7)]


def _log(blocks=20, log_cfg=SMALL):
    bd = ramblock.RamBlock(4096, blocks)
    root = ramblock.mount(bd, mkfs=True) + "/ht"
    cfg = {"name": "unix", "log": dict(log_cfg)}
    return devlog.Log(root, "unix", "0.1.0", devhelp.StepClock(), cfg, "power_on")


def test_default_keeps_acknowledged_data_for_a_second_collector():
    dtest.eq(devlog.DEFAULTS["prune_on_ack"], False)
    log = _log(blocks=48)
    for _ in range(40):
        log.reading(R)
    log.ack(35)                       # collector A has everything up to 35
    dtest.eq(log.first_seq, 0)        # ... collector B can still read from 0
    es = devhelp.walk(log, log.pub)
    dtest.eq(es[0][0], 0)
    dtest.eq(devhelp.kinds(es)[-1][1:], (entry.KIND_ACK, {1: 35, 2: 0}))


def test_full_flash_prunes_oldest_acknowledged_first_and_loses_nothing():
    log = _log()
    for _ in range(40):
        log.reading(R)
    log.ack(30)
    firsts = [0]
    for _ in range(300):
        dtest.true(log.reading(R) is not None, "a reading was dropped with acked data held")
        if log.first_seq != firsts[-1]:
            firsts.append(log.first_seq)
        if log.first_seq > 0:
            break
    dtest.eq(firsts, [0, 16])         # one segment at a time, oldest first, all <= 30
    dtest.eq(log.dropped, 0)
    devhelp.walk(log)                 # what is left still chains


def test_unacknowledged_data_is_never_pruned():
    log = _log()
    n = 0
    while log.reading(R) is not None:
        n += 1
    dtest.eq(log.first_seq, 0)        # full, nothing acked: nothing deleted
    dtest.eq(log.reading(R), None)
    dtest.eq(log.dropped, 2)          # the loss is counted, on record later


def test_other_entries_also_make_room_from_acknowledged_data():
    # Full of unacknowledged readings, then an ACK: time-set, ack and checkpoint
    # entries (allowed into the reserve) must prune acknowledged data when the reserve
    # is used up too, instead of failing with LogFull while acked data sits on flash.
    log = _log()
    while log.reading(R) is not None:
        pass
    acked = log.last_seq
    log.ack(acked)
    for i in range(400):                 # LogFull here: acked data was left unused
        log.set_time(1700000000 + i)
        log.checkpoint(b"n%d" % i)
        if log.first_seq > 0:
            break
    dtest.true(log.first_seq > 0, "acknowledged data was pruned to make room")
    dtest.true(log.first_seq <= acked + 1)
    log.set_time(1800000000)             # and there is room again
    devhelp.walk(log)
