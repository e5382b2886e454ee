# Steady-state heap of the log at the board budget (esp32: 100 KB), on a file-backed
# 2 MB littlefs (firmware/lib/blockdev_file.py, what the virtual board uses), so the
# flash contents do not sit on the VM heap. The test fails if the live heap after
# gc.collect() grows from one sampling interval to the next.
import gc
import os

import devhelp
import dtest
import vfs
from hashtrail import blockdev_file, devlog

BOARD = "esp32"
TIMEOUT = 600
_N = 3000
_EVERY = 500
_SLACK = 512  # bytes: allocator granularity, not a per-append leak (6 bytes/append)


def _mount(name):
    try:
        os.remove(name)
    except OSError:
        pass
    bd = blockdev_file.FileBlock(name, 4096, 512)
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/hf")
    return bd


def _run(cfg):
    bd = _mount("heap.img")
    log = devlog.Log("/hf/ht", "esp32", "0.1.0", devhelp.StepClock(1700000000), cfg)
    readings = [("mcu_temp", "Cel", 41.5), ("adc0", "V", 1.234)]
    samples = []
    for i in range(1, _N + 1):
        readings[0] = ("mcu_temp", "Cel", 40.0 + (i % 50) / 10)
        if log.reading(readings) is None:
            dtest.fail("reading %d dropped" % i)
        if i % 250 == 0:
            log.ack(log.last_seq - 10)
        if i % _EVERY == 0:
            n = 0
            for rec in log.records(log.first_seq):  # serve the log once, streaming
                n += 1
            gc.collect()
            samples.append(gc.mem_alloc())
    log.close()
    vfs.umount("/hf")
    bd.close()
    print("heap samples", samples)
    base = samples[1]  # after the first sample every buffer exists
    for s in samples[2:]:
        if s > base + _SLACK:
            dtest.fail("heap grows: %r" % (samples,))
    return samples


def test_heap_flat_over_thousands_of_appends():
    _run({"log": {"seg_records": 64, "checkpoint_every": 100}})


def test_heap_flat_with_signed_entries_and_flush_every_8():
    _run({"log": {"seg_records": 64, "checkpoint_every": 0, "sign_entries": True,
                  "flush_every": 8}})
