# Boot-only part of devlog.py and app.py: what devlog.Log does once, when it opens the
# log (recovery, identity, state file, the boot check, the boot's own entries), and what
# app.App does once, at boot (board definition, board layer, sensors, log, links,
# watchdog).
#
# Why a module of its own: this code runs once per boot, while the heap is the device's
# scarcest resource (boards/esp32.json: 100 KB for everything, the app with MQTT and a
# signature in flight just inside it). Log.__init__ and App.__init__ import it, run
# boot() or start() and drop it again (hashtrail.drop), so its code is not resident
# while the app runs: 2.7 KB more free heap after boot on the unix port, console-only
# or with MQTT (tests/firmware/test_app_mqtt.py, test_app_budget.py). (App's start()
# makes the Log, whose __init__ drops this module while start() runs on: harmless, a
# running function keeps its module's globals.) One module for both, not two: every
# module brings ~4 names interned for good (its name, its dotted name, its source and
# its file path), and the boot after a keyless flash rewrite with MQTT must fit the qstr
# pools made before it (docs/MQTT.md "Heap", tests/e2e/test_mqtt_tamper_boot.py).
# It gets the log or the app as an argument; the APIs of devlog.py and app.py are
# unchanged.
#
#   boot(log, root, board_name, fw_version, clock, cfg, reset_cause)
#       everything Log.__init__ did after merging the config into cfg
#   start(app, root, cfg_path, inp, out)   everything App.__init__ did
#   boot_walk(sign_cfg), boot_verdict(store, wk, pub, device_id)   the boot check's
#       two halves (tools/bench_append.py times them)
#   boot_of(b)   the boot counter of canonical entry bytes
import hashlib
import os
import struct
import sys
from binascii import crc32

from micropython import const

from hashtrail import drop

# The modules the log needs (devlog, logstore, entry, cbor, p256) are imported where
# they are used, not here: App's start() loads this module first, and those must load
# where they did before, inside app's layout block ("one contiguous block" below).

_STATE_LEN = const(20)  # devlog.py: magic 4 | boot u32 | acked u32 | dropped u32 | crc32
_NONE32 = const(0xFFFFFFFF)
_WDT_MS = const(30000)  # app.py: watchdog timeout when board.json gives none


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
    from hashtrail import p256

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
    from hashtrail import devlog

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
    from hashtrail import entry, logstore
    from hashtrail.cbor import Writer

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


def start(self, root, cfg_path, inp, out):
    # `self` is the app.App being made (this was its __init__).
    import gc

    from hashtrail import app, boardcfg

    cfg, layer = boardcfg.load(cfg_path)
    # The parsed board definition takes about 4 KB of heap and boardcfg 1.7 KB:
    # take what the app needs, build the sensors, then drop both before the log
    # and the link make their long-lived buffers.
    drop("boardcfg")
    # The layer is named at run time (board_esp32 / board_unix): a non-empty
    # fromlist makes __import__ return hashtrail.<layer> itself, not the package.
    board = __import__("hashtrail." + layer, None, None, (layer,))
    name = cfg["name"]
    self.cfg = {"name": name}
    self.clock = app._IntClock(board.Clock())
    self.sensors = board.sensors(cfg)
    wdt_ms = int(cfg.get("watchdog_ms", _WDT_MS)) if cfg.get("watchdog") else 0
    self.interval = int(float(cfg.get("sample_interval_s", 10)) * 1000)
    chunk = int(cfg.get("link_chunk", 512))
    log_cfg = {"log": cfg.get("log")}
    body = int((log_cfg["log"] or {}).get("max_body", 1024))
    reset_cause = board.reset_cause()
    mqtt_cfg = cfg.get("mqtt")
    net = board.network(cfg) if mqtt_cfg else None
    cfg = boardcfg = None
    # MicroPython's GC never moves objects. Loading modules leaves many small holes
    # between the code it keeps, and so do the identity check's bigints and the
    # recovery scan, so near the budget a 1 KB buffer made after them finds no
    # room although the heap has 15 KB free. The long-lived buffers (the log's
    # entry and record buffers, the link's frame and line buffers) therefore get
    # one contiguous block, held while the modules load and released just before
    # they are made; the log makes them before its boot work (devlog.Log).
    gc.collect()
    try:
        room = bytearray(chunk + body * 3 + 1024)
    except MemoryError:
        room = None  # the block is a layout aid, not a need: boot without it
    # p256 too (the log signs with it; devlog itself does not import it): its code
    # goes with the others.
    from hashtrail import devlog, link, p256  # noqa: F401

    room = p256 = None
    gc.collect()
    self.inp = inp if inp is not None else sys.stdin.buffer
    out = out if out is not None else sys.stdout.buffer
    self.link = link.Link(None, out, name, app.FW_VERSION, self.clock, chunk=chunk)
    self._one = bytearray(1)
    self.log = devlog.Log(root, name, app.FW_VERSION, self.clock, log_cfg,
                          reset_cause=reset_cause)
    self.link.log = self.log
    # A switched-in update waits behind the marker (its entry, then cleanup); an
    # update boot.py took back, behind update.reverted (its entry); a full-image
    # update, behind update.img (its entry and confirmation, or its roll-back's). The common
    # boot has neither and fwboot is not loaded at all (heap: with MQTT at the
    # 100 KB budget every loaded module counts, see below).
    pending = False
    for p in ("/update", "/update.reverted", "/update.img"):
        try:
            os.stat(root + p)
            pending = True
        except OSError:
            pass
    if pending:
        from hashtrail import fwboot

        fwboot.finish(self.log, root)
        drop("fwboot")
    self.mqtt = None
    if mqtt_cfg:
        # Loaded and made once the log has booted: the boot check's peak (bigints,
        # the recovery scan, boot-only modules, all dropped by now) does not have to
        # fit beside the MQTT client's ~9 KB (measured at 100 KB: boot fails with it
        # loaded first, the whole run passes with it loaded here). Its names must
        # fit the qstr pools made before the boot: a pool grown here is one block of
        # ~7 KB (unix port) in a fragmented heap (docs/MQTT.md "Heap").
        gc.collect()
        from hashtrail import mqttlink

        self.mqtt = mqttlink.MqttLink(name, app.FW_VERSION, self.clock, mqtt_cfg,
                                      chunk=chunk, net=net)
        self.mqtt.attach(self.log)
    net = mqtt_cfg = None
    # The watchdog starts once the log is open: a boot check of a long log can take
    # longer than its timeout.
    self.wdt = board.watchdog(wdt_ms) if wdt_ms else None
    board = None
    self.samples = 0
