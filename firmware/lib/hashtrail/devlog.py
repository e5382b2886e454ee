# The device's log facade: identity + hash chain + flash store, what main.py and the
# serial service (link.py) use. Formats: docs/FORMATS.md; durability: docs/STORAGE.md.
#
# API (stable; link.py and main.py code against it)
#   log = Log(root, board_name, fw_version, clock, config, reset_cause="unknown")
#       Recovers the store (logstore.LogStore: torn tail cut, problems listed), opens
#       the identity (keyfile.load_or_create: first boot makes the key; a missing key
#       under existing segments is refused before anything is written), resumes the chain
#       on the last complete entry, bumps the boot counter (<root>/state) and appends:
#       on first boot a key-created entry (seq 0), on every boot a boot entry.
#       Before the first append, the boot check checks the log against the device's
#       signatures: bootcheck.Walk sees every record the store's recovery scan reads,
#       then one ECDSA verify of the newest entry (or bootfind.decide when that is not
#       enough); both modules are boot-only. When it fails, a log-altered entry comes
#       before the boot entry.
#   boot_walk(sign_cfg), boot_verdict(store, wk, pub, device_id)   the boot check's
#       two halves (Log runs them; tools/bench_append.py times them)
#       clock: .now() -> unix seconds or None (never set), .uptime_ms(), .set(t)
#       config: the board definition dict; its optional "log" dict overrides DEFAULTS.
#   log.device_id (32 hex chars)  log.pub (65 bytes)  log.boot (int)
#   log.first_seq  log.last_seq (None when empty)  log.head (32 bytes, entry_hash of
#       last_seq)  log.acked (None or seq)  log.dropped (readings not recorded yet)
#   log.problems     store problems found at boot: [(what, seq, segment, offset)]
#   log.altered      None, or (first_seq, alert_seq, reason): the boot check found the
#       log no longer matches the device's signatures (bootcheck.py) and appended a
#       log-altered entry (kind 6) at alert_seq, or found one from an earlier boot;
#       entries first_seq .. alert_seq - 1 are not vouched for by the device.
#   log.sign_entries whether entries are signed: entry 0's policy when held, else the
#       config's sign_entries (a device follows the policy its entry 0 records)
#   log.append(kind, body) -> seq            any entry kind (body as entry.encode takes)
#   log.reading(readings) -> seq or None     readings: [(name, unit or None, value)];
#       None when the flash is full: the reading is counted (log.dropped, persisted in
#       the state file) and an overflow entry {missed, "flash_full"} is appended as soon
#       as there is room again, before the next entry, so nothing is lost silently.
#   log.set_time(t) -> seq                   sets the clock, appends a time-set entry
#   log.checkpoint(nonce=None) -> bytes      COSE_Sign1 over the head; also stored as a
#       0xC7 record when there is room. Raises LogAltered (a ValueError) instead
#       when the newest entry on flash no longer hashes to the head the device holds.
#       Automatic ones every config checkpoint_every entries / checkpoint_s seconds
#       (no nonce).
#   log.ack(seq)     host has seq and everything before: persists it, prunes segments
#       that are entirely <= seq (when prune_on_ack), appends an acknowledged entry
#       {seq, first seq still held}. A seq at or below the last ack is ignored.
#   log.records(from_seq=0) generator of raw records (memoryviews into one reused
#       buffer: entries with seq >= from_seq and the checkpoints after them)
#   log.free_bytes()  log.tick() (time-based flush and checkpoints)  log.close()
#
# Flash full policy: readings may not eat into the store's reserve (logstore.reserve);
# boot, time-set, overflow and ack entries may use half of it. Acknowledged data goes
# first: with prune_on_ack off (the default: a second collector may not have read it
# yet), acknowledged segments are only pruned, oldest first, when an append finds no room.
#
# Allocation per entry: entry.encode's small ints and text copies, one memoryview of
# the entry buffer, the 32-byte head (+ a 64-byte signature when sign_entries).
import hashlib
import os
import struct
from binascii import crc32

from micropython import const

