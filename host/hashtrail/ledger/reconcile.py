"""Reconcile collector bundles into the ledger: verify everything, accept what connects.

Why this shape: bundles arrive from several collectors, overlapping, out of order,
sometimes twice, sometimes from a cloned device. Per device, a chunk of its entries at
a time (below), each in one storage transaction (all or nothing, under the ledger's
write lock: ledger.storage), reconcile
  0. enrolls the devices the bundle's enrollment lines name, but only when the bundle is
     signed by a collector the ledger trusts (`ledger trust`): an enrollment is a bare
     claim ("this key is one of ours"), so from an unsigned or untrusted bundle it is
     refused with a finding and that device's entries never enter. Entries and
     checkpoints of devices already enrolled carry their own device signatures, so
     they count from any bundle, signed or not (a second party filling gaps). The
     collector's signature over each enrollment (formats.enrollment) is kept with the
     device, with the collector's key, for proofs and `verify`; a device enrolled
     unsigned gets it from a later bundle of its trusted collector that signs the same
     enrollment;
  1. checks every device checkpoint (ES256 by the enrolled key) and keeps the good ones;
  2. checks every entry (strict CBOR, seq, per-entry signature, entry 0 = this key);
     entries already accepted are duplicates; everything else waits in `pending`.
     Per-entry signatures are checked as one batch over `workers` threads (default:
     every CPU; OpenSSL drops the GIL while it verifies, keys.map_slices), each
     thread hashing and parsing its slice too; or, for bundles with many of them, in
     worker processes (chain.verify_pool, below "Worker processes");
  3. walks `pending` from the device's accepted tip along `prev` links, and accepts
     what the device's signatures cover, by the signing policy its entry 0 declares
     (read from entry 0 in the ledger, or from the entry 0 being accepted):
     - policy 1 (every entry signed): only entries with their own valid signature, in
       order; the first one without stops the walk (finding), whatever signature
       follows it: a device signing over a log rewritten on its flash is what the
       per-entry signatures catch. A signed copy of the same bytes from another bundle
       replaces the unsigned one and lets it in;
     - policy 0 (checkpoints only): up to the last entry a device signature covers (a
       checkpoint over its hash, or its own per-entry signature); unsigned tails wait;
     - either way, never entries a log-altered entry (kind 6, the device's own report)
       disowns: a report at seq A disowning X..A-1 stops acceptance below X, even with
       a later checkpoint (finding). Entries already accepted stay.
     Holes wait for the collector that has the missing entries. Each accepted entry
     becomes a Merkle leaf. Entries that break the firmware rules (chain.fwrules: a
     version changed inside a boot, an update written by another version, a
     downgrade below an update accepted before) are accepted and flagged;
  4. looks for forks: a signed statement (checkpoint, or a signed chain in pending)
     about an accepted seq that disagrees with the accepted entry is kept as
     self-contained evidence (hashtrail.evidence) and the device is flagged.
Entries come in chunks of at most CHUNK per device, each chunk one transaction, so a
bundle of any size streams in bounded memory (a bundle file is read in two passes:
collector.bundle.BundleFile; the second, for a large file, in a process of its own,
which also decodes and hashes the entries of chunks without per-entry signatures a
few chunks ahead: ledger.chunk_reader, `prepared`). A killed reconcile leaves whole
chunks done or untouched; rerunning finishes the job and the same bundle twice is a
no-op. Nearly every chunk of a large bundle just extends its device's chain from the
tip (after the entries held from the chunk before): such a chunk is walked in one
pass (_extend), which accepts
what the general walk (_merge) would and hands it any other chunk whole, before doing
anything (tests/host/test_reconcile_extend.py holds the two to the same ledger and
findings). What a chunk leaves held goes on to the device's next chunk in memory
(_Carry), not through `pending`: a device that signs once per many chunks is walked
once, not once per chunk, and its held entries reach `pending` only if they are
still held when the run moves on to another device or ends, or when they are more
than SPILL_CHUNKS chunks: then they are written and only their ends are kept
(_Spill), so a long unsigned span that the usual chunks extend takes bounded memory;
they are read back once, a chunk at a time, when a signature accepts them. A chunk the
general walk must take (a record refused, a duplicate, a gap) is walked on from the
span's end too: a signed copy of a spilled entry accepts the span up to it, another
entry for a spilled seq is held beside the span (a fork, the span's `forked`), and only
one that a device signature covers reads the span back whole (docs/LEDGER.md).
Entries held above a hole (an entry left out) of FLOAT_CHUNKS chunks or more are written
too and kept as their ends (_Float); the chunk that fills the hole joins them to the
spilled chain. Whatever else a chunk brings at their seqs or above, unsigned, is written
beside them too, and kept as floats above holes (_above_hole). Other copies of accepted
entries are rows of `pending` that no walk carries (_without_low). A bundle file
reconciled to the end is recorded by its digest (storage `bundles`), with its
collector's cursor, and offered again it returns at once (docs/BUNDLE.md "Incremental
export and reconcile"). Problems are returned as findings (device, seq, reason), never
silently dropped.

Worker processes: a per-entry-signed chunk of at least POOL_MIN signatures goes to a
chain.verify_pool.VerifyPool (the caller's `pool`, kept across bundles, or one of
this reconcile's own) when it is running, or when the bundle holds at least COLD_MIN
entries, which starts it: starting workers costs more than checking a smaller bundle
on threads. The workers hash and verify while this process parses, walks and writes:
each chunk's batches are handed over AHEAD chunks ahead (_Ahead), and a chunk is walked
BATCH entries at a time inside its one transaction, each batch as soon as its
verdicts are back, so the walk of one batch runs while the workers check the next. A
batch's entries are accepted only with their own verdicts in hand, by the same walk
(_device) as on threads: only the time changes. Walked batch by batch, a chunk is
what smaller chunks in one transaction would be; once a batch leaves entries held (a
hole, a refused signature), the rest of the chunk is walked in one go, so held
entries are not reloaded per batch.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import time
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, Literal, NamedTuple, TypeGuard

from hashtrail.chain import verify_pool
from hashtrail.chain.devicecheck import (
    KIND_KEY_CREATED,
    KIND_TIME_SET,
    DeviceKey,
    EntryFields,
    parse_entry,
)
from hashtrail.chain.evidence import Branch, branch_hash, make_evidence
from hashtrail.chain.fwrules import FirmwareRules
from hashtrail.collector.bundle import Bundle, BundleCheckpoint
from hashtrail.collector.store import Enrollment, RawEntry
from hashtrail.errors import FormatError, HashtrailError
from hashtrail.formats import note
from hashtrail.formats.entry import (
    KIND_LOG_ALTERED,
    KIND_UPDATE,
    POLICY_EVERY_ENTRY,
    signing_policy,
)
from hashtrail.formats.keys import check_pub, map_slices
from hashtrail.formats.leaf import leaf_hashes
from hashtrail.ledger.chunk_reader import Prepared, chunks, runs_of
from hashtrail.ledger.firmware import installed_rules
from hashtrail.ledger.held_cover import held_cover
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.storage import MAX_SEQ, Device, LedgerStorage, PendingRow

CHUNK = 5_000       # entries per device per transaction: what bounds reconcile's memory
# Worker processes (module docstring, "Worker processes"; measured in docs/LEDGER.md
# "Per-entry signatures in worker processes"):
POOL_MIN = 512      # signatures in a chunk from which a running pool takes it
COLD_MIN = 20_000   # entries in a bundle from which reconcile starts a pool of its own
BATCH = 1_000       # entries walked at a time when a pool checks them
AHEAD = 2           # chunks handed to the pool before the one walked (_Ahead)
# A device's carried chain of held entries of SPILL_CHUNKS chunks is written to `pending`
# and kept as a summary (_Spill): what bounds the memory of an unsigned span (about
# 1.4 KB a carried entry: 70 MB). Spilled entries cost a write, a read and a delete
# each, about 20 us (twice a whole reconcile's per-entry time): only spans longer than
# this pay it (docs/LEDGER.md "PostgreSQL (many collectors at once)", peak memory)
SPILL_CHUNKS = 10
# Entries held above a hole are written to `pending` once they are FLOAT_CHUNKS chunks
# (_Float): nothing of them can be accepted before the hole is filled, and walked in
# memory they cost a walk of all of them at each chunk (docs/LEDGER.md)
FLOAT_CHUNKS = 1


class Finding(NamedTuple):
    device_id: str
    seq: int | None
    reason: str


@dataclass
class Result:
    signed_by: str | None = None     # the trusted collector's name, None if not trusted
    enrolled: int = 0
    # devices enrolled unsigned before whose enrollment this bundle's collector signed
    enrollments_signed: int = 0
    accepted: int = 0
    duplicates: int = 0
    pending: int = 0
    checkpoints: int = 0
    forks: int = 0
    findings: list[Finding] = field(default_factory=list)
    # This bundle was reconciled to the end before (its digest is in `bundles`):
    # nothing was read past its last line, nothing changed.
    already: bool = False
    # False when something in it may count later (an enrollment refused for want of
    # a trusted signature, entries of a device not enrolled yet): such a bundle is not
    # recorded as seen, so offering it again still does something.
    complete: bool = True
    _said: set[Finding] = field(default_factory=set, repr=False)

    def once(self, f: Finding) -> None:
        """A finding the chain walk re-derives from held entries: said once per run,
        however many chunks of the device's entries walk past it."""
        if f not in self._said:
            self._said.add(f)
            self.findings.append(f)


class _Walk(NamedTuple):
    """What the chain walk reads of a held entry whose kind needs no body, as `pending`
    keeps it (storage.HeldEntry): such an entry is not decoded again."""

    prev: bytes
    kind: int
    t: int | None
    body: None = None


# kinds whose body the walk reads (entry 0's signing policy, a log-altered report):
# held entries of these kinds are decoded whole when loaded
_BODY_KINDS = frozenset({KIND_KEY_CREATED, KIND_LOG_ALTERED})


class _Cand(NamedTuple):
    seq: int
    h: bytes
    body: bytes
    sig: bytes | None
    f: EntryFields | _Walk
    stored: bool            # already a row in `pending` (from an earlier run)
    leaf: bytes | None = None   # its Merkle leaf hash, when the reader computed it


_new = tuple.__new__        # a NamedTuple without its Python-level __new__ (per entry)


def reconcile(led: Ledger, b: Bundle, workers: int | None = None, *,
              entries: Iterable[tuple[str, RawEntry]] | None = None,
              runs: Iterable[tuple[str, list[RawEntry]]] | None = None,
              digest: bytes | None = None,
              pool: verify_pool.VerifyPool | None = None,
              prepared: Iterable[Prepared] | None = None) -> Result:
    """Merge bundle `b` into the ledger. Its entries are `b.entries`, or `entries`, an
    iterable read once in file order (collector.bundle.BundleFile.entries: the bundle
    streams and memory stays bounded; `b` then holds its counts, not its entries),
    or `runs`, the same a run of one device's entries at a time (BundleFile.runs),
    or `prepared`, the file's chunks as a bundle reader read and decoded them in a
    process of its own (chunk_reader.ChunkReader.prepared).
    With `digest` (collector.bundle.bundle_digest), a bundle already reconciled to the
    end returns at once (`Result.already`), and one reconciled now is recorded, with
    its collector's cursor (docs/BUNDLE.md "Incremental export").
    `pool`: worker processes to check per-entry signatures in, kept by the caller
    across bundles; without one, reconcile keeps its own for the run (none with
    `workers=1`). A pool not running yet is started only for a bundle of COLD_MIN
    entries or more."""
    led.require_signer()     # it signs a checkpoint at the end: no key, no change at all
    res = Result()
    db = led.storage
    if digest is not None and db.bundle_seen(digest):
        res.already = True
        return res
    if entries is not None:
        assert runs is None, "entries or runs, not both"
        runs = runs_of(entries, CHUNK)
    whole = runs is None and prepared is None
    counts = b.counts if not whole else Counter(d for d, _ in b.entries)
    cps: dict[str, list[BundleCheckpoint]] = defaultdict(list)
    for c in b.checkpoints:
        cps[c.device_id].append(c)
    refused: set[str] = set()
    with db.transaction():
        res.signed_by = None if b.signer is None else led.collector_name(b.signer)
        for e in b.enrollments:
            dev = led.device(e.device_id)
            try:         # not a P-256 point: this device is refused, the others go on
                check_pub(e.pub)
            except FormatError as err:
                if dev is None:
                    refused.add(e.device_id)
                res.findings.append(Finding(e.device_id, None, (
                    f"enrollment refused: {err}; its {counts.get(e.device_id, 0)} entries "
                    f"and {len(cps[e.device_id])} checkpoints never enter")))
                continue
            if dev is None and res.signed_by is None:
                refused.add(e.device_id)
                res.complete = False
                res.findings.append(Finding(e.device_id, None, (
                    f"enrollment refused: {_untrusted(b)}; its {counts.get(e.device_id, 0)} "
                    f"entries and {len(cps[e.device_id])} checkpoints never enter")))
            elif dev is None:
                # the parser checked e.sig against b.signer (None: no signature line)
                ekey = None if e.sig is None or b.signer is None else b.signer.to_string()
                db.add_device(e.device_id, e.pub, e.label, e.board, e.fw, e.enrolled_at,
                              DeviceKey(e.pub).genesis_prev, ekey,
                              None if ekey is None else e.sig)
                res.enrolled += 1
            elif dev.pub != e.pub:
                res.findings.append(Finding(e.device_id, None, "enrollment with another key"
                                            " refused"))
            elif _signs_stored(dev, e, b.signer, res.signed_by):
                assert b.signer is not None and e.sig is not None
                db.sign_enrollment(e.device_id, b.signer.to_string(), e.sig)
                res.enrollments_signed += 1
    run = _Run(led, res, workers, cps, counts, refused)
    own = None
    if pool is None and workers != 1:      # (started only if a chunk asks: _Run.submit)
        pool = own = verify_pool.VerifyPool(workers)
    ahead = _Ahead(run, pool)
    if prepared is None:
        prepared = (Prepared(did, recs, None, None) for did, recs in chunks(
            runs_of(b.entries, CHUNK) if runs is None else runs, whole, CHUNK))
    try:
        for p, verdicts in ahead.chunks(prepared):
            run.chunk(p.device_id, p.recs, verdicts, p.checked, p.leaves)
    finally:
        ahead.discard()
        if own is not None:
            own.close()
    for did in sorted(set(cps) - run.started):
        run.chunk(did, [])
    with db.transaction():
        if run.carry is not None:
            run.flush()
        # (read now, not summed from the walks: another reconcile of the same ledger
        # may have accepted or held some of these devices' entries since their last
        # chunk here)
        res.pending = sum(db.pending_count(did, _tip(led, did))[0] for did in run.held)
    if digest is not None and res.complete:
        with db.transaction():
            db.add_bundle(digest, "" if b.signer is None else b.signer.to_string(),
                          int(time.time()), sorted((d, s) for d, s in b.max_seq.items()
                                                   if d in run.taken))
    led.sign_checkpoint()     # once per tree size: a rerun that changed nothing adds nothing
    return res


def _tip(led: Ledger, did: str) -> int:
    dev = led.device(did)
    assert dev is not None
    return dev.tip_seq


def _signs_stored(dev: Device, e: Enrollment, signer: note.Verifier | None,
                  trusted: str | None) -> bool:
    """Whether enrollment line `e` (its signature checked by the bundle parser against
    `signer`) signs the device's stored enrollment, which nobody signed yet: a device
    enrolled before collectors signed enrollments gets the signature when its trusted
    collector next exports it, if the collector signed exactly what the ledger holds
    (another label, say, is another statement and changes nothing)."""
    return (dev.enroll_sig is None and e.sig is not None and signer is not None
            and trusted is not None
            and (dev.label, dev.board, dev.fw, dev.enrolled_at)
            == (e.label, e.board, e.fw, e.enrolled_at))


