"""Verify one device's chain of records and report every break (pure, no I/O).

Why: the verifier is where tampering becomes visible. It walks the records in order
from seq 0 (the genesis link binds the chain to the device key) or from a known
(seq, head) anchor, since pruned devices and incremental collection start mid-way.
It never stops at the first problem: every break is a Finding with device id, seq,
a reason code and a text, and after a break it resynchronises on the next entry only
to find further breaks. Entries after the first break are never counted as
verified: `verified_through` ends before it.

The device's signing policy (docs/FORMATS.md, entry 0's key 2) decides what an
unsigned entry means. It is read from entry 0 when the walk starts at genesis, and
otherwise given by the caller from what it stored when it accepted entry 0 (a store,
a ledger); a device is held to its entry 0, never to its board.json. Policy 1 (every
entry signed): an entry without its own valid signature is a break. Policy 0
(checkpoints only): entries are unprotected until a checkpoint covers them; whether
one does is the caller's judgement (collect: the fresh checkpoint for its nonce).
A log-altered entry (kind 6) is the device's own report that no signature of its
covers entries body[1]..seq-1: nothing from body[1] on is counted as verified (unless the
whole range lies at or behind the walk's anchor: see `_Walker._altered`).
`ChainReport.unprotected` names, for a device that does not sign every entry, which
verified entries were unprotected until which device signature (checkpoint N, or an
entry's own), and which no signature covers yet: never a plain "ok" for them.

Reason codes:
  record_torn_tail, record_bad_crc, record_bad_magic   the flash record layer
  bad_entry          entry bytes that are not a canonical v1 entry
  seq_mismatch       record header seq differs from the seq inside the entry/checkpoint
  wrong_genesis      seq 0 does not link to genesis_prev(pub), or names another key
  unanchored         chain starts after seq 0 and no anchor was given
  link_mismatch      prev is not the hash of the previous entry (edited entry)
  gap                entries missing (deleted)
  reordered          an entry older than the chain position, not seen before
  duplicate          an entry seen already (identical bytes)
  conflict           a second, different entry for a seq already seen (fork)
  time_backwards     t or up decreased within one boot; boot counter decreased
  entry_bad_sig      per-entry signature does not verify
  entry_unsigned     no per-entry signature, but entry 0 says the device signs every entry
  log_altered        the device reports entries X..A-1 altered on its flash (entry A, kind 6)
  fw_changed, fw_update_mismatch, fw_downgrade   the firmware history (chain.fwrules,
                     the rules reconcile and `verify --ledger` apply too); the counter
                     installed before is the highest in this walk
  checkpoint_bad     checkpoint bytes malformed
  checkpoint_bad_sig checkpoint signature does not verify / other device
  checkpoint_head_mismatch   signed head differs from the chain's entry at that seq
  checkpoint_beyond_chain    a signed head for an entry the log does not hold (tail cut)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hashtrail.chain.fwrules import FirmwareRules
from hashtrail.errors import FormatError
from hashtrail.formats.checkpoint import Checkpoint, parse_checkpoint, signed_by
from hashtrail.formats.entry import (
    KIND_LOG_ALTERED,
    POLICY_EVERY_ENTRY,
    Entry,
    is_key_created_by,
    parse_entry,
    signing_policy,
)
from hashtrail.formats.keys import DeviceId, DeviceKey
from hashtrail.formats.records import Record, RecordProblem


@dataclass(frozen=True)
class Finding:
    device_id: DeviceId
    seq: int | None
    code: str
    text: str
    source: str = ""
    offset: int | None = None


@dataclass(frozen=True)
class Anchor:
    """A (seq, head) already trusted (a verified checkpoint or an earlier collection)."""

    seq: int
    head: bytes


@dataclass
class ChainReport:
    device_id: DeviceId
    findings: list[Finding] = field(default_factory=list)
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: bytes | None = None
    verified_through: int | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    policy: int | None = None        # entry 0's signing policy (None: unknown)
    altered_from: int | None = None  # lowest seq a log-altered entry disowns
    # (first, last, seq of the covering signature or None, "checkpoint" | "entry" | "")
    # over the verified entries, unless the device signs every entry (policy 1)
    unprotected: list[tuple[int, int, int | None, str]] = field(default_factory=list)
    more: int = 0  # findings not kept (an incremental walk keeps a bounded number)

    @property
    def ok(self) -> bool:
        return not self.findings


class _Seen:
    """seq -> entry hash as walked, 32 bytes a seq: one bytearray while the seqs run on
    from the first one set (every walk of an honest log), a dict for the rest (after a
    gap). A walk of 200,000 entries holds 6.4 MB here, not ~26 MB of dict and objects."""

    def __init__(self) -> None:
        self.base: int | None = None
        self.run = bytearray()
        self.other: dict[int, bytes] = {}

    def __setitem__(self, seq: int, h: bytes) -> None:
        if self.base is None:
            self.base = seq
        if seq == self.base + len(self.run) // 32 and seq not in self.other:
            self.run += h
        else:
            self.other[seq] = h

    def get(self, seq: int) -> bytes | None:
        if self.base is not None and 0 <= seq - self.base < len(self.run) // 32:
            i = (seq - self.base) * 32
            return bytes(self.run[i:i + 32])
        return self.other.get(seq)

    def __contains__(self, pair: object) -> bool:
        """(seq, hash) walked."""
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        seq, h = pair
        return isinstance(seq, int) and self.get(seq) == h


class _Walker:
    def __init__(self, key: DeviceKey, anchor: Anchor | None, report: ChainReport,
                 policy: int | None = None, fw: FirmwareRules | None = None,
                 fw_last: Entry | None = None) -> None:
        self.key = key
        self.pub = self.key.pub
        self.dev = report.device_id
        self.r = report
        self.seen = _Seen()  # seq -> entry hash, as walked
        self.anchor_seq = -1 if anchor is None else anchor.seq
        if anchor is None:
            self.next_seq, self.head = 0, self.key.genesis_prev
        else:
            self.next_seq, self.head = anchor.seq + 1, anchor.head
            self.seen[anchor.seq] = anchor.head
        self.broken = False
        self.last: Entry | None = None
        self.started = False
        self.every_entry = policy == POLICY_EVERY_ENTRY
        report.policy = policy
        self.covers: dict[int, str] = {}    # seq -> what device signature covers it
        self.fw = FirmwareRules() if fw is None else fw   # the firmware history
        # the entry at the anchor, for the firmware rules of the first entry after it
        self.fw_last = fw_last if anchor is not None and fw_last is not None \
            and fw_last.seq == anchor.seq and fw_last.hash == anchor.head else None
        self.keep_cps = True  # ChainReport.checkpoints: off for a walk whose caller keeps them

    def find(self, seq: int | None, code: str, text: str, rec: Record | None = None) -> None:
        self.r.findings.append(Finding(self.dev, seq, code, text,
                                       rec.source if rec else "", rec.offset if rec else None))

    def brk(self, seq: int | None, code: str, text: str, rec: Record | None = None) -> None:
        self.find(seq, code, text, rec)
        self.broken = True

    def entry(self, rec: Record) -> None:
        try:
            e = parse_entry(rec.body)
        except FormatError as err:
            self.brk(rec.seq, "bad_entry", f"record seq {rec.seq}: {err}", rec)
            return
        h = e.hash
        if e.seq != rec.seq:
            self.brk(e.seq, "seq_mismatch",
                     f"record header says seq {rec.seq}, the entry says {e.seq}", rec)
        sig_ok = rec.sig is not None and self.key.signed(h, rec.sig)
        if rec.sig is not None and not sig_ok:
            self.brk(e.seq, "entry_bad_sig", f"entry {e.seq}: per-entry signature invalid",
                     rec)
        if e.seq < self.next_seq:
            old = self.seen.get(e.seq)
            if old == h:
                self.brk(e.seq, "duplicate", f"entry {e.seq} appears again", rec)
            elif old is not None:
                self.brk(e.seq, "conflict", f"a second, different entry {e.seq}", rec)
            else:
                self.brk(e.seq, "reordered",
                         f"entry {e.seq} after entry {self.next_seq - 1}", rec)
            return
        if not self.started and e.seq > 0 and self.next_seq == 0:
            self.brk(e.seq, "unanchored",
                     f"chain starts at seq {e.seq}: no anchor to check it against", rec)
        elif e.seq > self.next_seq:
            missing = (f"entry {self.next_seq}" if e.seq == self.next_seq + 1
                       else f"entries {self.next_seq}..{e.seq - 1}")
            self.brk(e.seq, "gap", f"{missing} missing before entry {e.seq}", rec)
        elif e.prev != self.head:
            if e.seq == 0:
                self.brk(0, "wrong_genesis",
                         "entry 0 does not link to this device's genesis", rec)
            else:
                self.brk(e.seq, "link_mismatch",
                         f"entry {e.seq} does not link to entry {e.seq - 1} "
                         f"(entry {e.seq - 1} edited, or this one)", rec)
        if e.seq == 0:
            if not is_key_created_by(e, self.pub):
                self.brk(0, "wrong_genesis",
                         "entry 0 is not the key-created entry of this key", rec)
            elif self.next_seq == 0:     # the genesis entry of this walk: its word counts
                self.r.policy = signing_policy(e)
                self.every_entry = self.r.policy == POLICY_EVERY_ENTRY
        if rec.sig is None and self.every_entry:
            self.brk(e.seq, "entry_unsigned",
                     f"entry {e.seq} carries no device signature, but this device signs "
                     "every entry (entry 0)", rec)
        if e.kind == KIND_LOG_ALTERED:
            self._altered(e, rec)
        last = self.last
        for f in self.fw.check(self.fw_last if last is None else last, e):
            self.brk(f.seq, f.code, f.text, rec)
        if last is not None and last.seq == e.seq - 1 and (
                e.boot != last.boot or e.up < last.up
                or (e.t is not None and last.t is not None and e.t < last.t)):
            self._times(last, e, rec)
        self.started = True
        seq = e.seq
        self.seen[seq] = h
        if sig_ok:
            self.covers[seq] = "entry"
        self.next_seq, self.head, self.last = seq + 1, h, e
        r = self.r
        r.entries += 1
        if r.first_seq is None:
            r.first_seq = seq
        r.last_seq, r.head = seq, h
        if not self.broken:
            r.verified_through = seq

    def _altered(self, e: Entry, rec: Record) -> None:
        """The device disowns entries body[1]..seq-1: no signature of its, at this entry
        or after, covers them, so nothing from body[1] on counts as verified.

        Unless every entry it disowns lies at or behind the anchor: the caller verified
        those copies under the device's signatures before the flash was altered, and this
        entry links to the anchor's head (checked as for any entry), so the chain goes on
        from it; the report is kept (`altered_from`), not a break. reconcile's rule too."""
        first = min(int(e.body[1]), e.seq)
        r = self.r
        if e.seq - 1 <= self.anchor_seq:
            r.altered_from = first if r.altered_from is None else min(r.altered_from, first)
            return
        first = max(first, self.anchor_seq + 1)     # what this walk could have verified
        span = (f"entries {first}..{e.seq - 1}" if first < e.seq - 1
                else f"entry {first}" if first == e.seq - 1
                else f"its log from entry {e.seq}")
        self.brk(first, "log_altered",
                 f"the device reports {span} altered on its flash (log-altered entry "
                 f"{e.seq}): {e.body[2]}", rec)
        r.altered_from = first if r.altered_from is None else min(r.altered_from, first)
        if r.verified_through is not None and r.verified_through >= first:
            lo = r.first_seq if r.first_seq is not None else 0
            r.verified_through = first - 1 if first - 1 >= lo else None

    def _times(self, a: Entry, b: Entry, rec: Record) -> None:
        """Entry b follows a: within one boot, uptime and device time never go back."""
        if b.boot < a.boot:
            self.brk(b.seq, "time_backwards", f"boot counter went back at entry {b.seq}", rec)
        elif b.boot == a.boot:
            if b.up < a.up:
                self.brk(b.seq, "time_backwards", f"uptime went back at entry {b.seq}", rec)
            elif a.t is not None and b.t is not None and b.t < a.t:
                self.brk(b.seq, "time_backwards", f"device time went back at entry {b.seq}",
                         rec)

    def checkpoint(self, rec: Record) -> None:
        try:
            cp = parse_checkpoint(rec.body)
        except FormatError as err:
            self.find(rec.seq, "checkpoint_bad", f"checkpoint record: {err}", rec)
            return
        if cp.seq != rec.seq:
            self.find(cp.seq, "seq_mismatch",
                      f"record header says seq {rec.seq}, the checkpoint says {cp.seq}", rec)
        if not signed_by(cp, self.key):
            self.find(cp.seq, "checkpoint_bad_sig",
                      f"checkpoint for seq {cp.seq}: signature does not verify", rec)
            return
        if self.keep_cps:
            self.r.checkpoints.append(cp)
        h = self.seen.get(cp.seq)
        if h is None:
            if cp.seq >= self.next_seq:
                self.find(cp.seq, "checkpoint_beyond_chain",
                          f"signed head for entry {cp.seq}, but the log ends at "
                          f"{self.next_seq - 1} (tail truncated?)", rec)
            return
        if h != cp.head:
            self.find(cp.seq, "checkpoint_head_mismatch",
                      f"signed head for entry {cp.seq} differs from the chain's entry", rec)
        elif self.covers.get(cp.seq) != "entry":
            self.covers[cp.seq] = "checkpoint"

    def unprotected(self) -> None:
        """Group the verified entries by the first device signature at or after them."""
        r = self.r
        if r.policy == POLICY_EVERY_ENTRY or r.first_seq is None \
                or r.verified_through is None:
            return
        out = r.unprotected
        lo = r.first_seq
        for seq in sorted(s for s in self.covers if lo <= s <= r.verified_through):
            out.append((lo, seq, seq, self.covers[seq]))
            lo = seq + 1
        if lo <= r.verified_through:
            out.append((lo, r.verified_through, None, ""))