from hashtrail import cose, drop, entry, logstore, p256
from hashtrail.cbor import Writer

DEFAULTS = {
    "seg_records": 256,  # entries per segment file: the pruning granularity
    "seg_bytes": 16384,  # bytes per segment file (4 littlefs blocks)
    "max_body": 1024,  # largest record body (entry or checkpoint) accepted
    "flush_every": 1,  # littlefs sync after this many records (0: only by time/close)
    "flush_s": 0,  # ... or when the oldest unsynced record is this old (0: off)
    "checkpoint_every": 100,  # automatic checkpoint after this many entries (0: off)
    "checkpoint_s": 3600,  # ... or this long after the last one (0: off)
    "sign_entries": True,  # 64-byte signature beside every entry (policy in entry 0)
    "prune_on_ack": False,  # True: delete acknowledged segments at once; False: only
    # when space is needed (a second collector can still read them; docs/STORAGE.md)
    "boot_check": True,  # walk every segment at boot (else only the last one)
}

_STATE_MAGIC = b"HTS1"
_STATE_LEN = const(20)  # magic 4 | boot u32 | acked u32 (0xFFFFFFFF: none) | dropped u32 | crc32
_NONE32 = const(0xFFFFFFFF)
_REASON_FULL = "flash_full"


# Boot-only modules (keyfile, bootcheck, bootfind) are imported where they are used,
# once per boot, and dropped again at once (hashtrail.drop): their code is not resident
# while the app runs.


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


class LogAltered(ValueError):
    """The newest entry on flash is not the one the device signed: no checkpoint."""


# A fresh exception per raise, not a preallocated one: MicroPython appends each raise's
# traceback to the exception object, so one reused instance grows without bound when
# automatic checkpoints keep meeting the condition (measured: ~48 B per raise).
_ALTERED = "newest entry on flash is not the one this device signed"


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