def _untrusted(b: Bundle) -> str:
    if b.signer is None:
        return "the bundle is not signed by a collector"
    return (f"the bundle is signed by collector key {b.signer.to_string()}, which this "
            "ledger does not trust (`hashtrail ledger trust` adds it)")


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic collector for one device's batch (restoring its previous state).

    A batch allocates tens of thousands of small acyclic tuples (decoded entries,
    candidates, rows); left on, the collector rescans them over and over, about a tenth
    of a per-entry-signed reconcile. Reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Run:
    """One bundle's pass over its devices, a chunk of entries at a time; each chunk is
    one storage transaction (a killed run leaves whole chunks done, a rerun finishes)."""

    def __init__(self, led: Ledger, res: Result, workers: int | None,
                 cps: dict[str, list[BundleCheckpoint]], counts: Mapping[str, int],
                 refused: set[str]) -> None:
        self.led, self.res, self.workers = led, res, workers
        self.cps, self.counts, self.refused = cps, counts, refused
        self.started: set[str] = set()
        self.keys: dict[str, DeviceKey | None] = {}
        self.taken: set[str] = set()           # devices whose entries were looked at
        self.held: dict[str, int] = {}         # device -> entries held above its tip
        self.parsed: dict[bytes, EntryFields | _Walk] = {}   # held entries read this run
        self.refused_pool = False              # the pool could not start: threads
        self.carry: _Carry | None = None       # the last chunk's device's held entries
        # device -> how many held entries, no chain, were last found not to read back
        # as a spilled span (_respill)
        self.unspilled: dict[str, int] = {}
        # device -> whether its last chunk read its floats back over a forked span
        # (_device), and how many entries it held when two chunks in a row did
        # (_refloat)
        self.read_back: dict[str, bool] = {}
        self.unfloated: dict[str, int] = {}
        # device -> how many held entries it held when _float_of last could not float
        # the entries above a hole it wrote (_overfloat)
        self.overfloated: dict[str, int] = {}

    def chunk(self, did: str, recs: list[RawEntry], verdicts: _Submitted | None = None,
              checked: list[_Checked] | None = None, leaves: list[bytes] | None = None
              ) -> None:
        """One chunk of a device's entries; `checked` and `leaves`: what the bundle
        reader computed of them (chunk_reader.Prepared), else None."""
        try:
            self._chunk(did, recs, verdicts, checked, leaves)
        finally:          # answers this chunk did not read (refused, an error) are dropped
            if verdicts is not None:
                for v in verdicts.batches:
                    v.discard()

    def _chunk(self, did: str, recs: list[RawEntry], verdicts: _Submitted | None,
               checked: list[_Checked] | None, leaves: list[bytes] | None) -> None:
        if did in self.refused:
            return
        db = self.led.storage
        with _no_cyclic_gc(), db.transaction():
            if self.carry is not None and self.carry.did != did:
                self.flush()
            new_cps: list[int] = []
            if did not in self.started:
                self.started.add(did)
                self.keys[did] = self._start(did, new_cps)
            key = self.keys[did]
            if key is None:
                return
            self.taken.add(did)
            if len(self.parsed) > 4 * CHUNK:
                self.parsed.clear()
            new_cp = min(new_cps, default=None)
            if verdicts is None or verdicts.pub != key.pub:
                self._device(did, key, recs, new_cp, checked, leaves=leaves)
                return
            batches, cuts = verdicts.batches, verdicts.cuts
            i = 0
            while i < len(batches):
                # once entries are held, the rest in one walk (fewer walks over them)
                j = len(batches) if i and self.held[did] else i + 1
                part = recs[cuts[i]:cuts[j]]
                self._device(did, key, part, new_cp if i == 0 else None,
                             _pooled(batches[i:j], part), same_tx=i > 0)
                i = j

    def _device(self, did: str, key: DeviceKey, recs: list[RawEntry], new_cp: int | None,
                checked: list[_Checked] | None = None, same_tx: bool = False,
                leaves: list[bytes] | None = None) -> None:
        """One walk of the device's held entries and `recs`; what stays held is carried
        to the device's next chunk (_Carry). `same_tx`: the carry is from a walk in
        this transaction (under the ledger's write lock: nobody else wrote since)."""
        db = self.led.storage
        dev = self.led.device(did)
        assert dev is not None
        c = self.carry
        if c is None or not (same_tx or c.holds(db, dev)):
            if c is not None:          # someone else changed the device's rows: theirs
                self.flush(walk=False)  # and ours, all from `pending` (walked now)
                self._passed(c, key)
            c = _held_carry(db, did, dev, key)
            if c is None:
                # (rows at or below the tip are other copies of accepted entries: fork
                # candidates, looked at when they came, not walked: _forks)
                cands = _load_pending(db, did, dev.tip_seq + 1, self.parsed)
                c = _Carry(did, dev.tip_seq, dev.tip_head,
                           db.pending_rev(did), cands, None)
        if dev.tip_seq < 0 and (c.aside is not None or c.floating) and any(
                r.seq == 0 for r in recs):
            if checked is None:
                checked = _check_entries(key, recs, self.workers)
            if _says_less(key, [checked[i][1] for i, r in enumerate(recs) if r.seq == 0]
                          ) and _carry_signs_every(db, did, dev, key, c):
                # (an entry 0 that signs less came: what was set aside or floats may be
                # accepted under a later signature, _carry_signs_every; the general walk
                # takes them all)
                c = _read_back(db, did, c, self.parsed)
        if c.aside is not None:
            # (a device that signs every entry: what the walk reads of its rows set
            # aside, _set_aside)
            if checked is None:
                checked = _check_entries(key, recs, self.workers)
            followed = _Followed() if c.followed is None else c.followed
            followed.came(recs)
            c = _aside_in(db, did, dev, c, recs, checked, self.parsed)._replace(
                followed=followed)
        self.carry = None
        w = _device(self.led, db, did, dev, key, recs, self.res, self.workers, new_cp, c,
                    checked, leaves)
        self.held[did] = w.above
        tip = self.led.device(did)
        assert tip is not None
        rest, chain, rev, sp, fl, bey = w.rest, w.chain, w.rev, w.spill, w.floating, w.beyond
        # (rows set aside stay so while entries float above a hole: those are the
        # device's signed entries, the set-aside rows below them or beside)
        aside = c.aside if c.aside is not None and c.aside[1] > tip.tip_seq else None
        put = None if fl or sp is not None or bey is not None else _set_aside(
            db, did, tip, key, rest, aside)
        if put is not None:
            rest, aside = put
            rev = db.pending_rev(did)
        elif not (fl or bey is not None):
            aside = None
        back = bool(c.floating) and c.spill is not None and c.spill.forked and not fl
        # (how many are held in memory: only asked of entries that are no chain)
        n = sum(len(cs) for cs in rest.values()) if chain is None or back else 0
        if back and self.read_back.get(did):
            self.unfloated[did] = n
        self.read_back[did] = back
        cut = _float_of(db, did, tip, sp, rest, key) if (
            not fl and chain is None and self._refloat(did, n) and self._overfloat(did, n)
        ) else None
        if isinstance(cut, _TooManyFloats):
            # (written, but too many floats: they stay in memory, rows of `pending` now)
            self.overfloated[did] = n
            rest = {q: [x._replace(stored=True) for x in cs] if q >= cut.first else cs
                    for q, cs in rest.items()}
            rev = db.pending_rev(did)
        elif cut is not None:
            # (entries held above a hole, FLOAT_CHUNKS chunks or more: to `pending`,
            # remembered by their ends; those below stay, as a chain when they are one)
            rest, chain, fl, bey = cut
            rev = db.pending_rev(did)
        if chain and len(chain) >= SPILL_CHUNKS * CHUNK:
            # (the chain's rows are all the device holds, but for entries beside a
            # forked span: those in memory go to `pending` now, and the spilled span
            # is remembered by its ends)
            _hold(db, did, chain)
            lo, last = tip.tip_seq + 1, chain[-1]
            sp = _Spill(lo, last.seq, last.h, frozenset(_signed_heads(db, did, lo, last.seq)),
                        *_spill_flags(sp, chain))
            rest, chain, rev = {}, [], db.pending_rev(did)
        elif (aside is None and chain is None and not fl and self._refloat(did, n)
              and self._respill(did, n)):
            # The held entries are no chain from the tip (another entry beside one of
            # them, anyone's to write, or a hole), SPILL_CHUNKS chunks or more: in
            # memory, they were all walked again at every chunk and grew with each.
            # Written, they are read back from their rows as a later reconcile would
            # (_pending_spill): a spilled span, forked, and entries above a hole.
            _hold(db, did, [x for cs in rest.values() for x in cs])
            rev = db.pending_rev(did)
            c2 = _pending_spill(db, did, tip, key)
            if c2 is not None:
                rest, chain, sp, fl, bey = c2.cands, c2.chain, c2.spill, c2.floating, c2.beyond
            else:
                self.unspilled[did] = n
                rest = {q: [x._replace(stored=True) for x in cs] for q, cs in rest.items()}
        if aside is not None:
            chain = None           # (held rows: no chain from the tip, as _merge says)
        self.carry = _Carry(did, tip.tip_seq, tip.tip_head, rev, rest, chain, sp, fl, bey,
                            aside, None if aside is None else c.followed)

    def _refloat(self, did: str, n: int) -> bool:
        """Whether `n` held entries, read back from above the holes over a forked span,
        may be written and floated again: unless two chunks in a row read them back
        (a made-up log-altered report among them, or entries made up for the span's
        seqs in every chunk: anyone can write those), then only once they are twice as
        many. Each read-back reads all of them: once per chunk it was quadratic in
        time, while in memory they are walked as the general walk walks them."""
        return n >= 2 * self.unfloated.get(did, 0)

    def _overfloat(self, did: str, n: int) -> bool:
        """Whether to try floating `n` held entries again once _float_of wrote them but
        could not float them (_TooManyFloats): only once they are twice as many. Each
        try reads their rows' links; it wrote the new ones as well, so the carry did not
        hold at the next chunk, which read every held row again from `pending` too:
        once per chunk, that was quadratic in time (36 s for 160,000 entries, every
        other one left out, when more than MAX_FLOATS floats were not floated)."""
        return n >= 2 * self.overfloated.get(did, 0)

    def _respill(self, did: str, n: int) -> bool:
        """Whether to write `n` held entries that are no chain and read them back as a
        spilled span (_device): SPILL_CHUNKS chunks of them or more, and twice as many
        as when that last found them not so (then they stay in memory: a read of all
        of them per chunk would be quadratic)."""
        return n >= max(SPILL_CHUNKS * CHUNK, 2 * self.unspilled.get(did, 0))

    def flush(self, walk: bool = True) -> None:
        """Write the carried entries that are not rows of `pending` yet (in the caller's
        transaction), dropping those another reconcile accepted meanwhile, and forget
        them. With `walk`, when another reconcile changed the device since the carry's
        walk (its rows, its tip, or a checkpoint over a carried entry), walk the device
        once more from `pending`: that reconcile could not see the carried entries,
        and this run has no later chunk of the device to walk them with (before the
        carry, they were rows when it looked: a hole it filled, a checkpoint it
        brought, a fork it accepted counted with them; test_reconcile_carry_attack.py)."""
        c, self.carry = self.carry, None
        if c is None:
            return
        db = self.led.storage
        new = [x for cs in c.cands.values() for x in cs if not x.stored]
        dev = self.led.device(c.did)
        if new and dev is not None and dev.tip_seq > c.tip_seq:
            acc = db.entry_hashes(c.did, min(x.seq for x in new), dev.tip_seq)
            new = [x for x in new if acc.get(x.seq) != x.h]
        # (only entries nobody else could see need it: `new`)
        stale = bool(new) and dev is not None and (
            not c.holds(db, dev) or _covered(c, _signed_heads(db, c.did, c.tip_seq + 1)))
        # (the rows are the carry's when nobody else changed them since its walk: then
        # their shape is stored for the next run, _held_carry)
        known = dev is not None and c.holds(db, dev)
        _hold(db, c.did, new)
        if not stale:
            if known and dev is not None:
                shape = _carry_shape(c, dev, db.pending_rev(c.did))
                if shape is not None:
                    db.set_held_shape(c.did, shape)
            return
        # Another reconcile may have held an unsigned copy of a carried signed entry
        # meanwhile, a row add_pending leaves as it is: the signature is what lets the
        # entry in, so it goes onto that row, as _merge's sign_pending does. (While
        # the carry holds, nobody else wrote the device's rows.)
        for x in new:
            if x.sig is not None:
                db.sign_pending(c.did, x.seq, x.h, x.sig)
        key = self.keys.get(c.did)
        if walk and key is not None:
            self._passed(c, key)
            self._device(c.did, key, [], None)
            self.carry = None              # (every entry it holds is a row now)

    def _passed(self, c: _Carry, key: DeviceKey) -> None:
        """Fork candidates among the rows another reconcile's tip passed since the
        carry's walk (the carried entries it could not see, written now, and others):
        walks load only rows above the tip (_without_low), so they are looked at here,
        a chunk of seqs at a time."""
        db = self.led.storage
        dev = self.led.device(c.did)
        assert dev is not None
        for lo in range(c.tip_seq + 1, dev.tip_seq + 1, CHUNK):
            block = _load_pending(db, c.did, lo, {}, min(lo + CHUNK - 1, dev.tip_seq))
            if block:
                _forks(self.led, db, c.did, key, block, self.res, dev.tip_seq + 1,
                       down=False)

    def submit(self, did: str, recs: list[RawEntry], pool: verify_pool.VerifyPool
               ) -> _Submitted | None:
        """Hand a chunk's signatures to the pool, BATCH entries a batch, when that pays
        (module docstring); None: checked on threads when its turn comes."""
        if did in self.refused or (did in self.keys and self.keys[did] is None):
            return None
        if self.refused_pool or (not pool.running
                                 and sum(self.counts.values()) < COLD_MIN):
            return None
        signed = sum(1 for r in recs if r.sig is not None)
        if signed < POOL_MIN or 2 * signed < len(recs):
            return None
        dev = self.led.device(did)
        if dev is None or dev.revoked_at is not None:
            return None
        try:
            check_pub(dev.pub)
        except FormatError:
            return None
        if not pool.start_or_warn():
            self.refused_pool = True
            return None
        cuts = _cuts(len(recs))
        return _Submitted(dev.pub, cuts, [
            pool.submit(dev.pub, [r.body for r in recs[lo:hi]], [r.sig for r in recs[lo:hi]])
            for lo, hi in itertools.pairwise(cuts)])

    def _start(self, did: str, new_cps: list[int]) -> DeviceKey | None:
        """The device's key once it may take entries, after its bundle checkpoints are
        checked and kept (seqs of those new to the ledger into `new_cps`); None (and a
        finding) when it may not."""
        res, led, cps, n = self.res, self.led, self.cps[did], self.counts.get(did, 0)
        dev = led.device(did)
        if dev is None:
            res.complete = False
            res.findings.append(Finding(did, None, f"unknown device: {n} entries and "
                                        f"{len(cps)} checkpoints refused (not enrolled)"))
            return None
        if dev.revoked_at is not None:
            res.findings.append(Finding(did, None, f"device revoked ({dev.revoked_reason}): "
                                        f"{n} entries refused"))
            return None
        try:       # a key trusted before keys were checked as points: this device only
            key = DeviceKey(dev.pub)
        except FormatError as err:
            res.findings.append(Finding(did, None, f"enrolled key refused ({err}): "
                                        f"{n} entries refused"))
            return None
        for bc in cps:
            try:
                cp = key.checkpoint(bc.cose)
            except HashtrailError as e:
                res.findings.append(Finding(did, None, f"checkpoint refused: {e}"))
                continue
            if led.storage.add_device_checkpoint(
                    did, hashlib.sha256(bc.cose).digest(), bc.cose, bc.nonce, cp.seq,
                    cp.head):
                res.checkpoints += 1
                new_cps.append(cp.seq)
        return key


class _Carry(NamedTuple):
    """The entries a device holds after a walk, kept in memory for its next chunk, with
    what `pending` held of them when they were walked.

    Why: a device that signs rarely holds every chunk of its entries until the chunk
    with the signature comes. Written to `pending` and read back at each chunk, that
    tail was read again by every later chunk: quadratic in the unsigned span (4.5M rows
    read back for 10^6 entries of devices signing once per 50,000; docs/LEDGER.md).
    Carried, a held entry is walked from memory and written to `pending` once, only if
    it is still held when the run moves on to another device (_Run.flush) or ends;
    one accepted meanwhile is never written. What bounds the carry's memory: a chain
    of SPILL_CHUNKS chunks or more is written then and kept as its ends (`spill`,
    _Spill), read back a chunk at a time only when a signature accepts it. A run
    killed before that loses nothing the bundle does not still hold: the bundle is
    recorded as seen only at the end.
    Before the next chunk uses them, the device's tip and `pending` revision must be
    what they were (`holds`): another reconcile of the same ledger (PostgreSQL, many
    collectors) that accepted, held or signed this device's entries in between sends
    the walk back to `pending`, after the carried entries are written there. The same
    change after the device's last chunk (or a checkpoint over a carried entry) is
    seen when the carry is written (_Run.flush), which then walks the device once
    more: that reconcile could not see the carried entries."""

    did: str
    tip_seq: int
    tip_head: bytes
    rev: int                       # the device's `pending` revision after the walk
    cands: dict[int, list[_Cand]]
    # `cands` as the one linked chain from the tip that no signature covered, in seq
    # order, when _extend left them so: the next _extend walks on from its end
    # instead of walking them again (None: not known to be such a chain)
    chain: list[_Cand] | None
    # the chain's first entries, when they were written to `pending` and dropped from
    # memory (`cands` and `chain` then hold the rest of it)
    spill: _Spill | None = None
    # entries held above holes, rows of `pending` only (_Float; not in `cands`): runs
    # of linked entries in seq order, a hole (or a broken link) between each two
    floating: tuple[_Float, ...] = ()
    # where `floating` stops when there are more (_Beyond; None: it holds them all)
    beyond: _Beyond | None = None
    # (lo, hi): a device that signs every entry, its held seqs from lo to hi with
    # unsigned rows only are rows of `pending`, not in memory (_set_aside); those
    # `cands` has are there with all their rows, and those above a float are the
    # floats' (_aside_in)
    aside: tuple[int, int] | None = None
    # while rows are set aside: how far each log-altered report's links were followed
    # up without reaching a signature (_Followed), kept from chunk to chunk
    followed: _Followed | None = None

    def holds(self, db: LedgerStorage, dev: Device) -> bool:
        return ((dev.tip_seq, dev.tip_head) == (self.tip_seq, self.tip_head)
                and db.pending_rev(self.did) == self.rev)


def _chain_end(chain: list[_Cand] | None, sp: _Spill | None, tip: Device
               ) -> tuple[int, bytes]:
    """(seq, hash) of the last entry of the chain from the tip that a walk left: its
    last carried entry, else the spilled span's end, else the tip itself."""
    if chain:
        return chain[-1].seq, chain[-1].h
    if sp is not None:
        return sp.last, sp.head
    return tip.tip_seq, tip.tip_head


def _report_in(chain: list[_Cand] | None) -> int | None:
    """The seq of the first log-altered report in `chain` (None: none)."""
    return next((c.seq for c in chain or () if c.f.kind == KIND_LOG_ALTERED), None)


def _spill_flags(sp: _Spill | None, chain: list[_Cand] | None
                 ) -> tuple[bool, bool, int | None]:
    """(forked, stops, altered) of a span from the tip made of spilled span `sp` (if
    any) and the chain above it: the span's, and a report of the chain's when the span
    has none (_Spill)."""
    if sp is None:
        return False, False, _report_in(chain)
    return sp.forked, sp.stops, sp.altered if sp.altered is not None else _report_in(chain)


def _hold(db: LedgerStorage, did: str, cands: Iterable[_Cand]) -> None:
    """Write the candidates that are not rows of `pending` yet there, with what the walk
    reads of each (prev, kind, t)."""
    db.add_pending([(did, x.seq, x.h, x.body, x.sig, x.f.prev, x.f.kind, x.f.t)
                    for x in cands if not x.stored])


def _covered(c: _Carry, heads: set[tuple[int, bytes]]) -> bool:
    """Whether a device checkpoint (`heads`) is over one of the carried entries."""
    return any(x.h == h for seq, h in heads for x in c.cands.get(seq, ()))


class _Spill(NamedTuple):
    """The first entries of a carried chain (_Carry.chain), rows of `pending` now and no
    longer in memory: seqs first..last (first is the device's tip + 1), linked from the
    tip, one copy each (other entries for some of its seqs may be held beside it:
    `forked`), none signed, a policy 0 device (a log-altered report among them counts
    once a signature covers it: `altered`).

    Why: a device that leaves a long span unsigned (rarely, never, or a hostile bundle
    that says so) would otherwise hold every entry of it in memory, about 1.5 KB each,
    until a signature comes. The chain is walked on from `head` without these entries:
    nothing is accepted while no signature covers any of them or anything after them,
    and nothing else reads their bodies. When something does (a signature further
    on, a device checkpoint over one of them), they are accepted from `pending` a
    CHUNK at a time (_take_spilled). A chunk _extend hands to _merge is walked on from
    `head` as well (_merges_on says when: nothing in it for the spilled seqs but
    copies of them, signed ones accepting the span up to them first, _signs_spilled, and
    other unsigned entries, held beside it, _fork_spill); otherwise it gets them back
    whole first (_unspill)."""

    first: int
    last: int
    head: bytes                         # entry `last`'s hash
    # device checkpoints over first..last seen not to be over these entries (a fork's):
    # a checkpoint not among them is looked up in `pending` once
    checked: frozenset[tuple[int, bytes]]
    # `pending` holds other entries for some of these seqs too (unsigned, no device
    # signature over them or anything chained after them: _fork_spill), so the chain's
    # rows are told from them by following prev links down from `head` (_chain_tops)
    forked: bool = False
    # one of them links to the chain's entry before it (a fork): where the general walk
    # stops while no device signature covers the chain past it (_advance)
    stops: bool = False
    # the lowest seq of a log-altered report among these entries (None: none): it has
    # no effect while no device signature covers it or anything chained after it
    # (_altered_stop); one that does sends the span to the general walk (_unspill)
    altered: int | None = None

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class _Float(NamedTuple):
    """Entries held above a hole, rows of `pending` and no longer in memory: seqs
    first..last, one linked copy each, none signed, of a device
    whose accepted entry 0 says it does not sign every entry (of one that does: its own
    signed entries, one a seq, below); below `first` a seq that nothing held fills (the
    hole), or, for a float above another, an entry that does not link to it, so
    nothing of them can be accepted until it is filled.

    Why: a bundle that leaves out one entry (a collector that missed it, or a hostile
    one) would otherwise have every later entry of the device held in memory and
    walked again at every chunk, until the hole is filled: memory and time growing
    with the span. They are written once; a chunk that goes on from `head` is written
    too, without a walk; the chunk that fills the hole (its chain reaching first - 1
    with hash `prev`) makes them one spilled chain from the tip (_Spill), accepted a
    block at a time as far as a signature covers. Copies of their entries in a chunk
    change nothing and are dropped from it; other unsigned entries for their seqs (a
    fork's, or made up: anyone can write one) are held beside them (`forked`), and
    others above them make more floats (a second hole: _Carry.floating, _above_hole);
    a log-altered report among them is kept (`altered`) while no device signature may
    cover it; a chunk with a signed entry at their seqs or above, or a device
    checkpoint at or above such a report, reads them back whole first (_Walked as
    before).

    A device that signs every entry (POLICY_EVERY_ENTRY, every board's default) holds
    entries above a hole too: a collector that missed one entry, or a second
    collector's bundle reconciled before the first's, held every later one in memory
    (137 MB for 60,000). Its floats are its own signed entries, one a seq, no report;
    unsigned ones for their seqs (anyone's to write) are held beside them (`forked`:
    the general walk never takes one while a signed one is there), and a seq with
    only unsigned ones ends a float (a hole; those below the lowest float, or between
    two once the lower is joined, are carried in memory and walked). The filled hole
    accepts a float from `pending` a block at a time, each entry under its own
    signature, as the general walk would (_device). A second signed entry for a seq
    (a fork: only the device's key makes one) or a log-altered report among them is
    the general walk's: read back whole."""

    first: int
    last: int
    prev: bytes                         # entry `first`'s prev: what the hole must end with
    head: bytes                         # entry `last`'s hash
    # `pending` holds other entries for some of these seqs too (unsigned, no report:
    # _above_hole); the float's own are told from them by following prev links down
    # from `head`, and the spilled span the hole's filling makes is forked (_Spill)
    forked: bool = False
    # the lowest seq of a log-altered report on the float's chain, the one that ends in
    # `head` (None: none): it has no effect while no device signature covers it; one
    # that does reads the floats back (_device), and the filled hole passes it on
    # (_Spill.altered)
    altered: int | None = None
    # the lowest seq of a log-altered report among these seqs' rows, on the chain or
    # beside it (None: none): where _covered_float_report starts following reports'
    # links up
    reported: int | None = None

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class _Beyond(NamedTuple):
    """Where the floats a carry keeps (_Carry.floating) stop when the rows above the
    hole are more than MAX_FLOATS floats: those from seq `first` up (the first seq of
    the next float) are rows of `pending` only, none signed, of no shape kept.

    Why: a bundle that leaves out every other entry of a device (a collector that lost
    them, or a hostile one: anyone can make one) makes one float of each entry. Kept
    as floats they cost about 1 KB each; past MAX_FLOATS they stayed in memory as
    candidates and were walked again at every chunk: 199 MB and 19 s for 320,000
    entries. Nothing above a hole can be accepted until it is filled, and the floats
    are filled from the lowest up: the rows from `first` up are read as the next
    MAX_FLOATS floats only once the floats below them are all joined to the chain
    (_device). Meanwhile a chunk's unsigned entries there are written without a walk
    (_above_hole); a signed one reads all back whole, as for the floats.
    `report`: the lowest seq of a log-altered report among them (None: none), where
    _covered_float_report starts following reports' links up past the floats: a device
    checkpoint they reach reads them all back."""

    first: int
    report: int | None


