# Boot-only part of devlog.py: what devlog.Log does once, when it opens the log
# (recovery, identity, state file, the boot check, the boot's own entries).
#
# Why a module of its own: this code runs once per boot, while the heap is the device's
# scarcest resource (boards/esp32.json: 100 KB for everything, the app with MQTT and a
# signature in flight just inside it). Log.__init__ imports it, runs boot() and drops it
# again (hashtrail.drop), so its code is not resident while the app runs: 1.6-1.7 KB
# more free heap after boot on the unix port, console-only or with MQTT (tests/firmware/
# test_app_mqtt.py, test_app_budget.py). app.py loads it beside devlog, before the
# log's long-lived buffers are made (app.py: "one contiguous block"), so its code is not
# placed where those buffers should go.
# It gets the log as an argument; devlog's API (devlog.py) is unchanged.
#
#   boot(log, root, board_name, fw_version, clock, cfg, reset_cause)
#       everything Log.__init__ did after merging the config into cfg
#   boot_walk(sign_cfg), boot_verdict(store, wk, pub, device_id)   the boot check's
#       two halves (tools/bench_append.py times them)
#   boot_of(b)   the boot counter of canonical entry bytes
import hashlib
import os
import struct
from binascii import crc32

from micropython import const

from hashtrail import devlog, drop, entry, logstore, p256
from hashtrail.cbor import Writer

_STATE_LEN = const(20)  # devlog.py: magic 4 | boot u32 | acked u32 | dropped u32 | crc32
_NONE32 = const(0xFFFFFFFF)


def boot_walk(sign_cfg):
    """The boot check's walk (bootcheck.Walk), made by LogStore(observe=...) when there
    is a log: it sees every record the recovery scan reads. bootcheck is boot-only:
    dropped at once, its code lives as long as the walk object does."""
    try:
        from hashtrail import bootcheck

        return bootcheck.Walk(sign_cfg)
    finally:
        drop("bootcheck")


def boot_verdict(store, wk, pub, device_id):
    """None, or (first_seq, reason) of a new alteration (docs/FORMATS.md "Device boot
    check"), from wk = the walk's result(store).

    The common case, every entry signed, links intact, no gap: the newest entry's own
    signature covers the whole log, one ECDSA verify. Anything else goes to
    bootfind.decide (boot-only, imported and dropped again)."""
    if wk[0] and wk[5] is None and not wk[6] and wk[4] is not None and \
            p256.verify(pub, wk[3], wk[4]):
        return None
    try:
        from hashtrail import bootfind

        return bootfind.decide(store, pub, device_id, wk)
    finally:
        drop("bootfind")


def _uint_at(b, i):
    """(value, next offset) of the CBOR unsigned int (or null -> None) at b[i]."""
    ib = b[i]
    if ib == 0xF6:
        return None, i + 1
    if ib >> 5:
        raise ValueError("not a uint")
    ai = ib & 31
    if ai < 24:
        return ai, i + 1
    n = 1 << (ai - 24)
    v = 0
    for k in range(i + 1, i + 1 + n):
        v = (v << 8) | b[k]
    return v, i + 1 + n


def boot_of(b):
    """The boot counter (key 4) of canonical entry bytes b: keys 0..4 come first."""
    if b[0] != 0xA9:
        raise ValueError("not an entry")
    i = 1
    v = None
    for key in range(5):
        k, i = _uint_at(b, i)
        if k != key:
            raise ValueError("not an entry")
        v, i = _uint_at(b, i)
    return v


def _read_state(log):
    try:
        with open(log.root + "/state", "rb") as f:
            raw = f.read()
    except OSError:
        return 0, None, 0
    if len(raw) != _STATE_LEN or raw[:4] != devlog._STATE_MAGIC or crc32(raw[:16]) != \
            struct.unpack_from("<I", raw, 16)[0]:
        log.store.problems.append(("state", None, "state", 0))
        return 0, None, 0
    boot, acked, dropped = struct.unpack_from("<III", raw, 4)
    return boot, (None if acked == _NONE32 else acked), dropped


