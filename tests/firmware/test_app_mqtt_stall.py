# A broker that stalls cannot hold the device loop: the real app, at the MQTT heap the
# other app test runs at, against a real TCP server (vectors_mqtt.make_stall_broker, in
# the pytest process) that stalls it three ways in a row:
#   0  accepts the TCP connection and never answers the CONNECT,
#   1  completes CONNECT/SUBSCRIBE, then sends 3 bytes of a 50-byte PUBLISH and stops,
#   2  completes them, sends a HELLO request, never acknowledges the reply (no PUBACK),
# then accepts and stays silent. Without a socket timeout each of these blocks umqtt's
# read for good (on a board: until the watchdog resets it). Checked here: every loop
# pass ends within a few socket timeouts (board_stall.json: 0.5 s), the link drops each
# stalled connection and tries again, and the app keeps sampling meanwhile, at the
# board's heap budget with a floor of free heap (measured after gc.collect() every
# 200 ms, as in test_app_mqtt.py: @@APPHEAP).
import gc
import io
import os
import time

import dtest
import vfs

# The esp32 budget, 100 KB. This test ran at 104 KB while its flash (the firmware's
# blockdev_file, virtual boards only) held a block-sized 4 KB erase buffer in the same
# heap: at 100 KB about half the runs lost a reading's signature (MemoryError, 66
# bytes). test_app_mqtt.py's own block device never had that buffer (docs/MQTT.md "Heap").
BOARD = "esp32"
TIMEOUT = 120
NEEDS = ("stall_broker",)
MARKS = ("e2e",)
_MAX_GAP_MS = 2000  # 4 x the 0.5 s timeout: connect's worst case (mqttlink "Stalls")
_MIN_FREE = 8 * 1024  # after gc, at the worst measured point (11.2-11.8 KB measured)
_MEASURE_MS = 200


def _no_errors(what, e):
    raise AssertionError("the app hit an error (%s): %s: %s" % (what, type(e).__name__, e))


class Console(io.IOBase):
    """The app's console, never readable; its poll hook times the loop passes."""

    def __init__(self):
        self.app = None
        self.last = time.ticks_ms()
        self.gap = 0
        self.done_at = None
        self.samples_at_drop = 0
        self.next_check = 0
        self.min_free = 1 << 30

    def ioctl(self, req, arg):
        if req == 10:
            return -1
        if req != 3 or self.app is None:
            return 0
        now = time.ticks_ms()
        self.gap = max(self.gap, time.ticks_diff(now, self.last))
        if time.ticks_diff(now, self.next_check) >= 0:
            gc.collect()
            self.min_free = min(self.min_free, gc.mem_free())
            self.next_check = time.ticks_add(time.ticks_ms(), _MEASURE_MS)
        self.last = time.ticks_ms()
        m = self.app.mqtt
        if self.done_at is None and m.drops >= 2:
            self.done_at = now  # scenario 2 dropped: watch one more stalled connect
            self.samples_at_drop = self.app.samples
        if self.done_at is not None and time.ticks_diff(now, self.done_at) > 1500:
            raise KeyboardInterrupt
        return 0

    def readinto(self, buf):
        return 0

    def write(self, b):
        dtest.fail("the app wrote %d bytes to the console" % len(b))


def test_a_stalled_broker_never_holds_the_loop():
    run("board_stall.json")


def run(cfg_path):
    """The three stalls against the app booted from `cfg_path` (test_app_mqtt_stall_tls.py
    runs them over TLS)."""
    os.chdir(dtest.DATA_DIR)
    from hashtrail import blockdev_file

    try:
        os.remove("stall.img")
    except OSError:
        pass
    bd = blockdev_file.FileBlock("stall.img", 4096, 128)
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/fl")
    from hashtrail import app

    app._log_error = _no_errors
    h = Console()
    a = app.App(root="/fl/ht", cfg_path=cfg_path, inp=h, out=h)
    h.app = a
    h.last = time.ticks_ms()
    t0 = time.ticks_ms()
    try:
        a.run(poll_src=h)
    except KeyboardInterrupt:
        pass
    took = time.ticks_diff(time.ticks_ms(), t0)
    m = a.mqtt
    print("stall: %d ms, longest pass %d ms, connects %d, drops %d, last error %r" % (
        took, h.gap, m.connects, m.drops, m.last_error))
    dtest.eq(m.connects, 2, "handshakes completed (scenarios 1 and 2)")
    dtest.eq(m.drops, 2, "both connected stalls dropped")
    dtest.eq(m.link.requests, 1, "scenario 2's HELLO served (its reply's PUBACK never came)")
    dtest.true(h.gap <= _MAX_GAP_MS, "a loop pass took %d ms" % h.gap)
    dtest.true(a.samples > h.samples_at_drop, "sampling went on after the stalls")
    vfs.umount("/fl")
    print("@@APPHEAP min_free=%d" % h.min_free)
    dtest.true(h.min_free >= _MIN_FREE, "headroom %d < %d bytes" % (h.min_free, _MIN_FREE))