def _set_aside(db: LedgerStorage, did: str, tip: Device, key: DeviceKey,
               rest: dict[int, list[_Cand]], aside: tuple[int, int] | None
               ) -> tuple[dict[int, list[_Cand]], tuple[int, int] | None] | None:
    """The held candidates `rest` of a device that signs every entry without those at
    seqs where all are unsigned, written to `pending` (in the caller's transaction),
    and the seqs where such rows are now kept only there (_Carry.aside); None: kept
    as they are (fewer than SPILL_CHUNKS chunks of them and none set aside before, or
    another policy).

    Why: such a device's unsigned entry is never accepted (each needs its own
    signature), so the general walk stops at the first one from the tip. But every
    such entry stayed in memory, and was walked again at every chunk: a collector that
    strips the signatures, or anyone writing unsigned entries for the device's seqs,
    grew reconcile by about 1.3 KB an entry (38 MB for 30,000). What a walk reads of
    them is read back for it (_aside_in): the rows at the seqs the chunk's entries and
    the held ones are at and just above (where the walk stops, and says why), and at
    the tip's next seq: a branch that leaves the accepted chain at or below the tip
    and goes on through set-aside seqs passes there, and _forks finds where it starts
    from that row (from a row further up, a device checkpoint's or a clone's, it would
    walk down to the same; up from there, _pending_branch follows `pending`). A
    log-altered report stays in memory: a signature further up its chain makes it
    count (_altered_stop), and its links are followed up through the rows set aside in
    `pending` (_signed_ahead `up`). Anyone can write an unsigned one: when a report
    held kept them all in memory, one made-up report undid setting aside (up to 37.1 MB
    for 30,000).
    Of a device with no accepted entry, the entries held for seq 0 say whether it
    signs every entry (_firsts_sign_every)."""
    lo = tip.tip_seq + 1              # (`aside` reaches above it: the caller's check)
    if aside is None and sum(len(cs) for cs in rest.values()) < SPILL_CHUNKS * CHUNK:
        return None
    put = [q for q, cs in rest.items() if q >= lo and all(
        x.sig is None and x.f.kind != KIND_LOG_ALTERED for x in cs)]
    if aside is None and (sum(len(rest[q]) for q in put) < SPILL_CHUNKS * CHUNK
                          or not _held_signs_every(db, did, tip, key, rest.get(0, ()))):
        return None
    if not put:
        return rest, None if aside is None else (max(aside[0], lo), aside[1])
    _hold(db, did, [x for q in put for x in rest[q]])
    bounds = (min(put), max(put)) if aside is None else (
        max(min(aside[0], *put), lo), max(aside[1], *put))
    drop = set(put)
    return {q: cs for q, cs in rest.items() if q not in drop}, bounds


def _own_firsts(key: DeviceKey, firsts: Iterable[object]) -> list[EntryFields]:
    """Those of `firsts` (decoded entries for seq 0) that can be the device's accepted
    entry 0: its key's, bound to its genesis."""
    return [f for f in firsts if type(f) is EntryFields and f.prev == key.genesis_prev
            and _own_first(f, key, key.genesis_prev)]


def _says_less(key: DeviceKey, firsts: Iterable[object]) -> bool:
    """Whether one of `firsts` is an entry 0 of the key that does not declare that the
    device signs every entry."""
    return any(signing_policy(f) != POLICY_EVERY_ENTRY for f in _own_firsts(key, firsts))


def _firsts_sign_every(key: DeviceKey, firsts: Iterable[object]) -> bool:
    """Whether the entries held for seq 0 of a device that has no accepted entry
    (`firsts`, decoded) say that it signs every entry: one of them at least is an entry
    0 of its key, and every such one declares POLICY_EVERY_ENTRY.

    Why they may: its accepted entry 0 will be one of them or one that comes later, and
    until that comes every chain held from seq 0 starts at an entry 0 that says every
    entry needs its own signature: none of its unsigned entries can be accepted under
    a later one. A collector that strips every signature of such a device, entry 0's
    too (or anyone: unsigned entries are anyone's to write), left the ledger with no
    policy to read, and every held entry stayed in memory and was walked again at
    every chunk: 38.3 MB for 30,000. An entry 0 that says less (made up: anyone can
    write one) reads back whatever was set aside (_read_back)."""
    own = _own_firsts(key, firsts)
    return bool(own) and all(signing_policy(f) == POLICY_EVERY_ENTRY for f in own)


def _held_signs_every(db: LedgerStorage, did: str, dev: Device, key: DeviceKey,
                      firsts: Iterable[_Cand],
                      lowest: Callable[[], Iterable[bool]] = tuple) -> bool:
    """Whether the device's held rows are read as a device's that signs every entry
    (its unsigned rows set aside, its signed ones floating: _set_aside, _float_runs
    `every`): its accepted entry 0 says so; with none accepted, its entries held for
    seq 0 (`firsts`, in memory, else those in `pending`) say so (_firsts_sign_every),
    or with none of its key held there, a row held at the lowest seq held is signed
    (`lowest()`: whether each is, asked only then; floats only, no rows set aside). Until entry 0 is
    accepted, an entry 0 that says less reads them back (_read_back).

    Why: until its entry 0 is accepted, nothing of it is, and its signed entries
    above a hole at 0 (a collector that missed entry 0, or a second collector's bundle
    reconciled before the first's) stayed in memory, walked again at every chunk:
    41.9 MB for 30,000; and so did those above its entries stripped from entry 0 on."""
    if dev.tip_seq >= 0:
        return _policy(db, did) == POLICY_EVERY_ENTRY
    # (rows held for seq 0 that a walk carries are all in memory: `pending` is read
    # only when it carries none)
    fs = [x.f for x in firsts] or [x.f for x in _load_pending(db, did, 0, {}, 0).get(0, ())]
    if _own_firsts(key, fs):
        return _firsts_sign_every(key, fs)
    return any(lowest())


def _carry_signs_every(db: LedgerStorage, did: str, dev: Device, key: DeviceKey,
                       c: _Carry) -> bool:
    """_held_signs_every of a carry's rows (the lowest of them floating: its floats'
    first seq)."""
    def lowest() -> list[bool]:
        if not c.floating:
            return []
        fl = c.floating[0]
        return [r[2] for r in db.pending_links(did, fl.first, fl.first) if r[3] == fl.prev]
    return _held_signs_every(db, did, dev, key, c.cands.get(0, ()), lowest)


def _read_back(db: LedgerStorage, did: str, c: _Carry,
               parsed: dict[bytes, EntryFields | _Walk]) -> _Carry:
    """The carry with its rows set aside and its floats read back into memory."""
    if c.aside is not None:
        c = _aside_back(db, did, c, parsed)
    return _unfloat(db, did, c) if c.floating or c.beyond is not None else c


def _aside_back(db: LedgerStorage, did: str, c: _Carry,
                parsed: dict[bytes, EntryFields | _Walk]) -> _Carry:
    """The carry with every row set aside (_set_aside) loaded, and none set aside."""
    lo, hi = _aside_seqs(c)
    cands = dict(c.cands)
    for q, cs in _load_pending(db, did, lo, parsed, hi).items():
        cands.setdefault(q, cs)
    return c._replace(cands=cands, aside=None, followed=None)


def _aside_seqs(c: _Carry) -> tuple[int, int]:
    """The seqs a carry's rows set aside are at, from and to: not those of entries held
    above a hole (rows of `pending` only, the floats')."""
    assert c.aside is not None
    lo, hi = c.aside
    if c.floating:
        hi = min(hi, c.floating[0].first - 1)
    elif c.beyond is not None:
        hi = min(hi, c.beyond.first - 1)
    return lo, hi


def _aside_in(db: LedgerStorage, did: str, dev: Device, c: _Carry, recs: list[RawEntry],
              checked: list[_Checked], parsed: dict[bytes, EntryFields | _Walk]) -> _Carry:
    """The carry with the rows set aside (_set_aside) that a walk of `recs` reads loaded
    into `cands`: at the seqs of the chunk's entries and of the held ones and the seq
    above each, and at the tip's next."""
    lo, hi = _aside_seqs(c)
    tip = dev.tip_seq
    want = {tip + 1}
    for r in recs:
        want.add(r.seq)
        want.add(r.seq + 1)
    want.update(q + 1 for q in c.cands)
    seqs = sorted(q for q in want if lo <= q <= hi and q not in c.cands)
    if not seqs:
        return c
    cands = dict(c.cands)
    cands.update(_rows_of(db, did, seqs, parsed))
    return c._replace(cands=cands)


def _pending_aside(db: LedgerStorage, did: str, dev: Device, key: DeviceKey
                   ) -> _Carry | None:
    """The held rows of a device that signs every entry as a later reconcile keeps them
    (_set_aside): those at seqs with a signed row loaded, those at seqs with unsigned
    rows only, SPILL_CHUNKS chunks of them or more, set aside (a log-altered report
    loaded, as _set_aside leaves it). None: not so (fewer, another policy). Reads every
    row's links once, not their bodies."""
    if db.pending_count(did, dev.tip_seq)[0] < SPILL_CHUNKS * CHUNK:
        return None
    if not _held_signs_every(db, did, dev, key, ()):
        return None
    keep: list[int] = []
    lo = hi = -1
    n = 0
    for group in _held_links(db, did, dev.tip_seq + 1):
        q = group[0][0]
        if any(r[2] or r[4] == KIND_LOG_ALTERED for r in group):
            keep.append(q)
            continue
        n += len(group)
        hi = q
        if lo < 0:
            lo = q
    if n < SPILL_CHUNKS * CHUNK:
        return None
    return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did),
                  _rows_of(db, did, keep), None, aside=(lo, hi))


def _rows_of(db: LedgerStorage, did: str, seqs: list[int],
             parsed: dict[bytes, EntryFields | _Walk] | None = None
             ) -> dict[int, list[_Cand]]:
    """The device's held rows at `seqs` (sorted) as candidates (_load_pending), read in
    runs of seqs close together: seqs spread over a long held span do not read all
    of it."""
    out: dict[int, list[_Cand]] = {}
    i = 0
    while i < len(seqs):
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] - seqs[j] <= 8:
            j += 1
        got = _load_pending(db, did, seqs[i], {} if parsed is None else parsed, seqs[j])
        out.update((q, got[q]) for q in seqs[i:j + 1] if q in got)
        i = j + 1
    return out


class _NeedSpilled(Exception):
    """_extend would accept spilled entries (or must know whether a checkpoint covers
    one): raised before it does anything, so the walk is retried once they are
    resolved (_unspill)."""


def _unspill(led: Ledger, db: LedgerStorage, did: str, c: _Carry, res: Result,
             whole: bool, key: DeviceKey | None = None) -> _Carry:
    """The carry with its spilled entries resolved. `whole`: all read back into memory
    (the chunk goes to _merge, which walks every held entry). Otherwise the device
    checkpoints over the spilled seqs not seen before are looked up: those over a
    spilled entry accept the chain up to the highest of them; if there are none, a
    signature after the spilled entries covers them all (the reason _extend asked):
    all are accepted. What is accepted is read from `pending` a block at a time."""
    sp = c.spill
    assert sp is not None
    if whole:
        rows = _load_pending(db, did, sp.first, {}, sp.last)
        cands = dict(rows)
        cands.update(c.cands)
        return c._replace(cands=cands, spill=None,
                          chain=None if c.chain is None or sp.forked else [
                              cs[0] for _, cs in sorted(rows.items())] + c.chain)
    new = {x for x in _signed_heads(db, did, sp.first, sp.last) if x not in sp.checked}
    upto, top = sp.last, sp.head
    if new:
        over = [(q, h) for q, h in new if any(r[1] == h for r in db.pending_links(did, q, q))]
        if sp.forked and over:
            # (over the chain's entry, or another held one: a device signature over
            # another branch, whose choice the general walk makes with all in memory)
            tops = _chain_tops(db, did, sp, [q for q, _ in over])
            if any(tops[q] != h for q, h in over):
                return _unspill(led, db, did, c, res, whole=True)
        if not over:
            return c._replace(spill=sp._replace(checked=sp.checked | new))
        upto, top = max(over)
    if sp.altered is not None and upto >= sp.altered:
        # (a device signature over a log-altered report or after it: the general walk
        # applies the report's stop, with the span in memory)
        return _unspill(led, db, did, c, res, whole=True)
    return _spilled_to(led, db, did, c, upto, top, sp.checked | new, res, key)


def _spilled_to(led: Ledger, db: LedgerStorage, did: str, c: _Carry, upto: int,
                top: bytes, checked: frozenset[tuple[int, bytes]], res: Result,
                key: DeviceKey | None) -> _Carry:
    """The carry once its spilled span is accepted up to seq `upto`, whose entry's hash
    is `top` (_take_spilled); `checked`: the device checkpoints over the span seen not
    to be over it."""
    sp = c.spill
    assert sp is not None
    _take_spilled(led, db, did, upto, res, (top, key, sp) if sp.forked else None)
    dev = led.device(did)
    assert dev is not None and dev.tip_seq == upto
    rest = None if upto == sp.last else _Spill(
        upto + 1, sp.last, sp.head, frozenset(x for x in checked if x[0] > upto),
        *(_fork_state(db, did, upto + 1, sp.last, sp.head) if sp.forked else (False, False)),
        sp.altered)
    return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did), c.cands, c.chain,
                  rest)


# Tests set this: every stored shape used is checked against _pending_spill's reading
# of the rows (tests/host/test_reconcile_spill.py)
_VERIFY_SHAPES = False


def _held_carry(db: LedgerStorage, did: str, dev: Device, key: DeviceKey) -> _Carry | None:
    """_pending_spill's reading of the device's held rows, from the shape stored for
    them (storage `held_shape`) while it names their current `pending_rev` and tip;
    else read from the rows and stored.

    Why: a small bundle onto a device holding a long span (entries above a hole, a
    device that never signs) read the span's links once per reconcile to learn its
    shape: 1.7 s for 1,000 new entries onto 10^6 held, where the same bundle onto a
    ledger holding nothing takes 0.05 s. The shape is written when a run leaves the
    rows (_Run.flush), so the next run reads one row."""
    rev = db.pending_rev(did)
    text = db.held_shape(did)
    if text is not None:
        try:
            stored = json.loads(text)
            valid = stored["rev"] == rev and stored["tip"] == dev.tip_seq
            c = _from_shape(db, did, dev, key, rev, stored) if valid else None
        except (ValueError, KeyError, IndexError, TypeError):
            valid = False            # (not text reconcile wrote: read the rows instead)
        if valid:
            if _VERIFY_SHAPES:
                assert _same_carry(c, _read_held(db, did, dev, key)), (stored, did)
            return c
    c = _read_held(db, did, dev, key)
    if c is not None and c.aside is not None:
        db.set_held_shape(did, _shape_text(rev, dev.tip_seq, False, fl=c.floating,
                                           beyond=c.beyond,
                                           aside=(*c.aside, sorted(c.cands))))
        return c
    db.set_held_shape(did, _shape_text(
        rev, dev.tip_seq, c is None, *(() if c is None else (
            c.spill, c.floating, (c.chain[0].seq, c.chain[-1].seq) if c.chain else None,
            c.beyond, (min(c.cands), max(c.cands)) if c.cands and not c.chain
            else None))))
    return c


def _read_held(db: LedgerStorage, did: str, dev: Device, key: DeviceKey) -> _Carry | None:
    """The device's held rows as a carry that does not load them whole (_pending_spill,
    else _pending_aside); None: load them as they are."""
    c = _pending_spill(db, did, dev, key)
    return c if c is not None else _pending_aside(db, did, dev, key)


def _same_carry(a: _Carry | None, b: _Carry | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.spill, a.floating, a.beyond, [x.h for x in a.chain or ()],
            sorted(a.cands), a.aside) == (b.spill, b.floating, b.beyond,
                                          [x.h for x in b.chain or ()], sorted(b.cands),
                                          b.aside)


def _shape_text(rev: int, tip: int, none: bool, sp: _Spill | None = None,
                fl: tuple[_Float, ...] = (), short: tuple[int, int] | None = None,
                beyond: _Beyond | None = None, loose: tuple[int, int] | None = None,
                aside: tuple[int, int, list[int]] | None = None) -> str:
    """A held shape as storage `held_shape` text: `none` (the rows are read whole), or
    a spilled span, entries above a hole (and where they stop), and the seqs of a
    short chain below them, or of rows below them that are no chain (`loose`: a
    device that signs every entry, its unsigned rows below its floats), or the seqs
    a device that signs every entry has rows set aside from and to, and the seqs of
    the rows loaded (`aside`, _pending_aside)."""
    return json.dumps({
        "aside": aside,
        "rev": rev, "tip": tip, "none": none,
        "spill": None if sp is None else [sp.first, sp.last, sp.head.hex(), sp.forked,
                                          sp.stops, sp.altered],
        "float": [[f.first, f.last, f.prev.hex(), f.head.hex(), f.forked, f.altered,
                   f.reported] for f in fl],
        "short": None if short is None else list(short),
        "loose": None if loose is None else list(loose),
        "beyond": None if beyond is None else list(beyond)})


def _from_shape(db: LedgerStorage, did: str, dev: Device, key: DeviceKey, rev: int,
                s: dict[str, Any]) -> _Carry | None:
    """The carry a stored shape (_shape_text) describes: what _pending_spill would read
    from the same rows (a short chain below a hole is loaded, as it does)."""
    if s["none"]:
        # (_carry_shape says so of rows _pending_spill reads whole; of a device that
        # signs every entry, they may be rows to set aside)
        return _pending_aside(db, did, dev, key)
    fl = tuple(_Float(f[0], f[1], bytes.fromhex(f[2]), bytes.fromhex(f[3]), bool(f[4]),
                      f[5], f[6]) for f in s["float"])
    bey = None if s["beyond"] is None else _Beyond(*s["beyond"])
    if s.get("aside") is not None:
        lo, hi, keep = s["aside"]
        return _Carry(did, dev.tip_seq, dev.tip_head, rev, _rows_of(db, did, keep), None,
                      None, fl, bey, (lo, hi))
    sp = None if s["spill"] is None else _Spill(
        s["spill"][0], s["spill"][1], bytes.fromhex(s["spill"][2]), frozenset(),
        *s["spill"][3:])
    if s.get("loose") is not None:
        lo, hi = s["loose"]
        return _Carry(did, dev.tip_seq, dev.tip_head, rev,
                      dict(_load_pending(db, did, lo, {}, hi)), None, sp, fl, bey)
    if s["short"] is None:
        return _Carry(did, dev.tip_seq, dev.tip_head, rev, {}, [], sp, fl, bey)
    lo, hi = s["short"]
    held = _load_pending(db, did, lo, {}, hi)
    return _Carry(did, dev.tip_seq, dev.tip_head, rev, dict(held),
                  [held[q][0] for q in range(lo, hi + 1)], sp, fl, bey)