def boot(self, root, board_name, fw_version, clock, cfg, reset_cause):
    # `self` is the devlog.Log being made (this was its __init__).
    self.cfg = cfg
    self.root = root
    self.board = board_name
    self.fw = fw_version
    self.clock = clock
    self.sign_entries = bool(cfg["sign_entries"])
    self._cp_every = int(cfg["checkpoint_every"])
    self._cp_ms = int(cfg["checkpoint_s"]) * 1000
    self._prune_on_ack = bool(cfg["prune_on_ack"])
    # The long-lived buffers first (this entry buffer, then the store's, made
    # before its recovery scan), the identity check last: its bigints and the
    # scan's temporaries leave small holes between the few objects kept, and
    # MicroPython's GC never moves objects, so a 1 KB buffer made after them may
    # find no room near the heap budget (tests/firmware/test_app_budget.py).
    # One entry buffer for every append (entry + the store's own record buffer).
    self._w = Writer(bytearray(int(cfg["max_body"])))
    self._mv = memoryview(self._w.buf)
    try:
        os.mkdir(root)
    except OSError:
        pass
    # The store only reads and repairs what is on flash; nothing is appended before
    # the identity is checked, and a missing key under existing segments is still
    # refused (keyfile.load_or_create sees the same segment files).
    # The boot check's walk rides on the recovery scan (no second pass over the
    # flash); its result is plain data, and the walk (with bootcheck's code) is
    # garbage before the identity check.
    sign = self.sign_entries
    self.store = logstore.LogStore(
        root, seg_records=int(cfg["seg_records"]), seg_bytes=int(cfg["seg_bytes"]),
        max_body=int(cfg["max_body"]), flush_every=int(cfg["flush_every"]),
        flush_ms=int(cfg["flush_s"]) * 1000, boot_check=bool(cfg["boot_check"]),
        observe=lambda: boot_walk(sign))
    walk = self.store.observed
    self.store.observed = None
    wk = None if walk is None or self.store.last_seq is None else \
        walk.result(self.store)
    walk = None
    self.problems = self.store.problems
    try:
        from hashtrail import keyfile

        self.ident = keyfile.load_or_create(root)
    except Exception:
        self.store.close()
        raise
    finally:
        keyfile = None
        drop("keyfile")
    self.pub = self.ident.pub
    self.device_id = self.ident.device_id_hex
    boot, acked, dropped = _read_state(self)
    last = self.store.last_entry()
    if last is None:
        self._next = 0
        self._head = entry.genesis_prev(self.pub)
    else:
        self._next = self.store.last_seq + 1
        self._head = hashlib.sha256(last).digest()
        try:
            boot = max(boot, boot_of(last))
        except (ValueError, IndexError):
            pass
    last = None
    self.boot = boot + 1
    self.acked = acked
    self.dropped = dropped
    self._since_cp = 0
    self._cp_at = clock.uptime_ms()
    # The boot check, before anything is appended: the log against the device's
    # own signatures (bootcheck.py). The device follows the policy its entry 0
    # records (as hosts do), whatever the config says now; the config counts
    # only for a new log or one whose entry 0 was pruned.
    self.altered = None
    found = None
    alerts = ()
    if wk is not None:
        self.sign_entries = wk[0]
        alerts = wk[8]
        found = boot_verdict(self.store, wk, self.pub, self.ident.device_id)
        wk = None
        drop("p256v")  # the boot's verifying is done: the app only signs (p256.verify)
    self._write_state()
    if self._next == 0:
        self._append(entry.KIND_KEY_CREATED, entry.key_body(
            self.pub, entry.POLICY_EVERY_ENTRY if self.sign_entries
            else entry.POLICY_CHECKPOINTS), True)
    if found is not None:
        seq = self._append(entry.KIND_LOG_ALTERED, entry.altered_body(*found), True)
        self.altered = (found[0], seq, found[1])
    elif alerts:
        self.altered = alerts[-1]  # reported at an earlier boot: still not vouched for
    self._append(entry.KIND_BOOT, entry.boot_body(reset_cause), True)
