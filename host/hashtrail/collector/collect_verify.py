"""Verification of one collection run, before anything is accepted (pure, no I/O).

Why a separate module: `collect` decides accept-or-quarantine from the bytes as
received, and that decision must be testable without a device. The chain itself is
judged by the project's verifier (records.parse_records + chainverify.verify_chain:
CRCs, seq continuity from the anchor, prev links, genesis, signatures, the checkpoint
records in the log); this module adds what only a live collection can check: the
checkpoint made just now carries OUR random nonce and signs the head of the last
entry we hold, so a replayed checkpoint or a truncated tail cannot pass.

The device is held to the signing policy of its entry 0: read from the pulled entry 0
on a first collection, else `policy` as the store kept it (Store.policy). Under policy
1 an entry without its own signature is refused even though the fresh checkpoint signs
the head after it: a device signing over a log rewritten on its flash is exactly what
the per-entry signatures are there to catch. A log-altered entry (the device's own
report) is refused whatever the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hashtrail.chain.chainverify import Anchor as ChainAnchor
from hashtrail.chain.chainverify import ChainWalk
from hashtrail.chain.fwrules import FirmwareRules
from hashtrail.collector.store import Anchor
from hashtrail.errors import HashtrailError
from hashtrail.formats.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from hashtrail.formats.entry import Entry
from hashtrail.formats.records import parse_records


@dataclass
class Report:
    fresh: Checkpoint | None
    checkpoints: list[Checkpoint]  # the checkpoint records found in the pulled log
    # (Verifier fed in batches: empty, the caller keeps what `feed` returned)
    findings: list[str] = field(default_factory=list)
    last_seq: int | None = None  # last entry verified, when findings is empty
    head: bytes | None = None
    more: int = 0  # findings beyond those kept (an incremental verification)

    @property
    def ok(self) -> bool:
        return not self.findings and self.fresh is not None


def checkpoint_seq(cose: bytes) -> int:
    """The seq a checkpoint claims (not verified: only to know whether to pull more)."""
    return parse_checkpoint(cose).seq


class Verifier:
    """`verify` fed in batches as records arrive (collect streams them to quarantine and
    holds none): the chain walk keeps its running state (chainverify.ChainWalk) and at
    most KEEP findings; the checkpoint records of each batch go back to the caller."""

    KEEP = 100

    def __init__(self, pub: bytes, anchor: Anchor | None, *, policy: int | None = None,
                 keep: int | None = KEEP, keep_checkpoints: bool = False,
                 fw: FirmwareRules | None = None, fw_last: Entry | None = None) -> None:
        self.pub = pub
        self.anchor = anchor
        self.walk = ChainWalk(pub, anchor=None if anchor is None
                              else ChainAnchor(anchor.seq, anchor.head),
                              policy=policy, keep=keep, keep_checkpoints=False, fw=fw,
                              fw_last=fw_last)
        self.keep_checkpoints = keep_checkpoints
        self.cps: list[Checkpoint] = []  # with keep_checkpoints: Report.checkpoints

    def feed(self, raw_records: Sequence[bytes]) -> list[Checkpoint]:
        """Walk one batch; returns the checkpoint records it parsed (the caller
        quarantines them; kept in Report.checkpoints only with keep_checkpoints)."""
        if self.walk.damaged or not raw_records:
            return []
        records, problems = parse_records(b"".join(raw_records), source="serial")
        self.walk.feed(records)
        self.walk.problems(problems)
        cps: list[Checkpoint] = []
        for r in records:
            if not r.is_entry:
                try:
                    cps.append(parse_checkpoint(r.body))
                except HashtrailError:
                    pass  # the chain report names it
        if self.keep_checkpoints:
            self.cps += cps
        return cps

    def walked(self, seq: int, h: bytes) -> bool:
        """Entry `h` at `seq` was walked: what `Store.accept` may mark, when ok."""
        return self.walk.walked(seq, h)

    def finish(self, fresh_cose: bytes, nonce: bytes, *, earlier: bool = False) -> Report:
        """The verdict, with the fresh checkpoint for `nonce`. `earlier`: the checkpoint
        was asked for before the last records were pulled (the device kept appending),
        so it may sign an entry before the last one received: then exactly the entries
        up to the one it signs are vouched for (the rest wait for a later run)."""
        chain = self.walk.finish()
        anchor = self.anchor
        rep = Report(fresh=None, checkpoints=self.cps, more=chain.more)
        rep.findings += [f"seq {f.seq}: {f.code}: {f.text}" for f in chain.findings]
        try:
            fresh = verify_checkpoint(fresh_cose, self.pub, nonce=nonce)
        except HashtrailError as e:
            rep.findings.append(f"fresh checkpoint: {e}")
            return rep
        rep.fresh = fresh
        if chain.last_seq is None:  # nothing new: the head must be our anchor
            if anchor is None or (fresh.seq, fresh.head) != (anchor.seq, anchor.head):
                rep.findings.append(
                    f"fresh checkpoint signs seq {fresh.seq}, but this collector holds "
                    f"{'nothing' if anchor is None else anchor.seq} and received no entries "
                    "(rolled back, cloned or truncated device?)")
            else:
                rep.last_seq, rep.head = anchor.seq, anchor.head
            return rep
        if (earlier and fresh.seq < chain.last_seq and self.walk.walked(fresh.seq, fresh.head)
                and (anchor is None or fresh.seq > anchor.seq)):
            if not rep.findings:
                rep.last_seq, rep.head = fresh.seq, fresh.head
            return rep
        if fresh.seq != chain.last_seq or fresh.head != chain.head:
            rep.findings.append(
                f"fresh checkpoint signs seq {fresh.seq}, the entries received end at "
                f"{chain.last_seq} with another head (tail truncated or rolled back?)")
        if not rep.findings:
            rep.last_seq, rep.head = chain.last_seq, chain.head
        return rep


def verify(pub: bytes, anchor: Anchor | None, raw_records: Sequence[bytes],
           fresh_cose: bytes, nonce: bytes, *, policy: int | None = None,
           fw: FirmwareRules | None = None, fw_last: Entry | None = None) -> Report:
    """Judge records pulled after `anchor` plus the fresh checkpoint for `nonce`;
    `policy` is the device's signing policy as stored from its entry 0; `fw`, `fw_last`
    what the store's accepted history says of its firmware (Store.firmware)."""
    v = Verifier(pub, anchor, policy=policy, keep=None, keep_checkpoints=True, fw=fw,
                 fw_last=fw_last)
    v.feed(raw_records)
    return v.finish(fresh_cose, nonce)