class ChainWalk:
    """The verifier fed in batches, for a collector that must not hold what a device
    sends (docs/PROTOCOL.md "Host bounds"): `feed` records as they arrive, `finish` for
    the report. It keeps the running head and link state, the hash of each seq walked
    (32 bytes; what checkpoint records and duplicates are judged against), and at most
    `keep` findings (the rest are counted in `ChainReport.more`); without
    `keep_checkpoints`, the verified checkpoints are not listed in the report either.

    Same verdict as `verify_chain` over the concatenation of the batches: the records
    after the first damaged one are ignored (as parse_records ends a segment there), and
    a checkpoint record is judged once its entry has been walked (a seq below the walk's
    next is final: no later entry changes it) or, for one beyond the chain so far, at
    `finish`, against the entries as walked."""

    def __init__(self, pub: bytes, *, anchor: Anchor | None = None,
                 policy: int | None = None, keep: int | None = None,
                 keep_checkpoints: bool = True, fw: FirmwareRules | None = None,
                 fw_last: Entry | None = None) -> None:
        self.key = DeviceKey(pub)
        self.report = ChainReport(self.key.id)
        self.keep = keep
        self._w = _Walker(self.key, anchor, self.report, policy, fw, fw_last)
        self._w.keep_cps = keep_checkpoints
        self._later: list[Record] = []  # checkpoint records ahead of the chain so far
        self.damaged = False

    def problems(self, problems: Sequence[RecordProblem]) -> None:
        """A damaged record ends the stream's valid data: what that loses shows up as a
        gap or a checkpoint beyond the chain, so the problem itself is reported as is."""
        r = self.report
        for p in problems:
            r.findings.append(Finding(r.device_id, p.seq, f"record_{p.code}", p.text,
                                      p.source, p.offset))
        if problems:
            self.damaged = True
        self._trim()

    def feed(self, records: Sequence[Record]) -> None:
        """Walk one batch of records in log order (nothing once the stream is damaged)."""
        if self.damaged:
            return
        w = self._w
        for rec in records:
            if rec.is_entry:
                w.entry(rec)
        for rec in records:
            if not rec.is_entry:
                if rec.seq < w.next_seq:
                    w.checkpoint(rec)
                else:
                    self._later.append(rec)
        self._trim()

    def finish(self) -> ChainReport:
        for rec in self._later:
            self._w.checkpoint(rec)
        self._later = []
        self._w.unprotected()
        self._trim()
        self.report.findings.sort(key=lambda f: (f.seq if f.seq is not None else -1))
        return self.report

    def walked(self, seq: int, h: bytes) -> bool:
        """Whether this walk took entry `h` at `seq` into its chain (or it is the
        anchor's)."""
        return (seq, h) in self._w.seen

    def _trim(self) -> None:
        f = self.report.findings
        if self.keep is not None and len(f) > self.keep:
            self.report.more += len(f) - self.keep
            del f[self.keep:]


def verify_chain(pub: bytes, records: Sequence[Record],
                 problems: Sequence[RecordProblem] = (), *,
                 anchor: Anchor | None = None, policy: int | None = None,
                 fw: FirmwareRules | None = None, fw_last: Entry | None = None
                 ) -> ChainReport:
    """Walk records (entries and checkpoint records, in log order); report every break.

    `policy` is the device's signing policy as the caller stored it from entry 0, for a
    walk that starts after entry 0 (an anchor); a walk from genesis reads entry 0's.
    Likewise `fw`, the firmware rules with the updates accepted before the anchor
    installed, and `fw_last`, the accepted entry at the anchor (collector.store
    Store.firmware): without them a walk from an anchor knows no installed counter.
    Checkpoint records are checked after all entries, against the entries as walked,
    so a checkpoint written before a later damaged region is still judged.
    """
    walk = ChainWalk(pub, anchor=anchor, policy=policy, fw=fw, fw_last=fw_last)
    for p in problems:   # the records given are all before the damage: walk them all
        walk.report.findings.append(Finding(walk.report.device_id, p.seq,
                                            f"record_{p.code}", p.text, p.source, p.offset))
    walk.feed(records)
    return walk.finish()