def _carry_shape(c: _Carry, dev: Device, rev: int) -> str | None:
    """The shape text of the rows a carry leaves in `pending` once written (_Run.flush),
    when it is what _pending_spill would read from them; None: not known so (the next
    run reads the rows)."""
    if c.chain is None or c.beyond is not None or c.aside is not None:
        return None    # (past MAX_FLOATS floats, what _pending_spill reads from their
                       # first is not what a carry with some of them joined keeps)
    sp, fl, chain = c.spill, c.floating, c.chain
    lo, tip = dev.tip_seq + 1, dev.tip_seq
    last, head = _chain_end(chain, sp, dev)
    forked, stops, altered = _spill_flags(sp, chain)
    below = last - lo + 1
    if not fl:
        if below < SPILL_CHUNKS * CHUNK:
            return _shape_text(rev, tip, True)
        return _shape_text(rev, tip, False,
                           _Spill(lo, last, head, frozenset(), forked, stops, altered))
    if forked:
        return None    # (floats over a forked span: whether its rows read so depends on
                       # how many of its ends reach the hole; the next run reads them)
    if tip < 0 and below == 0:
        return None    # (floats at a hole at 0: read so when the held rows say the
                       # device signs every entry, _pending_spill; the next run reads)
    if _floated(fl) < FLOAT_CHUNKS * CHUNK and below < SPILL_CHUNKS * CHUNK:
        return _shape_text(rev, tip, True)
    if below >= SPILL_CHUNKS * CHUNK:
        return _shape_text(rev, tip, False,
                           _Spill(lo, last, head, frozenset(), altered=altered), fl)
    return _shape_text(rev, tip, False, None, fl, (lo, last) if below else None)


def _pending_spill(db: LedgerStorage, did: str, dev: Device, key: DeviceKey
                   ) -> _Carry | None:
    """The device's held rows as a spilled chain (_Spill) of SPILL_CHUNKS chunks or
    more, or a chain and entries above holes (_Float) of FLOAT_CHUNKS chunks or more,
    when they are so: one copy of each seq from the tip up, linked from it (others
    beside it), then (after a seq nothing holds, or one where no row links to it)
    the floats _float_runs reads, none signed, a policy 0 device (or one that signs
    every entry: below the hole a short chain of unsigned rows at most, then unsigned
    rows only up to the first signed one, carried in memory, and the floats of its
    signed rows from there: the stored shape's `loose`) (entry 0, if among
    them, this key's); below a hole, others beside the chain (a forked span, of any
    length, whether one end of it reaches the hole or more: a made-up entry beside one
    not spilled yet and another ahead of the chain kept all of it in memory, and so did
    one made up for the seq below the hole, or one beside a chain shorter than
    SPILL_CHUNKS chunks below it). Read a chunk at a time and not kept (but for a chain
    below the hole shorter than SPILL_CHUNKS chunks and not forked, kept as the carried
    chain): a long span held by an earlier run (a
    device that never signs, a bundle that left entries out, a hostile one) is walked on
    from its end, and accepted from `pending` in chunks, without being loaded whole.
    None: load the rows as they are (_load_pending)."""
    counts = db.pending_count(did, dev.tip_seq)     # (rows below: _without_low)
    if counts[0] < min(SPILL_CHUNKS, FLOAT_CHUNKS) * CHUNK:
        return None
    # (a device that signs every entry: its signed rows above a hole, nothing below it;
    # _float_of)
    every = _held_signs_every(db, did, dev, key, (), lambda: [
        r[2] for r in next(iter(_held_links(db, did, 0)), [])])
    if counts[1] and not every:
        return None
    lo = s = dev.tip_seq + 1
    # the held rows reached from the tip through prev links, at the seq before s (one
    # row a seq, but for entries held beside a spilled chain: _Spill.forked), each with
    # the lowest seq of a log-altered report on its way from the tip (_Spill.altered:
    # a report beside the chain is not on the way to its end)
    live: dict[bytes, int | None] = {dev.tip_head: None}
    # the hole, if any: the seq above it (the floats start there: _float_runs)
    gap: int | None = None
    n, forked, stops = 0, False, False
    for group in _held_links(db, did, s):
        seq, h, signed, prev, kind = group[0]
        if prev is None or kind is None:
            return None                         # (a row held without those fields)
        if seq > s or not any(r[3] in live for r in group):
            # (a hole, or no row here linking to the chain: a broken link, where a float
            # starts as well, _float_runs; a hole at entry 0 is not one: the policy would
            # not be known; below a hole, one chain, and above it floats)
            # (a fork below the hole is read as a forked span, however many of its
            # ends reach the hole: which one the hole's filling goes on from is the
            # walk's to find, _ends_below and the rows at the float's first seq, as
            # for one; with two, every held entry stayed in memory and was walked at
            # every chunk: 128.2 MB for 60,000)
            if not (dev.tip_seq >= 0 or s > lo or every):
                return None
            gap = seq
            break
        if every and s > lo and any(r[2] for r in group):
            gap = seq       # (a device that signs every entry: its signed rows above
            break           # unsigned ones the walk stops at float as well, _float_of)
        if every and len(group) > 1:
            return None             # (a fork below the hole, of a device that signs every
                                    # entry: the general walk's)
        if len(group) == 1 and s:               # (the usual row: its seq's only one)
            if signed or prev not in live:
                return None
            a = live[prev]
            live = {h: seq if a is None and kind == KIND_LOG_ALTERED else a}
        else:
            reached: dict[bytes, int | None] = {}
            for _, h, signed, prev, kind in group:
                if prev is None or kind is None or signed:
                    return None
                if prev in live:
                    a = live[prev]
                    reached[h] = seq if a is None and kind == KIND_LOG_ALTERED else a
            if not reached or (len(group) > 1 and s == 0):
                return None
            if s == 0:
                f0 = _load_pending(db, did, 0, {}, 0)[0][0].f
                if not (_own_first(f0, key, dev.tip_head)
                        and (signing_policy(f0) == POLICY_EVERY_ENTRY) == every):
                    return None
            forked |= len(group) > 1
            stops |= len(reached) > 1
            live = reached
        n += len(group)
        s += 1
    head = min(live)         # (forked: the end of one chain from the tip; others beside)
    altered = live[head]
    if gap is None:
        if n != counts[0] or s - lo < SPILL_CHUNKS * CHUNK or every:   # (rows at or
            return None                                 # below the tip; a short chain)
        # (no checkpoint counted as checked: one over the span is looked up by _unspill)
        return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did), {}, [],
                      _Spill(lo, s - 1, head, frozenset(), forked, stops, altered))
    start, loose = gap, 0
    if every:
        # (a device that signs every entry: rows with no signed one beside them from the
        # hole up to the first that has, unsigned, anyone's to write: in memory, below
        # the floats, as _float_of leaves them; SPILL_CHUNKS chunks of seqs or more of
        # them, set aside, _set_aside)
        reports: list[int] = []
        for group in _held_links(db, did, gap):
            if any(r[2] for r in group):
                start = group[0][0]
                break
            loose += len(group)
            if any(r[4] == KIND_LOG_ALTERED for r in group):
                reports.append(group[0][0])
        else:
            return None
    runs = _float_runs(db, did, start, every=every)
    if runs is None:
        return None
    fl, bey = tuple(runs[0]), runs[2]
    past = 0 if bey is None else db.pending_count(did, bey.first - 1)[0]
    below = s
    if n + loose + runs[1] + past != counts[0] or (
            _floated(fl) + past < FLOAT_CHUNKS * CHUNK and below - lo < SPILL_CHUNKS * CHUNK):
        return None           # (a few above a hole float over a chain that spills: _float_of)
    if forked and every:
        return None
    if below - lo >= SPILL_CHUNKS * CHUNK and every:
        if altered is not None:
            return None     # (a log-altered report on the chain: in memory, _pending_aside)
        # (its unsigned rows from the tip up, SPILL_CHUNKS chunks or more, set aside and
        # its signed ones above them afloat, as _set_aside and _float_of leave them: a
        # later reconcile held the signed ones in memory, 26.4 MB for 23,000)
        return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did),
                      _rows_of(db, did, reports), None, None, fl, bey, (lo, start - 1))
    if loose and start - gap >= SPILL_CHUNKS * CHUNK:
        # (a log-altered report among them stays in memory, as _set_aside leaves it)
        return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did),
                      {**_load_pending(db, did, lo, {}, gap - 1),
                       **_rows_of(db, did, reports)}, None, None, fl, bey, (gap, start - 1))
    if loose:
        return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did),
                      dict(_load_pending(db, did, lo, {}, start - 1)), None, None, fl, bey)
    if below - lo >= SPILL_CHUNKS * CHUNK or forked:
        # (a short chain with entries beside it too: read whole, it kept every entry
        # above the hole in memory, walked at every chunk, 128 MB for 60,000 entries
        # with an entry made up at seq 100 and entry 1,000 left out)
        return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did), {}, [],
                      _Spill(lo, below - 1, head, frozenset(), forked, stops, altered), fl,
                      bey)
    # (the chain below the hole is short: carried in memory, walked with the chunks)
    held = _load_pending(db, did, lo, {}, below - 1)
    chain = [held[q][0] for q in range(lo, below)]
    return _Carry(did, dev.tip_seq, dev.tip_head, db.pending_rev(did), dict(held), chain,
                  None, fl, bey)


_LinkRows = list[tuple[int, bytes, bool, bytes | None, int | None]]   # pending_links


def _held_links(db: LedgerStorage, did: str, s: int) -> Iterator[_LinkRows]:
    """The links of the device's held rows from seq `s` up (storage.pending_links: what
    a walk reads of each row, without its body), one seq's rows at a time, read a
    chunk of seqs at a time; a hole wider than a read is skipped in one lookup."""
    while True:
        rows = db.pending_links(did, s, s + CHUNK - 1)
        if not rows:
            nxt = db.next_pending_seq(did, s)
            if nxt is None:
                return
            rows = db.pending_links(did, nxt, nxt + CHUNK - 1)
        i, m = 0, len(rows)
        while i < m:
            j = i + 1
            while j < m and rows[j][0] == rows[i][0]:
                j += 1
            yield rows[i:j]
            i = j
        s = rows[-1][0] + 1


def _take_spilled(led: Ledger, db: LedgerStorage, did: str, upto: int, res: Result,
                  fork: tuple[bytes, DeviceKey | None, _Spill] | None = None) -> None:
    """Accept the device's spilled chain (_Spill) from its tip up to seq `upto`, read
    from `pending` CHUNK rows at a time and taken in order (_take), in the caller's
    transaction: accepting a long span costs one read of it and bounded memory.
    `fork`: the span is forked (_Spill.forked): (the hash of entry `upto`, the device's
    key, the span); the chain's entries are told from the others by their hashes
    (_chain_tops, one more read of the span's links), and the others, passed by the
    tip now, are looked at as fork candidates (_forks), as the general walk would."""
    dev = led.device(did)
    assert dev is not None
    tops: dict[int, bytes] = {}
    if fork is not None:
        tops = _chain_tops(db, did, fork[2], list(range(dev.tip_seq + CHUNK, upto, CHUNK)),
                           (upto, fork[0]))
    while True:
        dev = led.device(did)
        assert dev is not None
        lo = dev.tip_seq + 1
        if lo > upto:
            return
        hi = min(upto, lo + CHUNK - 1)
        rows = _load_pending(db, did, lo, {}, hi)
        if fork is not None:
            want = tops[hi]              # (the chain's entry at each seq, down from hi)
            for s in range(hi, lo - 1, -1):
                cs = rows.get(s, [])
                rows[s] = sorted(cs, key=lambda x: x.h != want)
                if rows[s] and rows[s][0].h == want:
                    want = rows[s][0].f.prev
        block: list[_Cand] = []
        head = dev.tip_head
        for s in range(lo, hi + 1):
            cs = rows.get(s, [])
            if not cs or (len(cs) != 1 and fork is None) or cs[0].f.prev != head:
                # (the carry held: nobody else changed these rows since they were written)
                raise HashtrailError(f"device {did}: spilled held entry {s} changed in "
                                     "`pending` during the reconcile")
            block.append(cs[0])
            head = cs[0].h
        _take(led, db, did, dev, block, res)
        others = {s: cs[1:] for s, cs in rows.items() if len(cs) > 1}
        if fork is not None and fork[1] is not None and others:
            _forks(led, db, did, fork[1], others, res, hi + 1, down=False)


_LinksBySeq = dict[int, list[tuple[bytes, bytes | None]]]     # seq -> [(hash, prev)]


def _chain_blocks(db: LedgerStorage, did: str, lo: int, top: tuple[int, bytes]
                  ) -> Iterator[tuple[dict[int, bytes], _LinksBySeq]]:
    """Down a spilled chain from `top` (seq, hash) to seq `lo` by its prev links, a block
    of links at a time: each block's rows by seq, (hash, prev), and the chain's hash at
    each of its seqs and at the seq below it. Raises if a link is missing."""
    at, want = top
    while at >= lo:
        blo = max(lo, at - CHUNK + 1)
        by: _LinksBySeq = defaultdict(list)
        for q, h, _, prev, _ in db.pending_links(did, blo, at):
            by[q].append((h, prev))
        chain: dict[int, bytes] = {}
        for q in range(at, blo - 1, -1):
            chain[q] = want
            nxt = next((prev for h, prev in by[q] if h == want), None)
            if nxt is None:
                raise HashtrailError(f"device {did}: spilled held entry {q} changed in "
                                     "`pending` during the reconcile")
            want = nxt
        chain[blo - 1] = want
        yield chain, by
        at = blo - 1


def _chain_tops(db: LedgerStorage, did: str, sp: _Spill, seqs: list[int],
                top: tuple[int, bytes] | None = None) -> dict[int, bytes]:
    """The hashes of a forked spilled chain's entries at `seqs` (and at `top`'s seq),
    found by following prev links down from `top` (default: the span's end): the chain
    is the one that reaches there, and only its ends are kept (_Spill)."""
    top = top if top is not None else (sp.last, sp.head)
    out = {top[0]: top[1]}
    need = set(seqs) - {top[0]}
    if need:
        for chain, _ in _chain_blocks(db, did, min(need) + 1, top):
            out.update((q, h) for q, h in chain.items() if q in need)
    return out


def _fork_state(db: LedgerStorage, did: str, first: int, last: int, head: bytes
                ) -> tuple[bool, bool]:
    """(_Spill.forked, _Spill.stops) of the spilled chain first..last ending in `head`
    (the rest of a forked span, once its lower part is accepted), read down from its
    end a block of links at a time."""
    forked = False
    for chain, by in _chain_blocks(db, did, first, (last, head)):
        for q, rows in by.items():
            if len(rows) > 1:
                forked = True
                if any(h != chain[q] and prev == chain[q - 1] for h, prev in rows):
                    return True, True
    return forked, False


def _own_first(f0: object, key: DeviceKey, head: bytes) -> TypeGuard[EntryFields]:
    """Whether `f0` is an entry 0 of this key, decoded whole, following `head`, the
    genesis of this key (what the one-pass walks ask before walking from seq 0; _merge
    says why for one that is not)."""
    if type(f0) is not EntryFields or head != key.genesis_prev:
        return False
    try:
        key.check_first_entry(f0)
    except HashtrailError:
        return False
    return True


class _Walked(NamedTuple):
    """What a walk leaves held: the candidates (rows of `pending` or not: _Cand.stored),
    as a chain when _extend left them so (_Carry.chain), how many are above the tip,
    and (rows, signed rows) of them that are in `pending`."""

    rest: dict[int, list[_Cand]]
    chain: list[_Cand] | None
    above: int
    rev: int
    spill: _Spill | None = None     # the chain's spilled first entries (_Carry.spill)
    floating: tuple[_Float, ...] = ()   # entries held above holes (_Carry.floating)
    beyond: _Beyond | None = None       # where they stop (_Carry.beyond)


