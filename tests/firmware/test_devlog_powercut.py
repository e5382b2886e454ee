# Power cuts through the whole Log: boot entry, readings, time set, checkpoint, ack +
# prune, state file (tests/firmware/powercut_log.py). In the suite: every flash
# operation, clean cuts and half-programmed writes; tools/powercut_sweep.py does all.
import dtest
import powercut_log

HEAP = 1048576
TIMEOUT = 600


def test_log_survives_cuts_at_every_flash_write():
    total, checked = powercut_log.sweep(n=40, stride=1)
    dtest.true(total > 250, "script too small: %d ops" % total)
    dtest.eq(checked, total)


def test_log_survives_half_programmed_writes():
    total, checked = powercut_log.sweep(n=40, stride=1, half=True)
    dtest.eq(checked, total)
