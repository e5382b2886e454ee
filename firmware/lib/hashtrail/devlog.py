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
#       All of that is boot-only code: logboot.py, imported by Log() and dropped again.
#   logboot.boot_walk(sign_cfg), logboot.boot_verdict(store, wk, pub, device_id)   the
#       boot check's two halves (Log runs them; tools/bench_append.py times them)
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

from hashtrail import cose, drop, entry, logstore

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


# Boot-only modules (logboot, and keyfile, bootcheck, bootfind through it) are imported
# where they are used, once per boot, and dropped again at once (hashtrail.drop): their
# code is not resident while the app runs.


class LogAltered(ValueError):
    """The newest entry on flash is not the one the device signed: no checkpoint."""


# A fresh exception per raise, not a preallocated one: MicroPython appends each raise's
# traceback to the exception object, so one reused instance grows without bound when
# automatic checkpoints keep meeting the condition (measured: ~48 B per raise).
_ALTERED = "newest entry on flash is not the one this device signed"


class Log:
    def __init__(self, root, board_name, fw_version, clock, config=None,
                 reset_cause="unknown"):
        cfg = dict(DEFAULTS)
        if config:
            cfg.update(config.get("log") or {})
        # Everything else happens once, at boot: logboot.py (boot-only, dropped
        # again), so that code is not resident while the app runs.
        from hashtrail import logboot

        try:
            logboot.boot(self, root, board_name, fw_version, clock, cfg, reset_cause)
        finally:
            logboot = None
            drop("logboot")

    # ---- state file ----------------------------------------------------------------
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