def _device(led: Ledger, db: LedgerStorage, did: str, dev: Device, key: DeviceKey,
            recs: list[RawEntry], res: Result, workers: int | None, new_cp: int | None,
            held: _Carry, checked: list[_Checked] | None = None,
            leaves: list[bytes] | None = None) -> _Walked:
    """One chunk of a device's entries (the device enrolled, its checkpoints kept) with
    the entries it held before (`held`). `checked`: the records' hashes, parses and
    verdicts when a pool checked them (_pooled) or the bundle reader did
    (chunk_reader); `leaves`: their Merkle leaf hashes, when the reader computed them.
    Entries held above a hole (`held.floating`, _Float) stay rows of `pending`: a
    chunk that goes on from them is written beside them, one with nothing for their
    seqs or above is walked without them, and then joins them to the chain when it
    filled the hole; a chunk's other entries at their seqs or above are written
    beside them first (_above_hole), unless one is signed, or a device checkpoint
    may cover a log-altered report among them: then they are read back first."""
    # Every candidate is decoded and checked exactly once, here or (for rows an earlier
    # run left in `pending`) in _load_pending; the walk below works on these objects.
    if checked is None:
        checked = _check_entries(key, recs, workers)
    if not held.floating:
        return _walk(led, db, did, dev, key, recs, res, workers, new_cp, held, checked, leaves)
    sp0, bey = held.spill, held.beyond
    # (a device that signs every entry: floats of its signed entries, _float_of)
    every = _carry_signs_every(db, did, dev, key, held)
    up = _above_hole(db, did, key, held.floating, bey, recs, checked, every)
    if up is not None:
        floats, bey, keep = up
        if len(keep) != len(recs):
            recs, checked = [recs[i] for i in keep], [checked[i] for i in keep]
            leaves = None if leaves is None else [leaves[i] for i in keep]
    if up is None or _covered_float_report(db, did, floats, bey) or (
            sp0 is not None and sp0.forked and (
                any(r.seq <= sp0.last and r.sig is not None for r in recs)
                or not sp0.checked >= _signed_heads(db, did, sp0.first, sp0.last))):
        # A signed entry at the floats' seqs or above, or a device checkpoint that
        # covers a log-altered report held above the hole: the general walk's, with all in
        # memory; what _above_hole wrote, now rows of the floats, is read back with the
        # rest. And over a forked spilled span below the holes (entries beside its
        # chain: anyone's to write), a signed entry for its seqs, or a device checkpoint
        # over the span not looked up yet: the walk may then take the span whole and go
        # on to the floats (which branch of the fork a signature reaches). The span
        # stays in `pending`. (An unsigned entry for the span's seqs or for the hole's
        # is held beside the span or goes on from it, and the filling of the hole finds
        # which end the floats go on from when it comes, _ends_below and the rows at the
        # float's first seq; a log-altered report on a float's chain or beside it that
        # no device checkpoint covers, with the chunk's entries written, changes none
        # of this either. Anyone can write those; they read the floats back at every
        # chunk, and then kept them in memory: 57.1 to 104.8 MB for 60,000 entries.)
        return _walk(led, db, did, dev, key, recs, res, workers, new_cp, _unfloat(
            db, did, held._replace(rev=db.pending_rev(did),
                                   floating=held.floating if up is None else floats,
                                   beyond=held.beyond if up is None else bey)),
            checked, leaves)
    # (the entries below the hole walked with the chunk's below it, or with none: a
    # checkpoint new since their last walk may cover some)
    w = _walk(led, db, did, dev, key, recs, res, workers, new_cp,
              held._replace(floating=(), beyond=None), checked, leaves)
    tip = led.device(did)
    assert tip is not None
    sp, fl = w.spill, floats[0]
    if w.chain is None and not w.rest:
        w = w._replace(chain=[])        # (nothing held below: the general walk took all)
    end = _chain_end(w.chain, sp, tip)
    if every and w.chain == [] and sp is None and end == (fl.first - 1, fl.prev):
        # The hole is filled from the tip, and the float's entries each carry the
        # device's signature, one a seq, linked: the general walk would accept them all
        # (_advance); accepted from `pending` a block at a time (the unsigned ones
        # beside them, passed, looked at as fork candidates), and the device's
        # checkpoints the tip passed compared with them (_forks, as the walk does).
        _take_spilled(led, db, did, fl.last, res, (fl.head, key, _Spill(
            tip.tip_seq + 1, fl.last, fl.head, frozenset(), True)) if fl.forked else None)
        _forks(led, db, did, key, {}, res, tip.tip_seq + 1)
        w = _Walked({}, [], 0, db.pending_rev(did))
        floats = floats[1:]
        top = (floats[0].first if floats else MAX_SEQ if bey is None else bey.first) - 1
        nxt = db.next_pending_seq(did, fl.last + 1)
        if nxt is not None and nxt <= top:
            # (rows below the next float with no signed one beside them, unsigned: in
            # memory, what the general walk says of them, as for those below a float)
            tip = led.device(did)
            assert tip is not None
            w = _walk(led, db, did, tip, key, [], res, workers, None, _Carry(
                did, tip.tip_seq, tip.tip_head, db.pending_rev(did),
                _load_pending(db, did, nxt, {}, top), None), [], None)
        got = _left_afloat(led, db, did, key, w, floats, bey, res, workers, every)
        if isinstance(got, _Walked):
            return got
        floats, bey = got
    elif not every and w.chain is not None and end == (fl.first - 1, fl.prev):
        # The hole is filled: the held chain and the entries above it are one chain
        # from the tip now, written and spilled whole, and walked once more (with no
        # entries) for what covers them; the runs above the next hole stay afloat.
        _hold(db, did, w.chain)
        forked, stops, altered = _spill_flags(sp, w.chain)
        if altered is None:
            altered = fl.altered
        if fl.forked and not stops:
            # (the entries held beside the float: one linking to the float's entry
            # below it makes the span stop there, as one beside a span does)
            stops = _fork_state(db, did, fl.first, fl.last, fl.head)[1]
        joined = _Carry(did, tip.tip_seq, tip.tip_head, db.pending_rev(did), {}, [],
                        _Spill(tip.tip_seq + 1, fl.last, fl.head, frozenset(),
                               forked or fl.forked, stops, altered))
        w = _walk(led, db, did, tip, key, [], res, workers, None, joined, [], None)
        floats = floats[1:]
        got = _left_afloat(led, db, did, key, w, floats, bey, res, workers, every)
        if isinstance(got, _Walked):
            return got
        floats, bey = got
    elif w.chain is not None and end[0] == fl.first - 1 and any(
            r[3] in _ends_below(db, did, w, end) for r in db.pending_links(
                did, fl.first, fl.first)):
        # A row at the float's first seq links to the chain below (to its end, or to
        # an entry beside a spilled span's end), but the float's own chain does not:
        # the chain may go on through that row, which neither says. The held rows are
        # read again from the tip, as a later reconcile would, and walked once more
        # (with no entries).
        _hold(db, did, w.chain)
        c = _pending_spill(db, did, tip, key)
        if c is None or (c.floating and c.spill is not None and c.spill.forked):
            # (a forked span under floats again: the row links to an entry beside the
            # span's end, which the reading from the tip does not reach, and reading it
            # again would come back here: whole, the general walk decides)
            c = _Carry(did, tip.tip_seq, tip.tip_head, db.pending_rev(did),
                       _load_pending(db, did, tip.tip_seq + 1, {}), None)
        return _device(led, db, did, tip, key, [], res, workers, None, c, [], None)
    elif w.chain is None and (_afloat(db, did, floats, bey) < FLOAT_CHUNKS * CHUNK or any(
            x.h == fl.prev and (x.sig is not None or not every)
            for x in w.rest.get(fl.first - 1, ()))):
        # (filled, but below it the held entries are not one chain; or a few entries
        # floated above a hole while below them was a chain that spilled, and now is
        # none: read back whole, as the general walk has them)
        c = _Carry(did, tip.tip_seq, tip.tip_head, db.pending_rev(did), w.rest, None,
                   sp, floats, bey)
        return _walk(led, db, did, tip, key, [], res, workers, None, _unfloat(db, did, c),
                     [], None)
    _no_link_below(led, db, did, key, dev.tip_seq, w, floats[0], res)
    return w._replace(above=w.above + _floated(floats), rev=db.pending_rev(did),
                      floating=floats, beyond=bey)


def _left_afloat(led: Ledger, db: LedgerStorage, did: str, key: DeviceKey, w: _Walked,
                 floats: tuple[_Float, ...], bey: _Beyond | None, res: Result,
                 workers: int | None, every: bool
                 ) -> tuple[tuple[_Float, ...], _Beyond | None] | _Walked:
    """The floats left once the lowest was joined to the chain (the walk left `w`), and
    where they stop: `floats`, or, all joined, the next MAX_FLOATS from the rows past
    them (_Beyond; their first does not link to the last one joined). A _Walked when
    none is left (`w`), or when the rows past cannot be read so (a signed row among
    them, which another reconcile wrote; a fork or a report, of a device that signs
    every entry): the general walk's, with all in memory."""
    if floats or bey is None:
        return (floats, bey) if floats else w
    more = _float_runs(db, did, bey.first, every=every)
    if more is not None:
        return (tuple(more[0]), more[2]) if more[0] else w
    tip = led.device(did)
    assert tip is not None
    return _walk(led, db, did, tip, key, [], res, workers, None, _unfloat(
        db, did, _Carry(did, tip.tip_seq, tip.tip_head, db.pending_rev(did), w.rest,
                        w.chain, w.spill, (), bey)), [], None)


def _covered_float_report(db: LedgerStorage, did: str, floats: tuple[_Float, ...],
                          bey: _Beyond | None = None) -> bool:
    """Whether a device checkpoint covers a log-altered report held above a hole: one
    over a report's row or an entry chained after it, on a float's chain
    (_Float.altered) or beside it (_Float.reported), or past the floats kept
    (_Beyond.report), found by following the links up from the reports' rows through
    `pending` (_report_reaches: _signed_ahead's question; no row held above a hole is
    signed, _float_runs).

    Why not any checkpoint at or above a report: anyone can write an unsigned report
    (beside the chain, or ahead of it, linked to nothing: a float of its own), and the
    device's next routine checkpoint above its seq read every entry held above a hole
    back. And why not one over another branch than a float's chain at or above a report
    held there (_signed_beside, until the links were followed from every report's row):
    a float's chain is the lowest hash at its last seq, which a made-up branch can take,
    and the device's own entries were then another branch; over 7,200 random shapes,
    and 120 times it said so, following the links decided the same."""
    lows = [r for f in floats for r in (f.altered, f.reported) if r is not None]
    if bey is not None and bey.report is not None:
        lows.append(bey.report)
    if not lows:
        return False
    top = floats[-1].last if bey is None else MAX_SEQ
    heads = _signed_heads(db, did, min(lows), top)
    return bool(heads) and _report_reaches(db, did, min(lows), top, heads)


def _report_reaches(db: LedgerStorage, did: str, lo: int, top: int,
                    heads: set[tuple[int, bytes]]) -> bool:
    """Whether one of the device checkpoints `heads` is over a log-altered report held
    at seqs lo..top or over an entry chained after one (_signed_ahead's question),
    following links up through `pending` from each report's row while its branch goes
    on (on a float's chain, beside it, or on into the float above), and looking up the
    next report's seq where it does not.

    Why every report's row, not only those on a float's chain: the device's own branch
    with a report, beside a float's chain at its last seq and on into the float above,
    under the device's checkpoint there, was found neither so nor by a checkpoint over
    another branch in the report's float (seed 1415 of
    test_random_reports_and_branches_decide_as_carried_whole): only reading back for
    any report on a float's chain over a forked span caught it, and that read every
    entry above the hole back at every chunk for a made-up one."""
    high = max(q for q, _ in heads)
    s = db.next_pending_seq(did, lo, KIND_LOG_ALTERED)
    while s is not None and s <= min(high, top):
        live: set[bytes] = set()
        q = s - 1
        for group in _held_links(db, did, s):
            if group[0][0] != q + 1 or group[0][0] > high:
                break
            q = group[0][0]
            live = {h for _, h, _, prev, kind in group
                    if prev in live or (kind == KIND_LOG_ALTERED and q <= top)}
            if any((q, h) in heads for h in live):
                return True
            if not live:
                break
        s = db.next_pending_seq(did, q + 1, KIND_LOG_ALTERED)
    return False


def _no_link_below(led: Ledger, db: LedgerStorage, did: str, key: DeviceKey,
                   old_tip: int, w: _Walked, fl: _Float, res: Result) -> None:
    """Say what the general walk says when the chain from the tip ends just below a
    float that does not link to it: the float's first entry does not link (_advance,
    which does not see the float's rows: _NO_LINK). As there, not when the walk
    took nothing and a fork in the spilled span stops it below (_Spill.stops). When
    the float starts just above the tip, its first entries may be a fork's branch
    (linked to another entry for the tip's seq): they are fork candidates, as the
    general walk's are (_forks; the checkpoints were compared by the walk)."""
    tip = led.device(did)
    assert tip is not None
    sp = w.spill
    if w.chain is None:
        return
    end = _chain_end(w.chain, sp, tip)
    if end[0] == fl.first - 1 and end[1] != fl.prev and (
            sp is None or not sp.stops):
        res.once(Finding(did, fl.first, _NO_LINK))
    if fl.first == tip.tip_seq + 1:
        _forks(led, db, did, key, _load_pending(db, did, fl.first, {}, fl.first), res,
               fl.first)


def _ends_below(db: LedgerStorage, did: str, w: _Walked, end: tuple[int, bytes]
                ) -> set[bytes]:
    """The hashes a float's first entry may link to, to go on from the chain a walk left
    (`end`: its last seq and hash): its end, and, for a forked spilled span that ends
    there, the other rows held at its last seq (a branch a signature may reach through
    the float: the general walk's choice)."""
    sp = w.spill
    if w.chain or sp is None or not sp.forked:
        return {end[1]}
    return {end[1], *(r[1] for r in db.pending_links(did, end[0], end[0]))}


def _floated(floats: Iterable[_Float]) -> int:
    """How many entries runs above holes hold (their own, not those beside them)."""
    return sum(f.size for f in floats)


def _afloat(db: LedgerStorage, did: str, floats: tuple[_Float, ...], bey: _Beyond | None
            ) -> int:
    """How many entries are held above the holes: the floats' own (_floated) and the
    rows past them (_Beyond), as _pending_spill counts them."""
    return _floated(floats) + (0 if bey is None else db.pending_count(did, bey.first - 1)[0])


def _above_hole(db: LedgerStorage, did: str, key: DeviceKey, floats: tuple[_Float, ...],
                bey: _Beyond | None, recs: list[RawEntry], checked: list[_Checked],
                every: bool = False
                ) -> tuple[tuple[_Float, ...], _Beyond | None, list[int]] | None:
    """Hold the chunk's entries at or above the lowest float's first seq as rows of
    `pending`, when the general walk would only hold them, and return the floats
    they make, where they stop (_Beyond), and the indexes of the chunk's other
    records (below the hole, or refused: walked). None: one of them is signed (the
    floats are read back: the general walk decides, with all in memory).

    Why: until the hole below them is filled, nothing of the floats can be accepted,
    so the general walk holds whatever comes for their seqs or above and says nothing.
    - An unsigned copy of a held row changes nothing (_merge keeps the row).
    - Another unsigned entry for a float's seq (a fork's, or made up: anyone can write
      one) is a candidate beside the float's own: the float is forked, and the filled
      hole makes a forked spilled span (_Spill.forked). A log-altered report is such
      an entry too: beside the float's chain, it is not on the way to its end
      (_Float.altered), and only a device checkpoint over its branch, another than
      the float's, would make it count (_Float.reported).
    - Entries that go on from the top float's end extend it.
    - Anything else (a second hole, an entry that links to nothing held, one in the
      hole between two floats) is written, and the floats from the lowest one it can
      change up are read again from their rows' links (_float_runs).
    - Past the floats (`bey`), entries are written, and a log-altered report among
      them lowers `bey.report`: what they make is read when the floats below are
      joined to the chain. One for the seq where they start, or just below it, may
      link them to the top float: it is read again from there.
    Read back whole for any of these (before), the floats made a second collector's
    copy of the whole chain, a second entry a collector missed, or one made-up entry,
    load every held entry into memory.

    `every`: a device that signs every entry (POLICY_EVERY_ENTRY), its floats its own
    signed rows, one a seq (_float_runs): an unsigned entry for a float's seq is held
    beside it without reading the floats again (the general walk never takes it while
    the signed one is there), a signed copy of a row held unsigned signs it, and a log-
    altered report or a second signed entry for a float's seq (a fork, the general
    walk's) gives None."""
    lowest = floats[0].first
    firsts = [f.first for f in floats]
    inside: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    # (seq, prev) of the chunk's entries for the floats' seqs: which link on which
    linked: set[tuple[int, bytes]] = set()
    outside: list[int] = []
    keep: list[int] = []
    past: list[int] = []
    for i, ((seq, _, sig), (h, f, ok)) in enumerate(zip(recs, checked, strict=True)):
        if seq < lowest or _refusal(key, seq, f, ok) is not None:
            keep.append(i)
            continue
        assert type(f) is EntryFields
        if (sig is not None and not every) or (every and f.kind == KIND_LOG_ALTERED):
            return None
        if bey is not None and seq > bey.first:
            past.append(i)
        elif seq <= floats[bisect_right(firsts, seq) - 1].last:
            inside[seq, h].append(i)
            linked.add((seq, f.prev))
        else:
            outside.append(i)
    runs = list(floats)
    redo = MAX_SEQ + 1            # (the lowest seq whose float is read again)
    changed = max((recs[i].seq for i in outside), default=-1)
    changed = max(changed, max((q for q, _ in inside), default=-1))
    rows: dict[tuple[int, bytes], PendingRow] = {}
    if inside:
        # (the rows at those seqs, and at the seqs above them: which link to them)
        signed: set[tuple[int, bytes]] = set()
        held = _rows_at(db, did, sorted({q + d for q, _ in inside for d in (0, 1)}), signed)
        linked.update((q, prev) for (q, _), prev in held.items() if prev is not None)
        for (seq, h), idx in sorted(inside.items()):
            if every and (seq, h) not in signed and any(recs[i].sig for i in idx):
                return None         # (a second signed entry for the seq: a fork)
            if (seq, h) in held:
                continue
            r, f = recs[idx[0]], checked[idx[0]][1]
            assert type(f) is EntryFields
            rows[seq, h] = (did, seq, h, r.body, None, f.prev, f.kind, f.t)
            k = bisect_right(firsts, seq) - 1
            runs[k] = runs[k]._replace(forked=True)
            if every:
                continue     # (unsigned, beside the float's own signed one: its chain)
            if f.kind == KIND_LOG_ALTERED:
                runs[k] = runs[k]._replace(reported=min(seq, runs[k].reported or seq))
            if seq in (runs[k].first, runs[k].last) or (seq + 1, h) in linked:
                # (which entry ends the float, whether it still starts there; or the
                # entry has one linked on it, a branch that may reach the float's end:
                # from the rows)
                redo = min(redo, seq)
    # (a device that signs every entry: rows already held unsigned where the chunk's
    # entries are written, their signature added as the general walk adds it)
    present: dict[tuple[int, bytes], bytes | None] = {}
    signed_present: set[tuple[int, bytes]] = set()
    if every and (outside or past):
        present = _rows_at(db, did, sorted({recs[i].seq for i in (*outside, *past)}),
                           signed_present)
    if outside:
        out = [recs[i] for i in outside]
        on = _goes_on(key, runs[-1], out, [checked[i] for i in outside], every)
        if present and on is not None and any(q >= out[0].seq for q, _ in present):
            on = None         # (read again: an unsigned row beside, now signed or not)
        for r, i in zip(out, outside, strict=True):
            h, f, _ = checked[i]
            assert type(f) is EntryFields
            if rows.get((r.seq, h), (None,) * 5)[4] is None:     # (a signed copy wins)
                rows[r.seq, h] = (did, r.seq, h, r.body, r.sig, f.prev, f.kind, f.t)
        if on is not None and (bey is None or out[-1].seq < bey.first - 1):
            runs[-1] = runs[-1]._replace(last=out[-1].seq, head=on[-1][0])
        else:
            redo = min(redo, min(r.seq for r in out))
    for i in past:
        (seq, body, sig), (h, f, _) = recs[i], checked[i]
        assert type(f) is EntryFields and bey is not None
        if rows.get((seq, h), (None,) * 5)[4] is None:
            rows[seq, h] = (did, seq, h, body, sig, f.prev, f.kind, f.t)
        if f.kind == KIND_LOG_ALTERED and (bey.report is None or seq < bey.report):
            bey = bey._replace(report=seq)
    db.add_pending(list(rows.values()))
    for (q, h), row in rows.items():
        if row[4] is not None and (q, h) in present and (q, h) not in signed_present:
            db.sign_pending(did, q, h, row[4])
    if redo <= MAX_SEQ:
        again = _refloat(db, did, runs, bey, redo, changed, every)
        if again is None:
            return None
        runs, bey = list(again[0]), again[1]
    return tuple(runs), bey, keep


def _rows_at(db: LedgerStorage, did: str, seqs: list[int],
             signed: set[tuple[int, bytes]] | None = None
             ) -> dict[tuple[int, bytes], bytes | None]:
    """(seq, hash) -> prev of the device's held rows at `seqs` (sorted), read two chunks
    of seqs at a time: seqs spread over a long held span do not read all of it. The
    (seq, hash) of those that are signed are added to `signed`, if given."""
    rows: dict[tuple[int, bytes], bytes | None] = {}
    a = 0
    while a < len(seqs):
        lo = seqs[a]
        while a < len(seqs) and seqs[a] - lo < 2 * CHUNK:
            a += 1
        for q, h, sg, prev, _ in db.pending_links(did, lo, seqs[a - 1]):
            rows[q, h] = prev
            if sg and signed is not None:
                signed.add((q, h))
    return rows


# Runs above holes a device's carry keeps (_Carry.floating) before they are read back
# whole: each costs about 200 bytes (a bundle that leaves out every other entry makes
# one per entry)
MAX_FLOATS = 20_000


def _refloat(db: LedgerStorage, did: str, runs: list[_Float], bey: _Beyond | None,
             redo: int, changed: int, every: bool = False
             ) -> tuple[list[_Float], _Beyond | None] | None:
    """The floats (`runs`, stopping at `bey`) once rows at seqs from `redo` to `changed`
    were written (and past `bey`): those below the one `redo` can change kept, the
    rest read again from the rows' links (_float_runs) up to the first float above
    `changed` that the reading starts as well, from which they are kept again; up to
    MAX_FLOATS in all, and where they stop (_Beyond).

    Why not all read again: a reading that starts a float at a seq goes on from the
    rows there alone, and those above `changed` are as they were. A bundle that fills
    the holes of a device whose every other entry was left out read every float to
    the top again at each chunk (MAX_FLOATS of them: 19 s of 26 s for 80,000)."""
    k = max(0, bisect_left([f.first for f in runs], redo) - 1)
    f = runs[k]
    # (resumed from its end when nothing came for its seqs and one row is held at its
    # last: the rows reached there are its end alone; else read from its first)
    on = redo > f.last and (not f.forked or len(db.pending_links(did, f.last, f.last)) == 1)
    kept = {g.first: i for i, g in enumerate(runs) if i > k and g.first > changed}
    more = _float_runs(db, did, f.first, f if on else None, MAX_FLOATS - k, kept, every)
    if more is None:
        return None
    got, _, stop = more
    if stop is None or stop.first not in kept:
        return runs[:k] + got, stop
    tail = runs[kept[stop.first]:]
    room = MAX_FLOATS - k - len(got)
    if len(tail) <= room:
        return runs[:k] + got + tail, bey
    cut = _beyond_at(db, did, tail[room].first, every)
    return None if cut is None else (runs[:k] + got + tail[:room], cut)


def _beyond_at(db: LedgerStorage, did: str, seq: int, every: bool = False
               ) -> _Beyond | None:
    """Floats stopping at `seq` (_Beyond); None: a row held from there up is signed (of
    a device that signs every entry, `every`: one is a log-altered report)."""
    if not every and db.pending_count(did, seq - 1)[1]:
        return None
    report = db.next_pending_seq(did, seq, KIND_LOG_ALTERED)
    return None if every and report is not None else _Beyond(seq, report)


