# A full-image update received by the running app at the board's heap budget, against
# the simulated esp32.Partition (esp32sim.py); power cuts and refusals: test_update_image.py.
#
# - test_image_update_while_logging_at_board_budget: the real app.App and its main loop at
#   the esp32 budget (as test_update_budget.py, whose scripted host and block device it
#   uses), the host sending a 120,000-byte image package in UPDATE DATA lines between
#   readings, then COMMIT; the heap sampled after gc.collect() at every reply
#   ("@@IMGHEAP min_free="). Then the reset: the simulated bootloader starts the new
#   image, whose app (FW_VERSION 0.2.0) boots at the same budget and confirms itself.
import gc
import os
import sys

import dtest
import esp32sim
import vfs
from test_update_budget import Host, _FileBlock, _no_errors, _put

# The harness (this module, test_update_budget's host and block device, the simulator, all
# compiled from source: 43,680 B measured) shares the VM's heap, so the firmware gets
# HEAP - harness, ~87 KB, checked to be within the budget below: a stricter test than
# the budget. Smallest VM heaps, 6 runs each: 127,488 B completed every run (~83.8 KB
# for the firmware), 125,952 failed 1 of 6 and 123,904 5 of 6, in the manifest check,
# the peak (as in test_update_budget.py). Before updpin, the early updcheck and the
# width-4 verify, 129,024 failed 4 of 6, and this test failed once at 131,072 in CI.
HEAP = 131072
_BUDGET = 102400
TIMEOUT = 600
NEEDS = ("app_board", "image_packages")
_MIN_FREE = 4 * 1024
_PART = 131072


class _Machine:
    @staticmethod
    def reset():
        raise SystemExit


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def test_image_update_while_logging_at_board_budget():
    os.chdir(dtest.DATA_DIR)
    bd = _FileBlock("img.img")
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/fl")
    for d in ("/fl/lib", "/fl/ht"):
        os.mkdir(d)
    with open(dtest.data("update_pub.bin"), "rb") as f:
        _put("/fl/ht/release_keys", f.read())
    with open(dtest.data("image_old.bin"), "rb") as f:
        esp32sim.install(dtest.data("budget"), _PART, f.read())
    esp32sim.boot()
    sys.modules["machine"] = _Machine
    from hashtrail import app

    app._log_error = _no_errors
    host = Host(dtest.data("image_large.htu"))
    ready = open("/dev/zero", "rb")
    gc.collect()
    harness = gc.mem_alloc()
    dtest.true(HEAP - harness <= _BUDGET, "the firmware got %d bytes, more than the "
               "budget" % (HEAP - harness))
    a = app.App(root="/fl/ht", cfg_path="board.json", inp=host, out=host)
    host.measure()
    booted = host.min_free
    try:
        a.run(poll_src=ready)
        dtest.fail("the app did not reset after COMMIT")
    except SystemExit:
        pass
    dtest.true(host.committed, "COMMIT answered")
    dtest.true(a.samples > 100, "the app kept sampling during the transfer (%d)" % a.samples)
    dtest.false("hashtrail.update" in sys.modules, "update dropped after COMMIT")
    dtest.false("hashtrail.board_ota" in sys.modules, "board_ota dropped after COMMIT")
    dtest.eq([s[0] for s in esp32sim.SET_BOOT], ["ota_1"])
    dtest.true(_exists("/fl/ht/update.img"), "marker committed")
    print("@@IMGHEAP min_free=%d booted_free=%d harness=%d replies=%d samples=%d" % (
        host.min_free, booted, harness, host.replies, a.samples))
    dtest.true(host.min_free >= _MIN_FREE, "headroom %d < %d" % (host.min_free, _MIN_FREE))
    a = host = None
    gc.collect()
    # The reset: the bootloader starts the new image; its app boots at the same budget.
    esp32sim.boot()
    dtest.eq(esp32sim.version(), "0.2.0")
    app.FW_VERSION = "0.2.0"  # what the new image's frozen app says
    a = app.App(root="/fl/ht", cfg_path="board.json", inp=ready, out=sys.stdout.buffer)
    gc.collect()
    print("@@IMGHEAP after_confirm_free=%d" % gc.mem_free())
    dtest.eq(esp32sim.state("ota_1"), esp32sim.VALID, "confirmed at its first boot")
    dtest.false(_exists("/fl/ht/update.img"), "marker removed")
    dtest.false("hashtrail.board_ota" in sys.modules, "board_ota dropped after the finish")
    a.log.close()
    ready.close()
    vfs.umount("/fl")
