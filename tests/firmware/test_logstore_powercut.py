# Power cut at every single flash operation of a run of appends (tests/firmware/powercut.py).
# The full sweep with both cut modes and longer scripts is tools/powercut_sweep.py.
import dtest
import powercut

HEAP = 1048576
TIMEOUT = 600


def test_cut_at_every_flash_write():
    total, checked = powercut.sweep(n_entries=60)
    dtest.eq(checked, total)
    dtest.true(total > 100, "script too small to mean anything: %d ops" % total)
    print("power-cut sweep: %d cut points, all recovered" % checked)


def test_cut_in_the_middle_of_a_write():
    # The interrupted program leaves half its bytes on flash (a torn page).
    total, checked = powercut.sweep(n_entries=60, stride=1, half=True)
    dtest.eq(checked, total)