def _float_runs(db: LedgerStorage, did: str, start: int, resume: _Float | None = None,
                limit: int | None = None, kept: Container[int] = (), every: bool = False
                ) -> tuple[list[_Float], int, _Beyond | None] | None:
    """The device's held rows from seq `start` up read as floats (_Float), a chunk of
    links at a time, how many rows they are, and, past `limit` floats (default
    MAX_FLOATS), where they stop (_Beyond: the rows from there up are not read); None:
    a row is signed. `resume`: a float starting at `start` with one row held at its
    last seq, read on from its end. `kept`: seqs where a float that starts there is
    known (_refloat): the reading stops there too, a _Beyond with no report looked up.
    `every`: the device signs every entry (POLICY_EVERY_ENTRY): a float is its one
    signed row a seq (unsigned ones beside it make it `forked`), a seq with no signed
    row ends it (None at `start`), and a second signed row or a log-altered report
    gives None.

    A float starts at `start`, after a seq no row is held at, and at a seq where no row
    links to one the float below reached (a broken link); at the seq above, the rows
    that link to one reached are reached (several: the float is forked, the others
    held beside it), and the float's end is the lowest hash reached at its last seq.
    This is what _above_hole keeps: the same rows read the same (_VERIFY_SHAPES)."""
    out: list[_Float] = []
    s, n = start, 0
    most = MAX_FLOATS if limit is None else limit
    # the float being read: [first, prev, forked, reported]
    cur: list[Any] | None = None
    # the rows it reached at the seq before s, each with the lowest seq of a log-altered
    # report on its way from the float's first (_Float.altered: one beside it is not)
    live: dict[bytes, int | None] = {}
    if resume is not None:
        cur = [resume.first, resume.prev, resume.forked, resume.reported]
        live, s = {resume.head: resume.altered}, resume.last + 1

    def close(last: int) -> None:
        assert cur is not None
        head, prev = min(live), cur[1]
        if prev is None:      # (its first entry: the one its chain reaches down to)
            for links, _ in _chain_blocks(db, did, cur[0], (last, head)):
                prev = links.get(cur[0] - 1, prev)
        out.append(_Float(cur[0], last, prev, head, cur[2], live[head], cur[3]))

    for group in _held_links(db, did, s):
        seq = group[0][0]
        if any((signed and not every) or prev is None or kind is None
               for _, _, signed, prev, kind in group):
            return None
        report = any(kind == KIND_LOG_ALTERED for *_, kind in group)
        rows = len(group)
        many = rows > 1
        if every:
            # (the device's one signed row a seq is the chain; unsigned ones beside it
            # are not the general walk's to take while it is there, and a seq with
            # none ends the float below: a hole)
            own = [r for r in group if r[2]]
            if report or len(own) > 1:
                return None
            if not own:
                if cur is None and not out:
                    return None          # (at the start: the general walk's to say)
                if cur is not None:
                    close(s - 1)
                    cur = None
                n += rows
                s = seq + 1
                continue
            group = own
        reached: dict[bytes, int | None] = {}
        if cur is not None and seq == s:
            for _, h, _, prev, kind in group:
                if prev in live:
                    a = live[prev]
                    reached[h] = seq if a is None and kind == KIND_LOG_ALTERED else a
        if reached:
            assert cur is not None
            cur[2] |= many
            if report and cur[3] is None:
                cur[3] = seq
            live = reached
        else:
            if cur is not None:
                close(s - 1)
            if out:
                if seq in kept:
                    return out, n, _Beyond(seq, None)
                if len(out) >= most:
                    stop = _beyond_at(db, did, seq, every)
                    return None if stop is None else (out, n, stop)
            cur = [seq, group[0][3] if len(group) == 1 else None, many,
                   seq if report else None]
            live = {h: seq if kind == KIND_LOG_ALTERED else None
                    for _, h, _, _, kind in group}
        n += rows
        s = seq + 1
    if cur is not None:
        close(s - 1)
    return out, n, None


def _goes_on(key: DeviceKey, fl: _Float, recs: list[RawEntry], checked: list[_Checked],
             every: bool = False) -> list[tuple[bytes, EntryFields]] | None:
    """The records' (hash, entry) when the chunk only goes on from the entries held
    above a hole: the next seqs, one copy each, well-formed, linked, unsigned (each
    signed, `every`: a device that signs every entry), no log-altered report (the
    general walk would hold every one of them and say nothing). None otherwise."""
    if not recs:
        return None
    out: list[tuple[bytes, EntryFields]] = []
    s, head = fl.last + 1, fl.head
    for (seq, _, sig), (h, f, ok) in zip(recs, checked, strict=True):
        if (seq != s or type(f) is not EntryFields or f.seq != seq or not ok
                or (sig is not None) != every or f.prev != head
                or f.kind == KIND_LOG_ALTERED):
            return None
        out.append((h, f))
        head, s = h, s + 1
    return out


def _unfloat(db: LedgerStorage, did: str, c: _Carry) -> _Carry:
    """The carry with the entries held above holes read back into memory (those past
    its floats too: _Beyond)."""
    fl, bey = c.floating, c.beyond
    lo = fl[0].first if fl else bey.first if bey is not None else None
    assert lo is not None
    cands = dict(c.cands)
    # (to the top: of a device that signs every entry, rows with no signed one beside
    # them are in no float, above the top one too; _float_runs)
    cands.update(_load_pending(db, did, lo, {}))
    return c._replace(cands=cands, chain=None, floating=(), beyond=None)


class _TooManyFloats(NamedTuple):
    """_float_of's answer when the rows above the hole hold a signed one (written by
    another reconcile meanwhile: the candidates are checked first): it wrote them to
    `pending` (the held candidates from seq `first` up), and they stay in memory."""

    first: int


def _float_of(db: LedgerStorage, did: str, tip: Device, sp: _Spill | None,
              rest: dict[int, list[_Cand]], key: DeviceKey
              ) -> tuple[dict[int, list[_Cand]], list[_Cand] | None, tuple[_Float, ...],
                         _Beyond | None] | _TooManyFloats | None:
    """The held candidates `rest` cut at the first hole above the chain from the tip
    (or the spilled span): those below, as a dict and as a chain when they are one
    (_as_chain), and those above it, FLOAT_CHUNKS chunks or more, none signed,
    written to `pending` (in the caller's transaction) and read as floats
    (_float_runs, up to MAX_FLOATS of them, and where they stop: _Beyond); None when
    they cannot be cut so (nothing written), _TooManyFloats when written but a row
    there is signed.

    Why the first hole, whatever lies above it: an entry made up far above (anyone can
    write one) in each chunk kept the run at the top short, so nothing floated and
    everything above the hole stayed in memory. And why fewer than FLOAT_CHUNKS chunks
    above it when below it is a chain that is spilled or long enough to be: one entry
    made up ahead of the chain, linked to nothing, kept the whole chain below it from
    being one, so it stayed in memory and grew with every chunk after it."""
    seqs = sorted(rest)
    base = tip.tip_seq + 1 if sp is None else sp.last + 1
    j = next((i for i, q in enumerate(seqs) if q > (seqs[i - 1] + 1 if i else base)), None)
    every = bool(seqs) and _held_signs_every(db, did, tip, key, rest.get(0, ()), lambda: [
        c.sig is not None for c in rest[seqs[0]]])
    if every and sp is None:
        # (a device that signs every entry: cut where the chain from the tip breaks,
        # a hole or a seq whose rows do not link to it, say an entry made up for the
        # hole's seq, or where the walk stops on it, a seq with unsigned rows only:
        # one entry stripped of its signature held every signed one above it in
        # memory, 40.6 MB for 29,000; its entries held from the tip are unsigned, one a
        # seq)
        live, j = tip.tip_head, None
        for i, q in enumerate(seqs):
            on = [c for c in rest[q] if c.f.prev == live] if q == base + i else []
            if not on or all(c.sig is None for c in rest[q]):
                j = i
                break
            if len(rest[q]) > 1:
                return None
            live = on[0].h
    if j is None:
        return None
    upper = [c for q in seqs[j:] for c in rest[q]]
    few = len(upper) < FLOAT_CHUNKS * CHUNK
    if few and sp is None and j < SPILL_CHUNKS * CHUNK:
        return None
    reports = [c for c in upper if c.f.kind == KIND_LOG_ALTERED]
    if every:
        if sp is not None or j >= SPILL_CHUNKS * CHUNK or reports or any(
                sum(c.sig is not None for c in rest[q]) > 1 for q in seqs[j:]):
            # (a device that signs every entry: its signed entries, one a seq, no
            # log-altered report; else the walk's)
            return None
        # (rows with no signed one beside them below the first that has: in memory)
        j = next((i for i in range(j, len(seqs)) if any(
            c.sig is not None for c in rest[seqs[i]])), len(seqs))
        if j == len(seqs):
            return None
        upper = [c for q in seqs[j:] for c in rest[q]]
    elif any(c.sig is not None for c in upper):
        return None
    if reports:
        heads = _signed_heads(db, did, min(c.seq for c in reports))
        if any(_signed_ahead(c, rest, heads) for c in reports):
            return None       # (a report the device's checkpoint covers: walked in memory)
    lower = {seq: rest[seq] for seq in seqs[:j]}
    head = tip.tip_head if sp is None else sp.head
    chain = _as_chain(db, did, key, lower, base, head) if lower else []
    if few and chain is None:
        return None          # (below a few entries, no chain that spills: in memory, as
                             # the general walk has them)
    if tip.tip_seq < 0 and sp is None and not chain and 0 in rest and not every:
        return None          # (entry 0 held, not accepted, spilled or held as a chain:
                             # the policy is not known to be one that floats may have;
                             # with entry 0 missing, the hole is at 0 and what floats is
                             # read back whole when it comes, as above any hole)
    _hold(db, did, upper)
    runs = _float_runs(db, did, seqs[j], every=every)
    if runs is None:
        return _TooManyFloats(seqs[j])     # (they stay in memory)
    return lower, chain, tuple(runs[0]), runs[2]


def _walk(led: Ledger, db: LedgerStorage, did: str, dev: Device, key: DeviceKey,
          recs: list[RawEntry], res: Result, workers: int | None, new_cp: int | None,
          held: _Carry, checked: list[_Checked], leaves: list[bytes] | None) -> _Walked:
    """_device's walk of a chunk and the held entries in memory or spilled (not those
    above a hole: the caller's)."""
    assert not held.floating
    old_tip = dev.tip_seq
    while True:
        try:
            w = _extend(led, db, did, dev, key, recs, checked, held, res, leaves)
        except _NeedSpilled:
            w = None
            held = _unspill(led, db, did, held, res, whole=False, key=key)
        else:
            sp = held.spill
            if w is not None or sp is None:
                break
            # The general walk takes the chunk: on from the spilled span's end when
            # nothing in the chunk is about the span (_merges_on), else with the span
            # read back whole.
            on = _merges_on(db, did, key, sp, held, recs, checked)
            if on is None:
                held = _unspill(led, db, did, held, res, whole=True)
                continue
            if on.others:
                held = _fork_spill(db, did, held, recs, checked, on.others)
                sp = held.spill
                assert sp is not None
            if not sp.checked >= _signed_heads(db, did, sp.first, sp.last):
                # (a device checkpoint over the span, not looked up yet: first)
                held = _unspill(led, db, did, held, res, whole=False, key=key)
            elif sp.forked and _other_signed(db, did, sp, held, recs, checked, key):
                held = _unspill(led, db, did, held, res, whole=True)
            elif on.signed:
                held, recs, checked, leaves = _signs_spilled(
                    led, db, did, key, held, on.signed, recs, checked, leaves, res)
            else:
                break
        tip = led.device(did)
        assert tip is not None
        dev = tip
    if w is None:
        sp = held.spill
        # (rows set aside: a log-altered report's links are followed up through them)
        up = None if held.aside is None else _Up(partial(_Links(db, did).at, up=True),
                                                  held.followed)
        rest = _merge(led, db, did, dev, key, recs, checked, held.cands, res, leaves, sp,
                      up)
        tip = led.device(did)
        assert tip is not None
        if sp is not None and tip.tip_seq >= sp.last:
            sp = None                                  # (accepted)
        base = (tip.tip_seq + 1, tip.tip_head) if sp is None else (sp.last + 1, sp.head)
        above = sum(len(cs) for seq, cs in rest.items() if seq > tip.tip_seq)
        w = _Walked(rest, _as_chain(db, did, key, rest, *base), above, db.pending_rev(did))
        if sp is not None:
            w = w._replace(above=above + sp.size, spill=sp)
    looked: dict[int, list[_Cand]] = {} if w.chain is not None else w.rest
    sp = w.spill
    if sp is not None and sp.forked and sp.first == _tip(led, did) + 1:
        # (the rows held at the seq just above the tip are fork candidates, as the
        # general walk's are, spilled or not: one beside the chain's may start a
        # branch a device checkpoint covers, below the tip)
        looked = {**looked, **_load_pending(db, did, sp.first, {}, sp.first)}
    _forks(led, db, did, key, looked, res,
           old_tip + 1 if new_cp is None else min(old_tip + 1, new_cp))
    return _without_low(db, did, key, w)


def _without_low(db: LedgerStorage, did: str, key: DeviceKey, w: _Walked) -> _Walked:
    """The walk's result without the candidates at or below the tip, written to
    `pending` (with the signature a copy of a held row carried) instead.

    Why: they are other copies of accepted entries (a fork's, or made up: anyone can
    write an unsigned entry), which the chain walk never takes; _forks has looked at
    them. Kept as candidates, they were walked with the device's chunks and loaded by
    every later reconcile, and one of them kept a long held span from streaming
    (_as_chain, _pending_spill): anyone could make a device's later reconciles hold
    its held entries in memory. A later signature over one is found through `pending`
    (_forks follows branches there)."""
    if w.chain is not None:          # (a chain from the tip: all above it)
        return w
    tip = db.device(did)
    assert tip is not None
    low = [c for seq, cs in w.rest.items() if seq <= tip.tip_seq for c in cs]
    if not low:
        return w
    _hold(db, did, low)
    for c in low:
        if c.sig is not None and not c.stored:
            db.sign_pending(did, c.seq, c.h, c.sig)
    rest = {seq: cs for seq, cs in w.rest.items() if seq > tip.tip_seq}
    sp = w.spill
    base = (tip.tip_seq + 1, tip.tip_head) if sp is None else (sp.last + 1, sp.head)
    return w._replace(rest=rest, chain=_as_chain(db, did, key, rest, *base),
                      rev=db.pending_rev(did))


def _extend(led: Ledger, db: LedgerStorage, did: str, dev: Device, key: DeviceKey,
            recs: list[RawEntry], checked: list[_Checked], carry: _Carry,
            res: Result, leaves: list[bytes] | None = None) -> _Walked | None:
    """The usual chunk in one pass: entries that follow the device's tip, or the
    entries it holds just above its tip (`carry`: the tail of the chunks before, which
    no signature covered yet), one copy of each, in seq order, each well-formed,
    linked to the one before and its signature (if any) valid. Accepts what `_merge`
    would accept and returns the rest, as `_merge` does; None, with nothing done, for
    any other chunk: then `_merge` decides (and words the findings). Held entries this
    walk left as a chain (`carry.chain`) are not walked again: only a device
    checkpoint over one of them can have changed (read from storage each chunk).

    Why: a large bundle is nearly all such chunks, and `_merge`'s general bookkeeping
    (candidates per seq, duplicates, several copies, holes, log-altered reports) costs
    a pass over the entries each, about 1 us an entry. Whatever would make `_merge`
    say something or choose (a finding, a duplicate, a second copy, a hole, an
    unsigned entry of a device that signs every entry, a log-altered report, an entry 0
    that is not this key's) sends the chunk there whole."""
    s, head = dev.tip_seq + 1, dev.tip_head
    cands, walked, sp = carry.cands, carry.chain, carry.spill
    lo = s
    if sp is not None:        # (a spilled chain: walked on from its end; _Spill)
        assert sp.first == s
        s, head = sp.last + 1, sp.head
    held = walked if walked is not None else [cs[0] for _, cs in sorted(cands.items())]
    if walked is None and held and (
            held[0].seq != s or held[-1].seq != s + len(held) - 1
            or any(len(cs) != 1 for cs in cands.values())):
        return None
    if s > 0:
        every = _policy(db, did) == POLICY_EVERY_ENTRY
    else:         # entry 0 is this key's, bound to its genesis, and says the policy
        f0 = held[0].f if held else checked[0][1] if recs else None
        if _own_first(f0, key, head):
            every = signing_policy(f0) == POLICY_EVERY_ENTRY
        else:
            return None
    # (only those over this walk's seqs: a device's checkpoints above them would be
    # read again at each of its chunks, quadratic in its entries)
    heads = _signed_heads(db, did, lo, s + len(held) + len(recs) - 1)
    if sp is not None and any(q <= sp.last and (q, h) not in sp.checked for q, h in heads):
        raise _NeedSpilled
    first = s
    path: list[_Cand] = []
    covered = 0
    if walked is not None:
        # linked from this tip, one copy each, none signed (all checked by the walk that
        # left them; a log-altered report among them only counts once covered, below);
        # policy 0, or they would not be held
        if every and (held or sp is not None):
            return None
        path = held.copy()
        if held:
            head, s = held[-1].h, held[-1].seq + 1
    else:
        for c in held:
            if c.f.prev != head or c.f.kind == KIND_LOG_ALTERED:
                return None
            path.append(c)
            if c.sig is not None:
                covered = len(path)
            elif every:
                return None
            head, s = c.h, s + 1
    for (seq, body, sig), (h, f, ok), lh in zip(
            recs, checked, leaves if leaves is not None else itertools.repeat(None, len(recs)),
            strict=True):
        if (seq != s or type(f) is not EntryFields or f.seq != seq or not ok
                or f.prev != head or f.kind == KIND_LOG_ALTERED):
            return None
        path.append(_new(_Cand, (seq, h, body, sig, f, False, lh)))
        if sig is not None:
            covered = len(path)
        elif every:
            return None
        head, s = h, s + 1
    if not every:
        # a device checkpoint over an entry of the path (path[i] is seq first + i) covers
        # it and those before it: looked up per checkpoint, not per entry
        n = len(path)
        for seq, h in heads:
            i = seq - first
            if 0 <= i < n and i >= covered and path[i].h == h:
                covered = i + 1
    if covered and ((sp is not None and sp.altered is not None)
                    or (walked is not None and _report_in(path[:min(covered, len(held))])
                        is not None)):
        return None          # (a held log-altered report now covered: the general walk)
    if covered and sp is not None:
        raise _NeedSpilled
    _take(led, db, did, dev, path[:covered], res)
    left = path[covered:]
    if covered == 0 and walked is not None:          # nothing taken: the rows are as were
        for c in path[len(held):]:
            cands[c.seq] = [c]
        spilled = 0 if sp is None else sp.size
        return _Walked(cands, left, spilled + len(left), carry.rev, sp)
    if sp is not None:       # (covered == 0: the held entries, after the general walk's)
        return _Walked({c.seq: [c] for c in left}, left, sp.size + len(left),
                       db.pending_rev(did), sp)
    return _Walked({c.seq: [c] for c in left}, left, len(left), db.pending_rev(did))


def _refusal(key: DeviceKey, seq: int, f: EntryFields | HashtrailError, sig_ok: bool
             ) -> HashtrailError | None:
    """Why the general walk refuses a record's entry outright (None: it does not)."""
    if isinstance(f, HashtrailError):    # an entry that does not parse is refused for
        return f                         # that, whatever its signature
    if f.seq != seq:
        return HashtrailError(f"record says seq {seq}, entry says {f.seq}")
    if not sig_ok:
        return HashtrailError("per-entry signature does not verify")
    if seq == 0:
        try:
            key.check_first_entry(f)
        except HashtrailError as e:
            return e
        if f.prev != key.genesis_prev:
            return HashtrailError("entry 0 is not bound to this key's genesis")
    return None