class Log:
    def __init__(self, root, board_name, fw_version, clock, config=None,
                 reset_cause="unknown"):
        cfg = dict(DEFAULTS)
        if config:
            cfg.update(config.get("log") or {})
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
        self.store = logstore.LogStore(
            root, seg_records=int(cfg["seg_records"]), seg_bytes=int(cfg["seg_bytes"]),
            max_body=int(cfg["max_body"]), flush_every=int(cfg["flush_every"]),
            flush_ms=int(cfg["flush_s"]) * 1000, boot_check=bool(cfg["boot_check"]),
            observe=self._boot_walk)
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
        boot, acked, dropped = self._read_state()
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

    def _boot_walk(self):
        return boot_walk(self.sign_entries)

    # ---- state file ----------------------------------------------------------------
    def _read_state(self):
        try:
            with open(self.root + "/state", "rb") as f:
                raw = f.read()
        except OSError:
            return 0, None, 0
        if len(raw) != _STATE_LEN or raw[:4] != _STATE_MAGIC or crc32(raw[:16]) != \
                struct.unpack_from("<I", raw, 16)[0]:
            self.store.problems.append(("state", None, "state", 0))
            return 0, None, 0
        boot, acked, dropped = struct.unpack_from("<III", raw, 4)
        return boot, (None if acked == _NONE32 else acked), dropped

    def _write_state(self):
        b = bytearray(_STATE_LEN)
        b[:4] = _STATE_MAGIC
        struct.pack_into("<III", b, 4, self.boot, _NONE32 if self.acked is None else self.acked,
                         self.dropped)
        struct.pack_into("<I", b, 16, crc32(memoryview(b)[:16]))
        tmp = self.root + "/state.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(b)
            os.rename(tmp, self.root + "/state")  # atomic on littlefs
            return True
        except OSError:
            return False

    # ---- chain view ------------------------------------------------------------------
    @property
    def first_seq(self):
        return self.store.first_seq

    @property
    def last_seq(self):
        return self.store.last_seq

    @property
    def head(self):
        return self._head

    # ---- appends ---------------------------------------------------------------------
    def _append(self, kind, body, floor=False):
        w = self._w
        seq = self._next
        n = entry.encode(w, seq, self.clock.now(), self.clock.uptime_ms(), self.boot,
                         self._head, self.fw, kind, body)
        b = self._mv[:n]
        head = entry.entry_hash(b)
        sig = self.ident.sign(head) if self.sign_entries else None
        try:
            self.store.append(seq, b, sig, logstore.ENTRY, floor)
        except logstore.LogFull:
            self._resync()
            raise
        self._head = head
        self._next = seq + 1
        self._since_cp += 1
        if self._cp_every and self._since_cp >= self._cp_every:
            self._auto_checkpoint()
        return seq

    def _resync(self):
        # A failed write can make the store reload what is durable: follow it.
        st = self.store
        want = self._next - 1
        if st.last_seq != (None if want < 0 else want):
            last = st.last_entry()
            self._next = 0 if last is None else st.last_seq + 1
            self._head = entry.genesis_prev(self.pub) if last is None else \
                hashlib.sha256(last).digest()

    def _flush_overflow(self, floor):
        if not self.dropped:
            return True
        try:
            self._append(entry.KIND_OVERFLOW, entry.overflow_body(self.dropped, _REASON_FULL),
                         floor)
        except logstore.LogFull:
            return False
        self.dropped = 0
        self._write_state()
        return True

    def append(self, kind, body):
        floor = kind != entry.KIND_READING
        try:
            if not self._flush_overflow(floor):
                raise logstore.LogFull("flash full")
            return self._append(kind, body, floor)
        except logstore.LogFull:
            # No room even in the reserve: make it from acknowledged data, oldest
            # segment first, as reading() does. Unacknowledged data is never pruned.
            if self.acked is None or not self.store.prune(self.acked):
                raise
        return self.append(kind, body)

    def reading(self, readings):
        try:
            if not self._flush_overflow(False):
                raise logstore.LogFull("flash full")
            return self._append(entry.KIND_READING, readings)
        except logstore.LogFull:
            pass
        if not self._prune_on_ack and self.acked is not None and self.store.prune(self.acked):
            return self.reading(readings)  # acknowledged data made room
        self.dropped += 1
        self._write_state()
        return None

    def set_time(self, t):
        prev = self.clock.set(t) if hasattr(self.clock, "set") else self.clock.now()
        return self.append(entry.KIND_TIME_SET, entry.time_set_body(prev, int(t)))

    def ack(self, seq):
        last = self.store.last_seq
        if last is None or seq > last:
            raise ValueError("ack beyond the log")
        if self.acked is not None and seq <= self.acked:
            return None
        self.acked = seq
        self._write_state()
        if self._prune_on_ack:
            self.store.prune(seq)
        return self.append(entry.KIND_ACK, entry.ack_body(seq, self.store.first_seq))

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint(self, nonce=None):
        seq = self.store.last_seq
        if seq is None:
            raise ValueError("log is empty")
        # Never sign over an entry the device did not write: the newest entry on flash
        # must still hash to the head it signed when it appended it.
        if self.store.newest_hash() != self._head:
            raise LogAltered(_ALTERED)
        c = cose.checkpoint(self.ident, self.ident.device_id, seq, self._head,
                            self.clock.now(), self.clock.uptime_ms(), nonce)
        try:
            self.store.append(seq, c, None, logstore.CHECKPOINT)
        except logstore.LogFull:
            pass  # the host still gets it; storing it is a convenience
        self._since_cp = 0
        self._cp_at = self.clock.uptime_ms()
        return c

    def _auto_checkpoint(self):
        try:
            self.checkpoint()
        except (ValueError, OSError):
            pass

    # ---- reading, upkeep ---------------------------------------------------------------
    def records(self, from_seq=0):
        return self.store.records(from_seq)

    def free_bytes(self):
        return self.store.free_bytes()

    def tick(self):
        self.store.tick()
        if self._cp_ms and self._since_cp and \
                self.clock.uptime_ms() - self._cp_at >= self._cp_ms:
            self._auto_checkpoint()

    def close(self):
        self.store.close()