class _OnSpill(NamedTuple):
    """What a chunk the general walk takes brings for a spilled span's seqs (_merges_on):
    signed copies of its entries (seq, hash, signature), and the indexes in the chunk
    of other entries for its seqs, unsigned (a fork's, or made up)."""

    signed: list[tuple[int, bytes, bytes]]
    others: list[int]


def _merges_on(db: LedgerStorage, did: str, key: DeviceKey, sp: _Spill, held: _Carry,
               recs: list[RawEntry], checked: list[_Checked]) -> _OnSpill | None:
    """Whether the general walk (_merge) can take this chunk on from the spilled span's
    end, leaving the span in `pending`, and what the chunk brings for the span's seqs
    (_OnSpill): copies of held entries (unsigned ones change nothing; signed copies of
    the span's accept it up to them first, _signs_spilled), and other unsigned entries,
    which are held beside the span (_fork_spill). None: a log-altered report is held,
    spilled or comes and a device signature may cover it (a signed entry held or in
    the chunk, a checkpoint at or above it: its stop could fall inside the span), or
    another entry for a spilled seq carries a device signature: the span is read back
    whole (the device's word: the general walk applies it, with all in memory)."""
    # reports on the span's chain or below it, and those above it, held or in the chunk
    # (one for a spilled seq, not a copy, is beside the chain: only a device signature
    # over its branch, another than the span's, could cover it, and one reads the span
    # back anyway, _other_signed and _unspill)
    low = [c.seq for cs in held.cands.values() for c in cs
           if c.f.kind == KIND_LOG_ALTERED and c.seq <= sp.last]
    if sp.altered is not None:
        low.append(sp.altered)
    # the entries above the span, held or in the chunk, as candidates by seq
    ups: dict[int, list[_Cand]] = defaultdict(list)
    for q, cs in held.cands.items():
        if q > sp.last:
            ups[q].extend(cs)
    signed = any(c.sig is not None for cs in held.cands.values() for c in cs)
    inside: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, ((seq, body, sig), (h, f, ok)) in enumerate(zip(recs, checked, strict=True)):
        if _refusal(key, seq, f, ok) is not None:
            continue
        assert type(f) is EntryFields
        signed |= sig is not None
        if sp.first <= seq <= sp.last:
            inside[seq, h].append(i)
        elif seq > sp.last:
            ups[seq].append(_new(_Cand, (seq, h, body, sig, f, False, None)))
        elif f.kind == KIND_LOG_ALTERED:
            low.append(seq)
    if low and (signed or _signed_heads(db, did, min(low))):
        return None          # (a report a signature may cover: its stop could fall
                             # inside the span, the general walk's to apply)
    if _covered_report(db, did, ups):
        return None          # (the device's word above the span: the general walk's)
    on = _OnSpill([], [])
    if not inside:
        return on
    rows = _rows_at(db, did, sorted({q for q, _ in inside}))
    for (seq, h), idx in sorted(inside.items()):
        sigs = [s for s in (recs[i].sig for i in idx) if s is not None]
        if (seq, h) in rows:
            if sigs:
                on.signed.append((seq, h, sigs[0]))
        elif sigs:
            return None
        else:
            on.others.append(idx[0])
    return on


def _covered_report(db: LedgerStorage, did: str, ups: dict[int, list[_Cand]]) -> bool:
    """Whether a device signature covers a log-altered report among the candidates
    `ups` (by seq): its own, or one on an entry chained after it (_signed_ahead, what
    the general walk asks of a report, _altered_stop).

    Why not any signature at or above the report: anyone can write an unsigned report
    linked to nothing, ahead of the chain; the device's next routine checkpoint above
    its seq then read a long spilled span back whole."""
    reports = [c for cs in ups.values() for c in cs if c.f.kind == KIND_LOG_ALTERED]
    if not reports:
        return False
    heads = _signed_heads(db, did, min(c.seq for c in reports))
    return any(_signed_ahead(c, ups, heads) for c in reports)


def _fork_spill(db: LedgerStorage, did: str, c: _Carry, recs: list[RawEntry],
                checked: list[_Checked], others: list[int]) -> _Carry:
    """Hold the chunk's other entries for the spilled span's seqs (_OnSpill.others) as
    rows beside it, and mark it forked (_Spill.forked).

    Why: anyone can write an unsigned entry for an unsigned seq. Read back whole for
    such an entry (before), the span was held in memory and walked at each chunk: a
    hostile bundle grew reconcile's memory with the span again. While no device
    signature covers another branch, the general walk takes the span's chain wherever
    a signature covers it (the only branch signed ahead) and stops at the fork where
    none does (_advance): so the span is walked on from its end as before, and accepted
    down the chain that reaches its end (_take_spilled). A device signature over
    another branch reads it back whole (_unspill, _signs_spilled, _other_signed)."""
    sp = c.spill
    assert sp is not None
    rows = []
    for i in others:
        r, (h, f, _) = recs[i], checked[i]
        assert type(f) is EntryFields
        rows.append((did, r.seq, h, r.body, None, f.prev, f.kind, f.t))
    db.add_pending(rows)
    # (one links to the chain's entry below it: the tip, the one row held there, or
    # the chain's among several, found for all of those seqs in one walk down)
    stops = sp.stops
    several: list[tuple[int, bytes]] = []
    for _, seq, _h, _, _, prev, _, _ in rows:
        if stops:
            break
        if seq == sp.first:
            stops = prev == c.tip_head
            continue
        below = {r[1] for r in db.pending_links(did, seq - 1, seq - 1)}
        if prev in below:
            if len(below) == 1:
                stops = True
            else:
                several.append((seq - 1, prev))
    if several and not stops:
        tops = _chain_tops(db, did, sp, [q for q, _ in several])
        stops = any(tops[q] == prev for q, prev in several)
    return c._replace(spill=sp._replace(forked=True, stops=stops), rev=db.pending_rev(did))


def _other_signed(db: LedgerStorage, did: str, sp: _Spill, c: _Carry,
                  recs: list[RawEntry], checked: list[_Checked], key: DeviceKey) -> bool:
    """Whether a device signature (its own, or a checkpoint) covers an entry held or
    coming above a forked span's end that chains down to another of the span's last
    entries than the span's: two branches signed ahead, the general walk's choice (with
    all in memory)."""
    prevs: dict[tuple[int, bytes], bytes] = {}
    signed: list[tuple[int, bytes]] = []
    for cs in c.cands.values():
        for x in cs:
            if x.seq > sp.last:
                prevs[x.seq, x.h] = x.f.prev
                if x.sig is not None:
                    signed.append((x.seq, x.h))
    for (seq, _, sig), (h, f, ok) in zip(recs, checked, strict=True):
        if seq > sp.last and _refusal(key, seq, f, ok) is None:
            assert type(f) is EntryFields
            prevs[seq, h] = f.prev
            if sig is not None:
                signed.append((seq, h))
    if not prevs:
        return False
    hi = max(q for q, _ in prevs)
    signed += [x for x in _signed_heads(db, did, sp.last + 1, hi) if x in prevs]
    last: set[bytes] | None = None
    for q, h in signed:
        # (down the held entries to the one just above the span's end)
        while q > sp.last + 1 and (q - 1, prevs[q, h]) in prevs:
            q, h = q - 1, prevs[q, h]
        if q != sp.last + 1 or prevs[q, h] == sp.head:
            continue
        if last is None:
            last = {r[1] for r in db.pending_links(did, sp.last, sp.last)}
        if prevs[q, h] in last:
            return True
    return False


def _signs_spilled(led: Ledger, db: LedgerStorage, did: str, key: DeviceKey, c: _Carry,
                   signed: list[tuple[int, bytes, bytes]], recs: list[RawEntry],
                   checked: list[_Checked], leaves: list[bytes] | None, res: Result
                   ) -> tuple[_Carry, list[RawEntry], list[_Checked], list[bytes] | None]:
    """Signed copies of spilled entries (_merges_on) give the rows their signatures, and
    the span is accepted from `pending` up to the highest (the device's signature covers
    it and every entry it links back to), a block at a time; the chunk's copies of the
    entries now accepted are dropped from it, as the general walk would have merged
    them with the held ones (not duplicates). Returns the carry and the chunk left."""
    sp = c.spill
    assert sp is not None
    if sp.forked:
        # (copies of the chain's entries, or of another branch's: a device signature
        # over another branch, whose choice the general walk makes with all in memory)
        tops = _chain_tops(db, did, sp, [q for q, _, _ in signed])
        if any(tops[q] != h for q, h, _ in signed):
            return _unspill(led, db, did, c, res, whole=True), recs, checked, leaves
    upto, top, _ = max(signed)
    if sp.altered is not None and upto >= sp.altered:     # (as _unspill says)
        return _unspill(led, db, did, c, res, whole=True), recs, checked, leaves
    for seq, h, sig in signed:
        db.sign_pending(did, seq, h, sig)
    keep = [i for i, (r, (_, f, ok)) in enumerate(zip(recs, checked, strict=True))
            if not (sp.first <= r.seq <= upto and _refusal(key, r.seq, f, ok) is None)]
    return (_spilled_to(led, db, did, c, upto, top, sp.checked, res, key),
            [recs[i] for i in keep], [checked[i] for i in keep],
            None if leaves is None else [leaves[i] for i in keep])


def _as_chain(db: LedgerStorage, did: str, key: DeviceKey, rest: dict[int, list[_Cand]],
              s: int, head: bytes) -> list[_Cand] | None:
    """The held candidates `rest` as one linked chain from seq `s` after `head` (the
    tip, or a spilled span's end), one copy each, none signed, a device that does not
    sign every entry: what _extend leaves as `_Walked.chain` (a log-altered report
    among them counts only once a signature covers it: _extend, _Spill.altered).
    So a chunk the general walk took still lets the next ones walk on (and spill),
    instead of keeping its held entries as candidates to walk again at every chunk.
    None: they are not such a chain."""
    if not rest or min(rest) != s or max(rest) != s + len(rest) - 1:
        return None
    chain: list[_Cand] = []
    first_head = head
    for seq in range(s, s + len(rest)):
        cs = rest[seq]
        if len(cs) != 1:
            return None
        c = cs[0]
        if c.f.prev != head or c.sig is not None:
            return None
        chain.append(c)
        head = c.h
    if s > 0:
        return chain if _policy(db, did) != POLICY_EVERY_ENTRY else None
    f0 = chain[0].f
    return chain if _own_first(f0, key, first_head) and signing_policy(
        f0) != POLICY_EVERY_ENTRY else None


def _merge(led: Ledger, db: LedgerStorage, did: str, dev: Device, key: DeviceKey,
           recs: list[RawEntry], checked: list[_Checked], cands: dict[int, list[_Cand]],
           res: Result, leaves: list[bytes] | None = None, spill: _Spill | None = None,
           up: _Up | None = None) -> dict[int, list[_Cand]]:
    """Any chunk: check each entry (findings for those refused), count duplicates of
    accepted ones, add the rest to the held candidates `cands`, accept the signed
    prefix of the chain from the tip (_advance); returns the candidates not taken.
    `spill`: the held chain's first entries are rows of `pending` only (_Spill), and
    the chunk has nothing for their seqs but unsigned copies of them (_merges_on,
    _signs_spilled): the walk goes on from the span's end."""
    old = [r.seq for r in recs if r.seq <= dev.tip_seq]
    accepted: dict[int, bytes] = {} if not old else db.entry_hashes(did, min(old), max(old))
    for i, (seq, body, sig) in enumerate(recs):
        h, f, sig_ok = checked[i]
        err = _refusal(key, seq, f, sig_ok)
        if err is not None:
            res.findings.append(Finding(did, seq, f"entry refused: {err}"))
            continue
        assert type(f) is EntryFields
        if accepted and accepted.get(seq) == h:
            res.duplicates += 1
            continue
        if spill is not None and spill.first <= seq <= spill.last:
            continue                     # (a copy of the spilled entry: _merges_on)
        cs = cands.get(seq)
        if cs is None:
            cands[seq] = [_new(_Cand, (seq, h, body, sig, f, False,
                                       None if leaves is None else leaves[i]))]
            continue
        for i, c in enumerate(cs):
            if c.h == h:
                # A signed copy replaces an unsigned one of the same bytes: its
                # signature is what lets the entry (and the chain up to it) be accepted.
                if sig is not None and c.sig is None:
                    cs[i] = c._replace(sig=sig)
                    if c.stored:
                        db.sign_pending(did, seq, h, sig)
                break
        else:
            cs.append(_Cand(seq, h, body, sig, f, False))
    for cs in cands.values():
        if len(cs) > 1:
            cs.sort(key=lambda c: c.h)
    taken = _advance(led, db, did, cands, res, spill, key, up)
    rest: dict[int, list[_Cand]] = defaultdict(list)
    if len(taken) != len(cands) or any(len(cs) > 1 for cs in cands.values()):
        for seq, cs in cands.items():      # (all taken, one copy each: nothing is left)
            for c in cs:
                if taken.get(seq) is not c:
                    rest[seq].append(c)
    return rest




_Checked = tuple[bytes, EntryFields | HashtrailError, bool]

_NO_LINK = ("entry does not link to the previous entry (edited, reordered or from another "
            "chain); held")


class _Submitted(NamedTuple):
    """A chunk's signatures handed to a pool: the key they were checked with, where
    its batches start (and the last ends), and each batch's verdicts."""

    pub: bytes
    cuts: list[int]
    batches: list[verify_pool.Verdicts]


def _cuts(n: int) -> list[int]:
    """Batch boundaries for a chunk of n entries: BATCH entries each. (Cutting the last
    batch smaller, so that less of the walk is left after the workers' last verdict,
    measured no different: docs/LEDGER.md "Per-entry signatures in worker processes".)"""
    return [*range(0, n, BATCH), n]


class _Ahead:
    """Chunks paired with their pool verdicts, handed over two chunks ahead (AHEAD):
    while this process walks a chunk, the workers check the next ones. At most three
    chunks' entries are in flight (the bound CHUNK keeps on memory, tripled); none
    ahead while no worker runs (a bundle without per-entry signatures streams as it
    always did). Why two: with one, the workers ran out of tasks while this process
    finished a chunk's walk, committed it and read the next one (cores 1.945 to 1.976
    busy of 2 in a 200k-entry run, against 1.970 to 1.977 with two: docs/LEDGER.md)."""

    def __init__(self, run: _Run, pool: verify_pool.VerifyPool | None) -> None:
        self.run, self.pool = run, pool
        self.waiting: deque[tuple[Prepared, _Submitted | None]] = deque()

    def chunks(self, chunks: Iterable[Prepared]
               ) -> Iterator[tuple[Prepared, _Submitted | None]]:
        pool = self.pool
        if pool is None:
            for p in chunks:
                yield p, None
            return
        waiting = self.waiting
        for p in chunks:
            # (a chunk the reader prepared has no per-entry signature: nothing to hand)
            waiting.append((p, None if p.checked is not None else
                            self.run.submit(p.device_id, p.recs, pool)))
            # (no workers, nothing to hand ahead: a chunk goes as soon as it is read)
            while len(waiting) > AHEAD or (waiting and not pool.running):
                yield waiting.popleft()
        while waiting:
            yield waiting.popleft()

    def discard(self) -> None:
        """Drop the answers nobody will read (a run stopped by an error)."""
        while self.waiting:
            sub = self.waiting.popleft()[1]
            if sub is not None:
                for v in sub.batches:
                    v.discard()


def _pooled(vs: list[verify_pool.Verdicts], recs: list[RawEntry]) -> list[_Checked]:
    """What _check_entries gives, from a pool's verdicts on `recs` (in order): the
    entries are parsed here while the workers still check, the hashes and verdicts
    come from the workers."""
    fs: list[EntryFields | HashtrailError] = []
    for r in recs:
        try:
            fs.append(parse_entry(r.body))
        except HashtrailError as e:
            fs.append(e)
    hashes: list[bytes] = []
    ok = b""
    for v in vs:
        h, k = v.result()
        hashes += h
        ok += k
    if len(hashes) != len(recs):
        raise verify_pool.PoolError(f"verify pool: {len(hashes)} verdicts for "
                                    f"{len(recs)} entries")
    return list(zip(hashes, fs, map(bool, ok), strict=True))


def _check_entries(key: DeviceKey, recs: list[RawEntry], workers: int | None
                   ) -> list[_Checked]:
    """(entry hash, parsed entry or why not, signature ok or absent) for each record.

    Per-entry signatures are checked over every CPU (keys.map_slices; OpenSSL drops the
    GIL while it verifies), and each thread also hashes and parses its slice between
    verifies: the parse then runs while the other threads are inside OpenSSL, instead
    of after all of them. A bundle with few signatures stays on this thread (parsing
    alone holds the GIL: threads would only add their cost)."""
    sha256 = hashlib.sha256
    signed = key.signed

    def part(lo: int, hi: int) -> list[tuple[bytes, EntryFields | HashtrailError, bool]]:
        out: list[tuple[bytes, EntryFields | HashtrailError, bool]] = []
        for _seq, body, sig in recs[lo:hi]:
            h = sha256(body).digest()
            ok = sig is None or signed(h, sig)
            f: EntryFields | HashtrailError
            try:
                f = parse_entry(body)
            except HashtrailError as e:
                f = e
            out.append((h, f, ok))
        return out

    n = len(recs)
    signatures = sum(1 for r in recs if r.sig is not None)
    if not signatures:
        # (a checkpoint-signed chunk: each entry hashed and parsed by one map, no
        # per-entry step; an entry that does not parse sends the chunk to `part`,
        # which says why for each)
        bodies = [r.body for r in recs]
        try:
            fs: list[EntryFields | HashtrailError] = list(map(parse_entry, bodies))
        except HashtrailError:
            return part(0, n)
        return list(zip([sha256(b).digest() for b in bodies], fs, [True] * n, strict=True))
    many = 2 * signatures >= n
    return map_slices(part, n, workers if many else 1)


def _load_pending(db: LedgerStorage, did: str, lo: int,
                  parsed: dict[bytes, EntryFields | _Walk], hi: int = MAX_SEQ
                  ) -> dict[int, list[_Cand]]:
    """The device's held entries as candidates. Each was checked when it was first
    held, and `pending` keeps what the walk reads of it (prev, kind, t): only the kinds
    whose body the walk reads, and rows held without those fields, are decoded, once
    per run (`parsed`)."""
    out: dict[int, list[_Cand]] = defaultdict(list)
    for s, h, b, sig, prev, kind, t in db.pending(did, lo, hi):
        f = parsed.get(h)
        if f is None:
            if kind is None or prev is None or kind in _BODY_KINDS:
                f = parsed[h] = parse_entry(b)
            else:
                f = parsed[h] = _Walk(prev, kind, t)
        out[s].append(_Cand(s, h, b, sig, f, True))
    return out


def _entry(c: _Cand) -> EntryFields:
    """The candidate's whole entry (decoded when it was loaded as a _Walk)."""
    return parse_entry(c.body) if isinstance(c.f, _Walk) else c.f


def _signed_heads(db: LedgerStorage, did: str, lo: int, hi: int = MAX_SEQ
                  ) -> set[tuple[int, bytes]]:
    """(seq, head) of the device's checkpoints at lo <= seq <= hi."""
    return {(c.seq, c.head) for c in db.device_checkpoints(did, lo, hi)}


def _policy(db: LedgerStorage, did: str) -> int | None:
    """The signing policy of the device's accepted entry 0 (None: not accepted yet)."""
    e0 = db.entry(did, 0)
    return None if e0 is None else signing_policy(parse_entry(e0.body))


def _altered_stop(did: str, tip: int, cands: dict[int, list[_Cand]],
                  heads: set[tuple[int, bytes]], res: Result, up: _Up | None = None
                  ) -> int | None:
    """The lowest seq a pending log-altered entry disowns and the ledger does not hold
    yet (None: no such report). Each report is a finding with the device's reason.

    Only the device's word counts: a report its own signature or a later one chained
    to it covers. Bundles from anyone fill gaps, so an unsigned report that no device
    signature covers (yet) could be made up by whoever wrote the bundle, to hold a
    device's entries out of the ledger for good; it waits in `pending` instead."""
    stop: int | None = None
    for c in [c for cs in cands.values() for c in cs if c.f.kind == KIND_LOG_ALTERED]:
        report = _entry(c).body                     # (loaded whole: _BODY_KINDS)
        first, a = min(int(report[1]), c.seq), c.seq
        if a <= tip:         # a copy beside the accepted entry: fork evidence's concern
            continue
        if c.sig is None and not _signed_ahead(c, cands, heads, up=up):
            continue
        span = (f"entries {first}..{a - 1}" if first < a - 1 else f"entry {first}"
                if first == a - 1 else f"its log from entry {a}")
        said = (f"log altered: the device reports {span} altered on its flash (log-altered"
                f" entry {a}): {report[2]}")
        if a == tip + 1:     # every entry it disowns was accepted before this report
            if first <= tip:
                res.once(Finding(did, first, f"{said}; accepted before this "
                                            "report, under the device's signatures"))
            continue
        cut = max(first, tip + 1)
        res.once(Finding(did, cut, f"{said}; never accepted"))
        stop = cut if stop is None else min(stop, cut)
    return stop


def _advance(led: Ledger, db: LedgerStorage, did: str, cands: dict[int, list[_Cand]],
             res: Result, spill: _Spill | None = None, key: DeviceKey | None = None,
             up: _Up | None = None) -> dict[int, _Cand]:
    """Accept the signed prefix of the chain from the tip; returns the candidates taken.
    `spill`: the chain's first entries, rows of `pending` (_Spill: one linked copy
    each, none signed or covered); the walk starts after them, and they are accepted
    (a block at a time) when anything after them is. `up`: held rows not in `cands`
    (set aside) a log-altered report's links are followed through (_altered_stop)."""
    dev = led.device(did)
    assert dev is not None
    heads = _signed_heads(db, did, dev.tip_seq + 1)
    path: list[_Cand] = []
    covered = 0
    s, head = dev.tip_seq + 1, dev.tip_head
    if spill is not None:
        s, head = spill.last + 1, spill.head
    every = s > 0 and _policy(db, did) == POLICY_EVERY_ENTRY   # (at 0: entry 0 says)
    stop = _altered_stop(did, dev.tip_seq, cands, heads, res, up)
    end = (1 << 63) if stop is None else stop
    said: list[Finding] = []
    # (policy 0 walks on past a disowned range: a later signature still covers what
    # lies below it, since the links commit to those entries whatever follows)
    while s in cands and (s < end or not every):
        cs = cands[s]
        if len(cs) == 1 and cs[0].f.prev == head:      # the usual case: one linked copy
            c = cs[0]
        else:
            opts = [c for c in cs if c.f.prev == head]
            if not opts:
                said.append(Finding(did, s, _NO_LINK))
                break
            # Two linked candidates for one seq (say an edited copy from one collector
            # and the real entry from another): take the one whose chain reaches a
            # device signature; the other stays pending, and becomes fork evidence once
            # signed too. When none does (policy 0), nothing past here can be accepted
            # yet, and which way to walk on is nobody's word: the walk stops here.
            ahead = {id(c) for c in opts if _signed_ahead(c, cands, heads, every)}
            if not ahead and not every and len(opts) > 1:
                break
            opts.sort(key=lambda c: (id(c) not in ahead, c.h))
            c = opts[0]
        if s == 0:
            every = signing_policy(_entry(c)) == POLICY_EVERY_ENTRY
        if every:
            if c.sig is None:
                res.once(Finding(did, s, "entry unsigned: it carries no device "
                                            "signature, but this device signs every entry "
                                            "(entry 0); held"))
                break
            path.append(c)
            covered = len(path)
        else:
            path.append(c)
            if c.sig is not None or (s, c.h) in heads:
                covered = len(path)
        head, s = c.h, s + 1
    if stop is not None:
        assert spill is None                # (_merges_on: no report with a spill)
        covered = min(covered, stop - dev.tip_seq - 1)
    if covered or spill is None or not spill.stops:
        # (a forked span the chain past it does not cover: the whole walk stops at
        # the fork, below what this walk met)
        for f in said:
            res.once(f)
    take = path[:covered]
    if take and spill is not None:
        _take_spilled(led, db, did, spill.last, res,
                      (spill.head, key, spill) if spill.forked else None)
        dev = led.device(did)
        assert dev is not None
    _take(led, db, did, dev, take, res)
    return {c.seq: c for c in take}


def _take(led: Ledger, db: LedgerStorage, did: str, dev: Device, take: list[_Cand],
          res: Result) -> None:
    """Accept `take`, the chain that follows the device's tip `dev`: the time and
    firmware findings, a leaf and an entries row each, the new tip."""
    prev_t = dev.tip_t
    for c in take:
        t = c.f.t
        if t is None:
            continue
        if prev_t is not None and t < prev_t and c.f.kind != KIND_TIME_SET:
            res.once(Finding(did, c.seq, f"device time went backwards "
                                        f"({prev_t} -> {t}); accepted, flagged"))
        prev_t = t
    _firmware(db, did, dev.tip_seq, take, res)
    # (the leaves the bundle reader hashed come with the candidate: _Cand.leaf)
    hashed = iter(leaf_hashes(did, [(c.seq, c.h, c.body) for c in take if c.leaf is None]))
    first = led.append_leaf_hashes([c.leaf or next(hashed) for c in take])
    db.add_entries([(did, c.seq, first + i, c.h, c.body, c.sig) for i, c in enumerate(take)])
    db.drop_pending([(did, c.seq, c.h) for c in take if c.stored])
    res.accepted += len(take)
    if take:
        last = take[-1]
        db.set_tip(did, last.seq, last.h, prev_t)


def _firmware(db: LedgerStorage, did: str, tip: int, take: list[_Cand], res: Result
              ) -> None:
    """The firmware rules (chain.fwrules, as the collector and `verify --ledger` apply
    them) over the entries accepted now, against the accepted history before them.

    Accepted, flagged: the entries carry the device's own signature, so like a fork
    they are the evidence of a device whose firmware lied (or whose key signs for
    someone else), kept in the log; `verify --ledger` raises the alarm. The earlier
    updates are read only when an update entry arrives, and the tip entry once per
    chunk: a reconcile still costs O(new entries)."""
    if not take:
        return
    # a held entry's row keeps only what the walk reads (_Walk): decoded once here
    es = [parse_entry(c.body) if isinstance(c.f, _Walk) else c.f for c in take]
    rules = (installed_rules(db, did, tip) if KIND_UPDATE in map(_kind, es)
             else FirmwareRules())
    last = None
    if tip >= 0:
        se = db.entry(did, tip)
        last = None if se is None else parse_entry(se.body)
    for f in rules.check_all(last, es):
        res.once(Finding(did, f.seq, f"firmware: {f.code}: {f.text}; accepted, flagged"))


_kind = attrgetter("kind")


def _signed_ahead(start: _Cand, cands: dict[int, list[_Cand]],
                  heads: set[tuple[int, bytes]], every: bool = False,
                  up: _Up | None = None) -> bool:
    """Whether a device signature covers `start` or an entry chained after it (for a
    device that signs every entry: its own signature). `up`: the rows of `pending` at
    a seq `cands` does not have (rows set aside, _Carry.aside), followed too; where an
    earlier chunk of the run followed them to without a signature (`up.followed`),
    the follow goes on from there."""
    if every:
        return start.sig is not None
    memo = None if up is None else up.followed
    was = None if memo is None else memo.reports.get((start.seq, start.h))
    if was is True:
        return True
    if was is not None and was[2] == heads:
        stack = [(was[0], h, False) for h in was[1]]
    else:
        stack = [(start.seq, start.h, start.sig is not None)]
    seen = {(q, h) for q, h, _ in stack}
    top, ends = stack[0][0], [h for _, h, _ in stack]
    while stack:
        seq, h, signed = stack.pop()
        if signed or (seq, h) in heads:
            if memo is not None:
                memo.reports[(start.seq, start.h)] = True
            return True
        if seq > top:
            top, ends = seq, [h]
        elif seq == top and h not in ends:
            ends.append(h)
        nxt = cands.get(seq + 1)
        if nxt is not None:
            kids = [(seq + 1, n.h, n.sig is not None) for n in nxt if n.f.prev == h]
        elif up is not None:
            kids = [(seq + 1, x, sg) for x, sg, p in up.at(seq + 1) if p == h]
        else:
            continue
        for k in kids:
            if k[:2] not in seen:
                seen.add(k[:2])
                stack.append(k)
    if memo is not None:
        memo.reports[(start.seq, start.h)] = (top, ends, frozenset(heads))
    return False


class _Up(NamedTuple):
    """The rows of `pending` at a seq, (hash, signed, prev) each (_Links.at): rows set
    aside (_Carry.aside) that a log-altered report's links are followed up through
    (_signed_ahead), and how far earlier chunks followed them (None: not kept)."""

    at: Callable[[int], list[tuple[bytes, bool, bytes | None]]]
    followed: _Followed | None


class _Followed:
    """How far each log-altered report held among rows set aside was followed up
    without reaching a device signature, by the report's (seq, hash): the highest seq
    reached, the hashes of the entries there, and the device checkpoints it looked
    for; True once it reached a signature.

    Why: a report stripped of its signature (anyone can strip one) with a long
    stripped chain above it was followed from the report to the chain's end at every
    chunk, quadratic in the chain (4.7 s for 40,000 entries at chunks of 500, 0.6 s
    without the report). What lies from the report up to that top does not change
    while no entry comes for those seqs (`came` forgets the follow when one does) and
    the checkpoints are the same: the next chunk's follow goes on from the entries at
    the top. A signature once reached stays: rows are only added."""

    def __init__(self) -> None:
        self.reports: dict[tuple[int, bytes], Literal[True] | tuple[
            int, list[bytes], frozenset[tuple[int, bytes]]]] = {}

    def came(self, recs: list[RawEntry]) -> None:
        """A chunk's entries are about to join the device's rows: a report's follow
        that went past one of their seqs starts again from the report (one below the
        report is on none of its chains)."""
        if recs and self.reports:
            seqs = sorted({r.seq for r in recs})
            self.reports = {k: v for k, v in self.reports.items() if v is True or not (
                (i := bisect_left(seqs, k[0])) < len(seqs) and seqs[i] <= v[0])}


def accepted_branch(db: LedgerStorage, did: str, seq: int) -> Branch:
    """The shortest signed branch of the accepted chain that covers `seq`: up to a
    device signature on an accepted entry, or else up to the device's signature past a
    range it disowned, through the held entries there (held_cover)."""
    cp = db.covering_checkpoint(did, seq)
    sg = db.first_signed_entry(did, seq)
    options = []
    if cp is not None:
        options.append((cp[0], "checkpoint", cp[1]))
    if sg is not None:
        options.append((sg[0], "entry-sig", sg[1]))
    if not options:
        dev = db.device(did)
        hc = None if dev is None else held_cover(
            db, did, dev.tip_seq, dev.tip_head,
            ((c.seq, c.head, c.cose) for c in db.device_checkpoints(did, dev.tip_seq + 1)))
        if dev is None or hc is None:
            raise HashtrailError(f"device {did}: no signed statement covers accepted seq "
                                 f"{seq}")
        return Branch(db.entry_bodies(did, seq, dev.tip_seq) + hc.chain, hc.kind,
                      hc.statement)
    end, kind, stmt = min(options)
    return Branch(db.entry_bodies(did, seq, end), kind, stmt)


class _Links:
    """The links of the device's rows of `pending` (seq -> [(hash, signed, prev)]),
    read a block of seqs at a time without their bodies: what a fork's branch is
    followed along (_pending_branch, _branch_start), so a long made-up branch costs
    reads, not memory."""

    def __init__(self, db: LedgerStorage, did: str) -> None:
        self.db, self.did, self.lo, self.hi = db, did, 0, -1
        self.rows: dict[int, list[tuple[bytes, bool, bytes | None]]] = {}

    def at(self, seq: int, up: bool) -> list[tuple[bytes, bool, bytes | None]]:
        if not self.lo <= seq <= self.hi:
            self.lo, self.hi = (seq, seq + CHUNK - 1) if up else (max(0, seq - CHUNK + 1), seq)
            self.rows = defaultdict(list)
            for q, h, signed, prev, _ in self.db.pending_links(self.did, self.lo, self.hi):
                self.rows[q].append((h, signed, prev))
        return self.rows.get(seq, [])


def _pending_branch(db: LedgerStorage, did: str, start: _Cand,
                    cands: dict[int, list[_Cand]], heads: dict[tuple[int, bytes], bytes],
                    hi: int) -> Branch | None:
    """Follow held entries (in memory or rows of `pending`) from `start` along prev
    links to a device signature. `heads`: the device's checkpoints up to seq `hi`
    (those above are read as the branch reaches them). The bodies are read only for
    a branch that reaches a signature (_branch_of)."""
    path = [(start.seq, start.h)]
    seq, h, signed = start.seq, start.h, start.sig is not None
    links = _Links(db, did)
    while True:
        if signed:
            return _branch_of(db, did, path, cands, "entry-sig", None)
        if seq > hi:
            heads = {(c.seq, c.head): c.cose for c in db.device_checkpoints(
                did, seq, seq + CHUNK - 1)}
            hi = seq + CHUNK - 1
        cose = heads.get((seq, h))
        if cose is not None:
            return _branch_of(db, did, path, cands, "checkpoint", cose)
        nxt = [(c.h, c.sig is not None) for c in cands.get(seq + 1, ()) if c.f.prev == h]
        if not nxt:
            nxt = [(x, s) for x, s, p in links.at(seq + 1, up=True) if p == h]
        if not nxt or len(path) > _BRANCH_MAX:
            return None
        (h, signed), seq = nxt[0], seq + 1
        path.append((seq, h))


def _branch_of(db: LedgerStorage, did: str, path: list[tuple[int, bytes]],
               cands: dict[int, list[_Cand]], kind: str, cose: bytes | None) -> Branch:
    """The branch `path` (seq, hash) with its entries' bodies (from memory, or read from
    `pending` a block at a time) and its signature: the last entry's own, or `cose`."""
    bodies: list[bytes] = []
    last: _Cand | None = None
    for i in range(0, len(path), CHUNK):
        part = path[i:i + CHUNK]
        rows: dict[int, list[_Cand]] | None = None
        for seq, h in part:
            c = next((x for x in cands.get(seq, ()) if x.h == h), None)
            if c is None:
                if rows is None:
                    rows = _load_pending(db, did, part[0][0], {}, part[-1][0])
                c = next(x for x in rows.get(seq, ()) if x.h == h)
            bodies.append(c.body)
            last = c
    assert last is not None
    stmt = last.sig if kind == "entry-sig" else cose
    assert stmt is not None
    return Branch(bodies, kind, stmt)


_BRANCH_MAX = 100_000    # entries a fork branch is followed for (up, or down to its start)


def _branch_start(db: LedgerStorage, did: str, c: _Cand,
                  diverges: Callable[[int, bytes, bytes | None], bool],
                  cands: dict[int, list[_Cand]], tip: int, seen: set[tuple[int, bytes]]
                  ) -> _Cand | None:
    """The held entry where the branch `c` is on leaves the accepted chain (at or below
    the tip, its prev the accepted entry before it: `diverges`), followed down prev
    links through the candidates and, at or below the tip, the rows of `pending`
    (_Links); None if the branch does not reach one, or meets an entry already walked
    down from (`seen`) in this look."""
    links = _Links(db, did)
    seq, h = c.seq, c.h
    prev: bytes | None = c.f.prev
    for _ in range(_BRANCH_MAX):
        if (seq, h) in seen or seq == 0 or prev is None:
            return None
        seen.add((seq, h))
        q = seq - 1
        mem = [x for x in cands.get(q, ()) if x.h == prev]
        if mem:
            x = mem[0]
            seq, h, prev = q, x.h, x.f.prev
            if q <= tip and diverges(q, h, prev):
                return x
            continue
        if q > tip:
            return None
        below = [p for x, _, p in links.at(q, up=False) if x == prev]
        if not below:
            return None
        seq, h, prev = q, prev, below[0]
        if diverges(q, h, prev):
            return next(x for x in _load_pending(db, did, q, {}, q)[q] if x.h == h)
    return None


def _forks(led: Ledger, db: LedgerStorage, did: str, key: DeviceKey,
           cands: dict[int, list[_Cand]], res: Result, cp_lo: int, down: bool = True
           ) -> None:
    """Fork evidence from candidates not on the accepted chain (`cands`) and from
    device checkpoints that disagree with it.

    Only checkpoints at seq >= `cp_lo` are compared (those new to the ledger and those
    the tip just passed): an older one was compared when it arrived or when the tip
    passed it, and the lowest disagreeing one was kept as evidence then. So a reconcile
    reads checkpoints in proportion to what it adds, not to the device's history."""
    dev = led.device(did)
    assert dev is not None
    acc_seen: dict[int, bytes] = {}

    def acc(seq: int) -> bytes:
        h = acc_seen.get(seq)
        if h is None:
            e = db.entry(did, seq)
            assert e is not None          # at or below the tip: accepted
            h = acc_seen[seq] = e.entry_hash
        return h

    def diverges(s: int, h: bytes, prev: bytes | None) -> bool:
        """An entry linking to the accepted entry before it, not the accepted one."""
        return acc(s) != h and prev == (key.genesis_prev if s == 0 else acc(s - 1))

    tip = dev.tip_seq
    low = [s for s in cands if s <= tip]
    # (none above the tip and the candidates: a branch ends at the highest candidate,
    # and the device's checkpoints further up would be read again at each chunk)
    hi = max([tip, *cands])
    dcps = db.device_checkpoints(did, min([*low, cp_lo]), hi)
    cp_forks = [(c.seq, Branch([], "checkpoint", c.cose)) for c in dcps
                if cp_lo <= c.seq <= tip and acc(c.seq) != c.head]
    heads = {(c.seq, c.head): c.cose for c in dcps}
    # Where each held branch leaves the accepted chain (its divergence point): the
    # candidate itself, or a held entry below it (_branch_start: down the candidates,
    # and at or below the tip down the rows of `pending`, which walks do not load).
    # Looked for from the candidates at or just above the tip, and from those above
    # it a device signature covers (the piece that can make a held branch evidence);
    # `down`: also from rows (not from rows the tip passed here: their lower rows
    # were looked at when it passed them, a block before).
    starts: dict[tuple[int, bytes], _Cand] = {}
    seen: set[tuple[int, bytes]] = set()
    for s in sorted(cands):
        for c in cands[s]:
            if s <= tip and acc(s) == c.h:
                continue
            if s <= tip and diverges(s, c.h, c.f.prev):
                d: _Cand | None = c
            elif (s > tip + 1 and c.sig is None and (s, c.h) not in heads) \
                    or (c.stored and not down) or (s == tip + 1 and c.f.prev == dev.tip_head):
                continue
            else:
                d = _branch_start(db, did, c, diverges, cands, tip, seen)
            if d is not None:
                starts.setdefault((d.seq, d.h), d)
    if starts and min(q for q, _ in starts) < min([*low, cp_lo]):
        heads.update({(c.seq, c.head): c.cose for c in db.device_checkpoints(
            did, min(q for q, _ in starts), min([*low, cp_lo]) - 1)})
    found: list[tuple[int, Branch]] = []
    for (s, _), c in sorted(starts.items()):
        br = _pending_branch(db, did, c, cands, heads, hi)
        if br is None:
            res.once(Finding(did, s, "entry conflicts with the accepted one"
                             " but no device signature covers it; held"))
        else:
            found.append((s, br))
    # A mismatching checkpoint is its own evidence unless a branch above already shows
    # the same fork from its divergence point, or evidence for this device is stored.
    known = db.first_evidence(did)
    first = min([s for s, _ in found] + ([known[0]] if known is not None else []),
                default=None)
    found += [(s, br) for s, br in cp_forks if first is None or s < first][:1]
    for s, br in found:
        doc = make_evidence(key.pub, s, accepted_branch(db, did, s), br)
        # one evidence row per distinct fork (seq, both hashes), however often re-signed
        digest = hashlib.sha256(s.to_bytes(8, "big") + acc(s) + branch_hash(key, s, br)).digest()
        if db.add_evidence(did, s, digest, doc, int(time.time())):
            res.forks += 1
            res.once(Finding(did, s, "fork: the device key signed two different "
                             "entries for this seq; evidence kept, device flagged"))
        db.set_forked(did)
