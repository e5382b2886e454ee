"""Re-verify a whole ledger from the bytes its devices signed (docs/LEDGER.md "verify").

Why: a ledger file may come from someone else or have been edited on disk, by hand or
by its own operator. This trusts no derived column and no row for being there. Every
row of every table is re-derived from device-signed data or checked against it:

- meta: exactly the known keys; the verifier key canonical and named for the origin;
  `size` equal to the number of leaves;
- devices: the id canonical (keys.parse_device_id) and the hash of the row's key;
  tip_seq / tip_head / tip_t what the device's accepted entries say; `forked` set
  exactly when fork evidence is kept; a stored enrollment signature by a trusted
  collector, over the row's id, key, label, board, firmware and enrollment time
  (formats.enrollment; an unsigned enrollment, from before these signatures, is a note);
- entries (the leaves): every row is exactly one entry of an enrolled device, at one
  leaf index, with its stored hash the hash of its bytes; leaf indexes run 0..size-1
  with no hole, no duplicate leaf; per-device counts sum to the tree size; each device's
  chain re-verifies from its genesis; every entry is covered by a device signature
  under the policy its entry 0 declares (entry.signing_policy): policy 1, its own
  valid signature; policy 0, a verified device checkpoint (or a later signed entry) in
  the ledger, and then the device reports those entries "unprotected until checkpoint
  N", never plain "ok"; entries a log-altered entry (kind 6) disowns are a problem;
  entries that break the firmware rules (chain.fwrules: a version changed inside a
  boot, an update written by another version, a downgrade) are an alarm, as a fork is;
- nodes and checkpoints: the stored subtree hashes, every one, and every stored signed
  checkpoint match the tree rebuilt from the entries;
- pending, dev_checkpoints, evidence: every row belongs to an enrolled device, its
  stored hash / seq / head are those of its signed bytes, signatures verify, evidence
  proves the fork it is filed under; collectors: canonical verifier keys; bundles and
  cursors (what reconcile records to skip work, docs/BUNDLE.md "Incremental export"):
  well-formed rows naming a collector key (or none) and enrolled devices. No one signs
  them: a forged row can only make reconcile skip a bundle or export leave entries
  out, which the device chains and witnesses then show as entries not received;
  revocations: each statement signed by the ledger key for this origin, naming its
  row's device, which the devices row says is revoked at that time for that reason.
Every problem names its table, its row's key and what is wrong.

What no check on one file can see (docs/LEDGER.md): a row removed that nothing else
depends on (a ledger checkpoint, a device checkpoint a later one supersedes, a held
pending entry, a trusted collector), operator metadata nobody signed (the label and
board of an enrollment no collector signed, a stripped enrollment signature, revocation),
and a consistent rewrite by the key holder: witnesses keep what they saw.

Per-entry signatures on every CPU: the chain walk reads each device's entries BLOCK
rows at a time and takes each row's SHA-256 and signature verdict from a
chain.verify_pool.VerifyPool (the caller's `pool`, or one of this run's own when the
ledger holds at least COLD_MIN signed entries: starting workers costs more than
checking fewer on threads), or else from threads (keys.map_slices); a block mostly
unsigned is hashed by the walk itself, as before. Blocks are handed to the workers
one ahead, across devices (the first two before the nodes and checkpoints are
checked), so they check the next block while this process walks the current one (as
reconcile hands its chunks: ledger.reconcile "Worker processes"). The walk is the
same, row by row, with the same checks in the same order: only where the hash and the
verdict were computed changes (a row whose body or signature is not bytes is hashed
and checked by the walk itself, as before). Held (pending) entries are few and stay
on this thread.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hashtrail.chain import verify_pool
from hashtrail.chain.devicecheck import KIND_TIME_SET, DeviceKey, parse_entry
from hashtrail.chain.evidence import check_evidence
from hashtrail.chain.fwrules import FirmwareRules
from hashtrail.errors import HashtrailError
from hashtrail.formats import merkle, note
from hashtrail.formats.entry import KIND_LOG_ALTERED, POLICY_EVERY_ENTRY, signing_policy
from hashtrail.formats.keys import map_slices, parse_device_id
from hashtrail.formats.leaf import LEAF_TAG
from hashtrail.ledger import revocation
from hashtrail.ledger.enrollment_state import INVALID, UNSIGNED, check_enrollment
from hashtrail.ledger.held_cover import held_cover
from hashtrail.ledger.ledger_db import STORED_LOWEST, Ledger
from hashtrail.ledger.rebuilt_tree import RebuiltTree

_META_KEYS = {"schema", "origin", "size", "verifier"}
_LEGACY_SIGNER = "signer"
_MAX_PER_TABLE = 50          # problems listed per table before "... and N more"
# Per-entry signatures (module docstring; measured in docs/LEDGER.md "Per-entry
# signatures in worker processes", `verify --ledger`):
COLD_MIN = 20_000   # signed entries in the ledger from which verify starts a pool of its own
BLOCK = 1_000       # entries rows read, checked and walked at a time


@dataclass
class DeviceReport:
    device_id: str
    label: str
    entries: int = 0
    first_t: int | None = None
    last_t: int | None = None
    pending: int = 0
    status: str = "ok"
    policy: int | None = None          # signing policy of entry 0 (None: no entry 0 yet)
    # policy 0: seq ranges and the device signature that first covered them
    unprotected: list[dict[str, Any]] = field(default_factory=list)
    # What the ledger records and a verifier should know, not a fault of the ledger:
    # entries held back (e.g. after a caught tampering), device time going back; and,
    # with `alarm` set, a fork or a device checkpoint off the accepted chain.
    anomalies: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # an anomaly is an integrity problem of the device's history (the device key signed
    # two histories, or entries no genuine firmware writes: chain.fwrules): `verify`
    # exits 1 for it; the others are expected and exit 0
    alarm: bool = False
    fw: str | None = None              # the firmware version of its last accepted entry
    # the trusted collector (its name in this ledger) whose signature over the stored
    # enrollment verified; None: the enrollment is unsigned (or its signature failed,
    # a problem)
    enrollment_signed_by: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.alarm


@dataclass
class LedgerReport:
    size: int
    root: str
    checkpoints: int
    devices: list[DeviceReport]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No integrity problem: expected anomalies (held entries, device time going
        back, entries unprotected until a checkpoint) do not count."""
        return not self.problems and all(d.ok for d in self.devices)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "size": self.size, "root": self.root,
                "checkpoints": self.checkpoints, "problems": self.problems,
                "notes": self.notes, "devices": [{**d.__dict__, "ok": d.ok} for d in self.devices]}


class _Problems:
    """Problems per table, each '<table> (<row key>): <what>', capped per table."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.count: dict[str, int] = defaultdict(int)

    def add(self, table: str, key: str, what: str) -> None:
        self.count[table] += 1
        if self.count[table] <= _MAX_PER_TABLE:
            self.out.append(f"{table} ({key}): {what}")

    def done(self) -> list[str]:
        return self.out + [f"{t}: ... and {n - _MAX_PER_TABLE} more problems"
                           for t, n in self.count.items() if n > _MAX_PER_TABLE]


def _did_key(did: object) -> str:
    return f"device {did}" if isinstance(did, str) else f"device {did!r}"


def _canonical(did: object) -> tuple[str | None, str]:
    """(the id if canonical, else None; why not)."""
    try:
        return parse_device_id(did), ""
    except HashtrailError as e:
        return None, str(e)


def _row_device(p: _Problems, table: str, did_raw: object, seq: object,
                devs: dict[str, _Dev], not_enrolled: str) -> tuple[str, str | None]:
    """The row key, and the id of the enrolled device a per-device row (device_id, seq)
    belongs to; None after naming the row as a problem (another spelling, or no such
    device)."""
    k = f"{_did_key(did_raw)}, seq {seq}"
    did, why = _canonical(did_raw)
    if did is None or did not in devs:
        p.add(table, k, why or not_enrolled)
        return k, None
    return k, did


@dataclass
class _Dev:
    """An enrolled device as its devices row states it, and what its rows say."""

    row: tuple[Any, ...]
    key: DeviceKey
    report: DeviceReport
    heads: dict[int, set[bytes]] = field(default_factory=dict)    # verified checkpoints
    walked: int = -1        # the chain walk checked seqs 0..walked (their stored hash
                            # is the hash of their bytes): acc_hash reads those
    evidence: list[int] = field(default_factory=list)
    evidence_hash: dict[int, bytes] = field(default_factory=dict)  # its accepted side


def verify_ledger(led: Ledger, device: str | None = None, *,
                  pool: verify_pool.VerifyPool | None = None,
                  workers: int | None = None) -> LedgerReport:
    """Check every table of the ledger (see the module doc); `device` limits the device
    reports to one device (every table is still checked).
    `pool`: worker processes to check per-entry signatures in (kept by the caller;
    started here only for a ledger of COLD_MIN signed entries or more); without one,
    verify starts its own for such a ledger and stops it at the end. `workers`: CPUs to
    use (default all; 1: everything on this thread, no pool)."""
    if device is not None:
        device = parse_device_id(device)
    with led.storage.snapshot():      # one committed state, while collectors write
        try:
            return _verify_ledger(led, device, pool, workers)
        except verify_pool.PoolError as e:     # (its own hint speaks of reconcile)
            raise verify_pool.PoolError(str(e), hint="the ledger was not verified (no "
                                                     "report); run verify again") from None


def _verify_ledger(led: Ledger, device: str | None, pool: verify_pool.VerifyPool | None,
                   workers: int | None) -> LedgerReport:
    p = _Problems()
    meta = _meta(led, p)
    devs = _devices(led, p)
    if device is not None and device not in devs:
        raise HashtrailError(f"device {device} is not in this ledger")
    size = meta.get("size", -1)
    own = blocks = None
    try:
        with RebuiltTree() as tree:
            counts, signed = _leaves(led, p, devs, size, tree)
            rep = LedgerReport(tree.size, tree.root().hex(), 0, [])
            if size != tree.size:
                p.add("meta", "key size", f"says {size} leaves, the entries table holds "
                                          f"{tree.size}")
            if sum(counts.values()) != tree.size:
                p.add("entries", "all rows", f"the enrolled devices' entries number "
                                             f"{sum(counts.values())}, the tree "
                                             f"{tree.size} leaves")
            if workers == 1:
                pool = None
            elif pool is None and signed >= COLD_MIN:
                pool = own = verify_pool.VerifyPool(workers)
            blocks = _Blocks(led, list(devs.values()), pool, workers, signed >= COLD_MIN)
            blocks.fill()     # the workers start on the first blocks meanwhile
            _nodes(led, p, tree)
            _ledger_checkpoints(led, p, rep, tree, meta)
        _dev_checkpoints(led, p, devs)
        _evidence(led, p, devs)
        for d in devs.values():
            _chain(led, p, d, blocks.rows(d))
            blocks.done(d)
    finally:
        if blocks is not None:
            blocks.discard()
        if own is not None:
            own.close()
    for did, d in devs.items():      # after every chain: evidence checks need the hashes
        _evidence_against_chain(led, p, did, d)
    _pending(led, p, devs)
    _collectors(led, p)
    unsigned = _enrollments(led, p, devs)
    if unsigned:
        rep.notes.append(f"{unsigned} device(s) enrolled without a collector's signature "
                         "(enrolled before collectors signed enrollments): their label, "
                         "board and firmware are the operator's statement")
    _revocations(led, p, devs, meta)
    _bundles(led, p, devs)
    rep.devices = [d.report for did, d in sorted(devs.items())
                   if device is None or did == device]
    rep.problems = p.done()
    return rep


# -- meta ------------------------------------------------------------------------------

def _meta(led: Ledger, p: _Problems) -> dict[str, Any]:
    rows = {str(k): v for k, v in led.storage.scan_meta()}
    out: dict[str, Any] = {}
    for k in sorted(set(rows) - _META_KEYS - {_LEGACY_SIGNER}):
        p.add("meta", f"key {k!r}", "not a key hashtrail writes")
    origin = rows.get("origin")
    if not isinstance(origin, str) or not origin:
        p.add("meta", "key origin", "missing or not text")
        origin = ""
    out["origin"] = origin
    size = rows.get("size")
    if not isinstance(size, str) or not size.isdigit() or str(int(size)) != size:
        p.add("meta", "key size", f"not a canonical decimal size: {size!r}")
    else:
        out["size"] = int(size)
    vtext, legacy = rows.get("verifier"), rows.get(_LEGACY_SIGNER)
    verifier: note.Verifier | None = None
    if vtext is not None:
        try:
            verifier = note.Verifier.from_string(str(vtext))
            if verifier.to_string() != vtext:
                raise HashtrailError("not in its canonical form")
        except HashtrailError as e:
            p.add("meta", "key verifier", f"not a ledger verifier key: {e}")
            verifier = None
        if verifier is not None and verifier.name != origin:
            p.add("meta", "key verifier", f"names {verifier.name!r}, the origin is "
                                          f"{origin!r}")
    if legacy is not None:       # a ledger from before the key file: its signer is here
        try:
            lv = note.Signer.from_string(str(legacy)).verifier()
        except HashtrailError as e:
            p.add("meta", "key signer", f"not a ledger signer key: {e}")
        else:
            if verifier is not None and lv.to_string() != verifier.to_string():
                p.add("meta", "key signer", "is not the key of the verifier row")
            verifier = verifier or lv
    elif vtext is None:
        p.add("meta", "key verifier", "missing: nothing says whose checkpoints count")
    out["verifier"] = verifier
    return out


# -- devices ---------------------------------------------------------------------------

def _devices(led: Ledger, p: _Problems) -> dict[str, _Dev]:
    out: dict[str, _Dev] = {}
    for row in led.storage.scan_devices():
        did, why = _canonical(row[0])
        k = _did_key(row[0])
        if did is None:
            p.add("devices", k, why)
            continue
        try:
            key = DeviceKey(bytes(row[1]))
        except (HashtrailError, TypeError, ValueError) as e:
            p.add("devices", k, f"pub is not a device key: {e}")
            continue
        if key.id != did:
            p.add("devices", k, f"pub hashes to device id {key.id}, not this one")
            continue
        out[did] = _Dev(row, key, DeviceReport(did, str(row[2])))
    return out


# -- leaves, nodes, ledger checkpoints -------------------------------------------------

_SEEN_BITS = 1 << 26    # 8 MB: leaf hashes already seen, one bit each (a filter)
_GAP_MAX = 1 << 20      # missing leaves stood in for, at most, between two rows


def _leaves(led: Ledger, p: _Problems, devs: dict[str, _Dev], size: int,
            tree: RebuiltTree) -> tuple[dict[str, int], int]:
    """Rebuild the tree into `tree` from the entries rows in leaf order; check each row
    as a leaf; the enrolled devices' rows counted by device, and how many of those
    carry a per-entry signature.

    Duplicate leaves are found in bounded memory: a bit per leaf hash in a filter; a
    row whose bit is already set is a candidate, and after the scan each candidate's
    hash is looked up among the leaves before it (false candidates find only
    themselves)."""
    counts: dict[str, int] = defaultdict(int)
    signed = 0
    seen = bytearray(_SEEN_BITS // 8)
    cands: list[tuple[int, str, bytes]] = []       # (index, row key, leaf hash)
    ids: dict[Any, tuple[bytes, str | None]] = {}   # device_id column -> (leaf prefix, why)
    sha256, leaf_hash = hashlib.sha256, merkle.leaf_hash
    for index, did_raw, seq, h, body, sig in led.storage.scan_entries():
        if type(index) is not int or type(seq) is not int or seq < 0 \
                or not isinstance(body, bytes) or not isinstance(h, bytes):
            p.add("entries", f"{_did_key(did_raw)}, seq {seq}", "a column of the wrong type")
            continue
        if index != tree.size:
            if index < tree.size:
                p.add("entries", f"{_did_key(did_raw)}, seq {seq}",
                      f"leaf_index {index} out of order")
                continue
            if index - tree.size > _GAP_MAX:     # a hand-made index: no row to align to
                p.add("entries", f"{_did_key(did_raw)}, seq {seq}",
                      f"leaf_index {index} is {index - tree.size} leaves past the last "
                      "row before it")
                continue
            p.add("entries", f"leaf {tree.size}" if index == tree.size + 1
                  else f"leaves {tree.size}..{index - 1}", "no entries row holds it")
            while tree.size < index:     # keep indexes aligned for the checks below
                tree.append(bytes(32))
        if index >= size >= 0:
            p.add("entries", f"{_did_key(did_raw)}, seq {seq}",
                  f"leaf_index {index} is beyond the tree size {size} in meta")
        known = ids.get(did_raw)
        if known is None:
            known = ids[did_raw] = _leaf_prefix(did_raw, devs)
        prefix, why = known
        if why is None:
            counts[did_raw] += 1
            signed += sig is not None
        else:
            p.add("entries", f"{_did_key(did_raw)}, seq {seq}", why)
        hb = sha256(body).digest()
        if hb != h:
            p.add("entries", f"{_did_key(did_raw)}, seq {seq}",
                  "entry_hash is not the hash of its bytes")
        lh = leaf_hash(prefix + seq.to_bytes(8, "big") + hb + body)
        bit = int.from_bytes(lh[:4], "big") & (_SEEN_BITS - 1)
        if seen[bit >> 3] & (1 << (bit & 7)):
            cands.append((index, f"{_did_key(did_raw)}, seq {seq}", lh))
        seen[bit >> 3] |= 1 << (bit & 7)
        tree.append(lh)
    first = tree.first_index({lh for _, _, lh in cands})
    for index, k, lh in cands:
        if first[lh] != index:
            p.add("entries", k, f"leaf {index} duplicates leaf {first[lh]}")
    return counts, signed


def _leaf_prefix(did_raw: object, devs: dict[str, _Dev]) -> tuple[bytes, str | None]:
    """The leaf prefix this device_id value makes ("HTL1" || 16 id bytes, as reconcile
    wrote it), and why the row is not an enrolled device's (None when it is)."""
    did, why = _canonical(did_raw)
    try:
        raw_id = bytes.fromhex(did_raw) if isinstance(did_raw, str) else b""
    except ValueError:
        raw_id = b""
    if did is None:
        return LEAF_TAG + raw_id, why
    if did not in devs:
        return LEAF_TAG + raw_id, "not an entry of an enrolled device"
    return LEAF_TAG + raw_id, None


def _nodes(led: Ledger, p: _Problems, tree: RebuiltTree) -> None:
    """Every stored subtree hash is the rebuilt tree's, and none is missing. Leaf hashes
    (level 0) and level-1 nodes are not stored (each is computed from entries rows,
    ledger_db.STORED_LOWEST): a stored one is a row no hashtrail writes."""
    want = tree.nodes(STORED_LOWEST)
    got = ((int(lv), int(ix), bytes(h)) for lv, ix, h in led.storage.scan_nodes())
    w, g = next(want, None), next(got, None)
    while g is not None and g[0] < STORED_LOWEST:       # (first, by level then index)
        p.add("nodes", f"level {g[0]}, index {g[1]}",
              "a leaf hash row: the ledger keeps none (each comes from its entries row)"
              if g[0] == 0 else "a level-1 row: the ledger keeps none (each comes from "
                                "its two leaves' entries rows)")
        g = next(got, None)
    while w is not None or g is not None:
        if g is None or (w is not None and w[:2] < g[:2]):
            assert w is not None
            p.add("nodes", f"level {w[0]}, index {w[1]}", "missing: the tree rebuilt from "
                                                          "the entries has it")
            w = next(want, None)
        elif w is None or g[:2] < w[:2]:
            p.add("nodes", f"level {g[0]}, index {g[1]}", "not a node of the tree rebuilt "
                                                          "from the entries")
            g = next(got, None)
        else:
            if w[2] != g[2]:
                p.add("nodes", f"level {g[0]}, index {g[1]}", "hash differs from the tree "
                                                              "rebuilt from the entries")
            w, g = next(want, None), next(got, None)


def _ledger_checkpoints(led: Ledger, p: _Problems, rep: LedgerReport,
                        tree: RebuiltTree, meta: dict[str, Any]) -> None:
    verifier: note.Verifier | None = meta["verifier"]
    newest = -1
    for size, data, _created in led.storage.scan_checkpoints():
        rep.checkpoints += 1
        k = f"size {size}"
        if verifier is None:
            p.add("checkpoints", k, "no verifier key in meta to check it with")
            continue
        try:
            cp, _ = note.open_checkpoint(bytes(data), [verifier])
        except (HashtrailError, TypeError) as e:
            p.add("checkpoints", k, f"not signed by the ledger key: {e}")
            continue
        if cp.origin != meta["origin"]:
            p.add("checkpoints", k, f"origin {cp.origin!r} is not the ledger's")
        elif cp.size != size:
            p.add("checkpoints", k, f"the signed note is for size {cp.size}")
        elif cp.size > tree.size or tree.root(cp.size) != cp.root:
            p.add("checkpoints", k, "the signed root is not the root of the tree rebuilt "
                                    "from the entries")
        else:
            newest = max(newest, cp.size)
    if rep.checkpoints and newest < tree.size:
        rep.notes.append(f"leaves {max(newest, 0)}..{tree.size - 1} are not yet under a "
                         "signed ledger checkpoint (`hashtrail ledger checkpoint` signs one)")


# -- device checkpoints, evidence, chains, pending -------------------------------------

def _dev_checkpoints(led: Ledger, p: _Problems, devs: dict[str, _Dev]) -> None:
    for did_raw, ch, cose, nonce, seq, head in led.storage.scan_device_checkpoints():
        k, did = _row_device(p, "dev_checkpoints", did_raw, seq, devs,
                             "not a checkpoint of an enrolled device")
        if did is None:
            continue
        d = devs[did]
        try:
            cose = bytes(cose)
            cp = d.key.checkpoint(cose)
        except (HashtrailError, TypeError) as e:
            p.add("dev_checkpoints", k, f"not this device's signed checkpoint: {e}")
            continue
        if bytes(ch) != hashlib.sha256(cose).digest():
            p.add("dev_checkpoints", k, "cose_hash is not the hash of its bytes")
        elif (seq, bytes(head)) != (cp.seq, cp.head):
            p.add("dev_checkpoints", k, f"seq/head columns differ from the signed "
                                        f"checkpoint (seq {cp.seq})")
        elif nonce is not None and bytes(nonce) != cp.nonce:
            p.add("dev_checkpoints", k, "nonce column differs from the signed checkpoint")
        else:
            d.heads.setdefault(cp.seq, set()).add(cp.head)


def _evidence(led: Ledger, p: _Problems, devs: dict[str, _Dev]) -> None:
    for did_raw, seq, digest, doc in led.storage.scan_evidence():
        k, did = _row_device(p, "evidence", did_raw, seq, devs,
                             "evidence about a device that is not enrolled")
        if did is None:
            continue
        try:
            v = check_evidence(str(doc))
        except HashtrailError as e:
            p.add("evidence", k, f"does not prove a fork: {e}")
            continue
        if (v.device_id, v.seq) != (did, seq):
            p.add("evidence", k, f"proves a fork of device {v.device_id} at seq {v.seq}")
        elif bytes(digest) != hashlib.sha256(seq.to_bytes(8, "big") + v.hashes[0]
                                             + v.hashes[1]).digest():
            p.add("evidence", k, "digest is not the hash of the fork it holds")
        else:
            devs[did].evidence.append(seq)
            devs[did].evidence_hash[seq] = v.hashes[0]    # checked after the chain walk


def _acc_hash(led: Ledger, d: _Dev, seq: int) -> bytes | None:
    """The accepted entry's hash at `seq`, if the chain walk checked it (None else).
    Read back per seq, not kept for every entry: verify's memory stays flat in N."""
    if not 0 <= seq <= d.walked:
        return None
    e = led.storage.entry(d.report.device_id, seq)
    return None if e is None else e.entry_hash


def _evidence_against_chain(led: Ledger, p: _Problems, did: str, d: _Dev) -> None:
    """The evidence's first branch is the accepted chain (reconcile.accepted_branch)."""
    for seq in d.evidence:
        if _acc_hash(led, d, seq) != d.evidence_hash[seq]:
            p.add("evidence", f"device {did}, seq {seq}", "its accepted branch is not the "
                                                          "accepted entry at that seq")


def _chain(led: Ledger, p: _Problems, d: _Dev,
           rows: Iterator[tuple[tuple[Any, ...], _Check | None]]) -> None:
    """Walk the device's entries from genesis; signatures under its entry-0 policy.
    `rows`: its entries rows in seq order (_Blocks.rows), each with its hash and
    verdict when they were computed ahead (None: hashed and checked here)."""
    r, key = d.report, d.key
    did = r.device_id
    head, prev_t, last_t = key.genesis_prev, None, None
    cover = _Cover(d.report)      # device signatures over the accepted entries, in order
    altered: list[tuple[int, int, str]] = []
    fw, last = FirmwareRules(), None      # the firmware history (chain.fwrules)
    for i, ((seq, h, body, sig), checked) in enumerate(rows):
        try:
            b = bytes(body)
            e = parse_entry(b)
            if seq != i:
                raise HashtrailError(f"gap: seq {i} is missing (the next stored entry is "
                                     f"seq {seq})")
            if e.seq != seq:
                raise HashtrailError(f"the entry says seq {e.seq}, its row says seq {seq}")
            if e.prev != head:
                raise HashtrailError(f"broken link: entry {seq} does not link to entry "
                                     f"{seq - 1} (its prev is not that entry's hash)"
                                     if seq else "broken link: entry 0 does not link to "
                                     "the device's genesis")
            if seq == 0:
                key.check_first_entry(e)
                r.policy = signing_policy(e)
            hb, ok = (hashlib.sha256(b).digest(), None) if checked is None else checked
            if hb != bytes(h):
                raise HashtrailError("stored entry hash does not match the entry bytes")
            if sig is not None and not (key.signed(hb, bytes(sig)) if ok is None else ok):
                raise HashtrailError("per-entry signature does not verify")
        except (HashtrailError, TypeError) as ex:
            p.add("entries", f"device {did}, seq {seq}", str(ex))
            r.problems.append(f"seq {seq}: {ex}")
            break
        if e.t is not None:
            if prev_t is not None and e.t < prev_t and e.kind != KIND_TIME_SET:
                r.anomalies.append(f"seq {seq}: device time went backwards")
            r.first_t = e.t if r.first_t is None else r.first_t
            r.last_t = prev_t = last_t = e.t
        cover.add(seq, sig is not None, hb in d.heads.get(seq, ()))
        for f in fw.check(last, e):
            r.anomalies.append(f"seq {f.seq}: firmware {f.code}: {f.text}")
            r.alarm = True
        last = e
        r.fw = e.fw
        if e.kind == KIND_LOG_ALTERED and int(e.body[1]) < seq:
            altered.append((int(e.body[1]), seq, str(e.body[2])))
        head, d.walked = hb, seq
        r.entries += 1
    if r.policy != POLICY_EVERY_ENTRY and not r.problems and cover.lo < r.entries:
        # (accepted under a checkpoint past a range the device disowned: the links to
        # it pass held entries, held_cover)
        hc = held_cover(led.storage, did, d.walked, head, sorted(
            (q, h, b"") for q, hs in d.heads.items() if q > d.walked for h in hs),
            bodies=False)
        if hc is not None and (hc.kind == "checkpoint" or d.key.signed(hc.head,
                                                                        hc.statement)):
            cover.held(d.walked, hc.seq, hc.kind)
    _coverage(p, d, cover, altered)
    if r.alarm:
        r.status = "firmware alarm"
    _tip(led, p, d, head, last_t)


_Check = tuple[bytes, bool]      # (SHA-256 of an entry's bytes, its signature verifies
                                 # or it has none)
_BYTES = (bytes, bytearray, memoryview)


class _Blocks:
    """Every device's entries rows, BLOCK rows at a time in device order, each row with
    its hash and verdict (module docstring): a block goes to the workers as soon as it
    is read, and one block is read ahead of the one being walked (across devices), so
    the workers check the next block while the walk takes the current one; at most
    three blocks are in memory (the one walked, two handed over). Without a pool, a
    block mostly signed is checked on threads when its turn comes; a block mostly
    unsigned is left to the walk (_mostly_signed)."""

    def __init__(self, led: Ledger, order: list[_Dev], pool: verify_pool.VerifyPool | None,
                 workers: int | None, cold: bool) -> None:
        self.led, self.workers = led, workers
        # a pool not running yet is started for a ledger of COLD_MIN signed entries
        self.pool = pool if pool is not None and (pool.running or cold) else None
        self.skip: _Dev | None = None          # the device whose walk ended: read no more
        self.waiting: deque[tuple[_Dev, list[tuple[Any, ...]],
                                  tuple[list[int], verify_pool.Verdicts] | None]] = deque()
        self.read = self._read(order)

    def _read(self, order: list[_Dev]) -> Iterator[tuple[_Dev, list[tuple[Any, ...]]]]:
        for d in order:
            rows = self.led.storage.scan_device_entries(d.report.device_id)
            while d is not self.skip and (block := list(itertools.islice(rows, BLOCK))):
                yield d, block

    def rows(self, d: _Dev) -> Iterator[tuple[tuple[Any, ...], _Check | None]]:
        """Device d's rows with their checks (call for each device in order)."""
        waiting = self.waiting
        while True:
            self.fill()
            if not waiting or waiting[0][0] is not d:
                return
            _, block, sub = waiting.popleft()
            yield from zip(block, self._checks(d, block, sub), strict=True)

    def fill(self) -> None:
        """Read (and hand over) the block to walk next and one ahead."""
        waiting = self.waiting
        while len(waiting) < 2:
            got = next(self.read, None)
            if got is None:
                return
            waiting.append((*got, self._submit(*got)))

    def done(self, d: _Dev) -> None:
        """d's walk is over (maybe stopped at a problem): none of its rows is read or
        checked any more."""
        self.skip = d
        while self.waiting and self.waiting[0][0] is d:
            sub = self.waiting.popleft()[2]
            if sub is not None:
                sub[1].discard()

    def discard(self) -> None:
        """Drop the answers nobody will read (a run stopped by an error)."""
        while self.waiting:
            sub = self.waiting.popleft()[2]
            if sub is not None:
                sub[1].discard()

    @staticmethod
    def _plain(block: list[tuple[Any, ...]]) -> list[int]:
        """The rows whose body and signature are bytes (or none): the others are hashed
        and checked by the walk, as it always did (a TypeError names them)."""
        return [i for i, (_, _, body, sig) in enumerate(block)
                if isinstance(body, _BYTES) and (sig is None or isinstance(sig, _BYTES))]

    def _submit(self, d: _Dev, block: list[tuple[Any, ...]]
                ) -> tuple[list[int], verify_pool.Verdicts] | None:
        pool = self.pool
        if pool is None:
            return None
        if not _mostly_signed(block):      # hashing alone: the walk does it for less
            return None
        plain = self._plain(block)
        if not pool.start_or_warn():
            self.pool = None
            return None
        return plain, pool.submit(d.key.pub, [bytes(block[i][2]) for i in plain],
                                  [None if block[i][3] is None else bytes(block[i][3])
                                   for i in plain])

    def _checks(self, d: _Dev, block: list[tuple[Any, ...]],
                sub: tuple[list[int], verify_pool.Verdicts] | None) -> list[_Check | None]:
        out: list[_Check | None] = [None] * len(block)
        if sub is not None:
            plain, verdicts = sub
            hashes, ok = verdicts.result()
            if len(hashes) != len(plain):
                raise verify_pool.PoolError(f"verify pool: {len(hashes)} verdicts for "
                                            f"{len(plain)} entries")
            for i, h, v in zip(plain, hashes, ok, strict=True):
                out[i] = (h, bool(v))
            return out
        if self.workers == 1 or not _mostly_signed(block):
            return out      # the walk hashes and checks each row itself, as it always did
        plain = self._plain(block)
        key, sha256 = d.key, hashlib.sha256

        def check(lo: int, hi: int) -> list[_Check]:
            got = []
            for i in plain[lo:hi]:
                _, _, body, sig = block[i]
                h = sha256(body).digest()
                got.append((h, sig is None or key.signed(h, bytes(sig))))
            return got

        for i, c in zip(plain, map_slices(check, len(plain), self.workers), strict=True):
            out[i] = c
        return out


def _mostly_signed(block: list[tuple[Any, ...]]) -> bool:
    """Threads or workers pay for a block only for its signatures: hashing alone holds
    the GIL (threads would only add their cost), and the walk hashes a row for less
    than sending it to a worker."""
    return 2 * sum(1 for r in block if r[3] is not None) >= len(block)


class _Cover:
    """Which accepted entries a device signature covers, taken in seq order as the
    chain walk meets them (no list of every signed seq: memory flat in N).

    Policy 1: the count and the first seq without its own signature. Policy 0: each
    entry is unprotected until the first device signature at or after it (a checkpoint
    over it, or a later entry's own signature, which covers its prev); the ranges go
    to the report as they close, `lo` is the first entry not covered yet."""

    def __init__(self, report: DeviceReport) -> None:
        self.r = report
        self.unsigned = 0
        self.first_unsigned: int | None = None
        self.lo = 0

    def add(self, seq: int, signed: bool, checkpointed: bool) -> None:
        if not signed:
            self.unsigned += 1
            if self.first_unsigned is None:
                self.first_unsigned = seq
        if self.r.policy == POLICY_EVERY_ENTRY or not (signed or checkpointed):
            return
        last = seq - 1 if signed else seq     # a signed entry is safe itself
        if last >= self.lo:
            self.r.unprotected.append({"first": self.lo, "last": last, "until": seq,
                                       "by": "signed entry" if signed else "checkpoint"})
        self.lo = seq + 1

    def held(self, last: int, until: int, kind: str) -> None:
        """Entries up to `last` (the tip) covered by the device's signature over seq
        `until` (a checkpoint, or that entry's own: `kind`), past it, through held
        entries (held_cover)."""
        self.r.unprotected.append({"first": self.lo, "last": last, "until": until,
                                   "by": "checkpoint" if kind == "checkpoint"
                                   else "signed entry"})
        self.lo = last + 1


def _coverage(p: _Problems, d: _Dev, cover: _Cover,
              altered: list[tuple[int, int, str]]) -> None:
    r = d.report
    did, n = r.device_id, r.entries
    for lo, at, why in altered:
        msg = (f"seqs {lo}..{at - 1} are disowned by the device's own log-altered report "
               f"at seq {at} ({why!r}): no device signature covers them")
        p.add("entries", f"device {did}, seqs {lo}..{at - 1}", msg)
        r.problems.append(msg)
    if n == 0:
        return
    if r.policy == POLICY_EVERY_ENTRY:
        if cover.unsigned:
            msg = (f"{cover.unsigned} entries without their own device signature (entry 0 "
                   f"declares every entry signed), first seq {cover.first_unsigned}")
            p.add("entries", f"device {did}, seq {cover.first_unsigned}", msg)
            r.problems.append(msg)
        return
    lo = cover.lo
    if lo < n:
        msg = f"accepted entries {lo}..{n - 1} are not signed by the device"
        p.add("entries", f"device {did}, seqs {lo}..{n - 1}", msg)
        r.problems.append(msg)
    if r.unprotected:
        r.status = "unprotected until " + _until(r.unprotected)


def _until(ranges: list[dict[str, Any]]) -> str:
    """'checkpoint 9', 'checkpoints 3, 10, 17', 'checkpoints 3, 10, ..., 99 (12 ranges)';
    a range covered by a later signed entry says so ('signed entry 12')."""
    kinds = {u["by"] for u in ranges}
    seqs = [str(u["until"]) if len(kinds) == 1 else f"{u['by']} {u['until']}"
            for u in ranges]
    more = f" ({len(seqs)} ranges)" if len(seqs) > 4 else ""
    shown = ", ".join(seqs if len(seqs) <= 4 else [*seqs[:2], "...", seqs[-1]]) + more
    if len(kinds) > 1:
        return shown
    (kind,) = kinds
    return f"{kind}{'s' if len(seqs) > 1 else ''} {shown}"


def _tip(led: Ledger, p: _Problems, d: _Dev, head: bytes, last_t: int | None) -> None:
    r, row = d.report, d.row
    did, n = r.device_id, r.entries
    tip_seq, tip_head, tip_t, forked, revoked_at = row[6], row[7], row[8], row[9], row[10]
    k = f"device {did}"
    if r.problems:
        pass        # the chain is broken: its tip means nothing
    elif tip_seq != n - 1:
        p.add("devices", k, f"tip_seq says {tip_seq}, its accepted entries end at {n - 1}")
    elif bytes(tip_head) != head:
        p.add("devices", k, "tip_head is not the hash of its last accepted entry")
    elif tip_t != last_t:
        p.add("devices", k, f"tip_t says {tip_t}, its last timed entry says {last_t}")
    if bool(forked) != bool(d.evidence):
        p.add("devices", k, f"forked flag is {int(bool(forked))} with {len(d.evidence)} "
                            "fork evidence rows")
    disagree = []
    for s, hs in sorted(d.heads.items()):
        acc = _acc_hash(led, d, s)
        if acc is not None and any(h != acc for h in hs):
            disagree.append(s)
    if forked:
        # One finding per forked device: the stored evidence and any disagreeing
        # checkpoint are the same fact (one key, two histories), not two problems.
        r.status, r.alarm = "forked", True
        at = sorted(set(d.evidence)) or disagree
        where = ("seq " if len(at) == 1 else "seqs ") + ", ".join(map(str, at))
        extra = f", {len(disagree)} of its checkpoints off the accepted chain" \
            if disagree else ""
        r.anomalies.append(f"fork at {where}: the device key signed two different histories "
                           f"(evidence kept: {len(d.evidence)}{extra}); see `hashtrail "
                           f"ledger evidence --device {did}`")
    else:
        r.alarm = r.alarm or bool(disagree)
        r.anomalies += [f"seq {s}: a device checkpoint disagrees with the accepted chain, "
                        "and the device is not flagged as forked" for s in disagree]
    if revoked_at is not None:
        r.status = "revoked"


def _pending(led: Ledger, p: _Problems, devs: dict[str, _Dev]) -> None:
    held: dict[str, int] = defaultdict(int)
    for did_raw, seq, h, body, sig, prev, kind, t in led.storage.scan_pending():
        k, did = _row_device(p, "pending", did_raw, seq, devs,
                             "held entry of a device that is not enrolled")
        if did is None:
            continue
        d = devs[did]
        try:
            b = bytes(body)
            e = parse_entry(b)
            hb = hashlib.sha256(b).digest()
            if e.seq != seq:
                raise HashtrailError(f"the entry says seq {e.seq}")
            if hb != bytes(h):
                raise HashtrailError("entry_hash is not the hash of its bytes")
            # what reconcile's walk reads instead of the body (all NULL: not recorded)
            if (prev, kind, t) != (None, None, None) and (
                    None if prev is None else bytes(prev), kind, t) != (e.prev, e.kind, e.t):
                raise HashtrailError("prev, kind or t is not what the entry says")
            if sig is not None and not d.key.signed(hb, bytes(sig)):
                raise HashtrailError("per-entry signature does not verify")
            if _acc_hash(led, d, seq) == hb:
                raise HashtrailError("the same entry is accepted: it cannot be held too")
        except (HashtrailError, TypeError) as ex:
            p.add("pending", k, str(ex))
            continue
        if seq > d.report.entries - 1:
            held[did] += 1
    for did, n in held.items():
        r = devs[did].report
        r.pending = n
        r.anomalies.append(
            f"{n} later entries held back, not accepted: nothing acceptable "
            f"continues the chain after seq {r.entries - 1} yet (entry {r.entries} "
            "refused or not received, or not yet covered by a device signature)")


def _collectors(led: Ledger, p: _Problems) -> None:
    for key, name, added in led.storage.scan_collectors():
        k = f"key {key!r}"[:80]
        try:
            if note.Verifier.from_string(str(key)).to_string() != key:
                raise HashtrailError("not in its canonical form")
        except HashtrailError as e:
            p.add("collectors", k, f"not a collector verifier key: {e}")
            continue
        if not isinstance(name, str) or not name or type(added) is not int:
            p.add("collectors", k, "name or added_at of the wrong type")


def _enrollments(led: Ledger, p: _Problems, devs: dict[str, _Dev]) -> int:
    """Each stored enrollment signature (formats.enrollment) must be by a collector the
    ledger trusts and verify over the row's own id, key, label, board, firmware and
    enrollment time (enrollment_state.check_enrollment, the rules the device lists
    use): an operator who edits one of those, names another collector, or copies
    another device's signature is named here. Returns how many devices are unsigned
    (allowed: enrolled before collectors signed enrollments)."""
    trusted = {str(k): str(n) for k, n, _ in led.storage.scan_collectors()}
    unsigned = 0
    for did, d in devs.items():
        row = d.row
        st = check_enrollment(did, d.key.pub, row[2], row[3], row[4], row[5], row[12],
                              row[13], trusted)
        if st.state == UNSIGNED:
            unsigned += 1
        elif st.state == INVALID:
            p.add("devices", _did_key(did), st.reason or "enrollment signature invalid")
        else:
            d.report.enrollment_signed_by = st.collector
    return unsigned


def _revocations(led: Ledger, p: _Problems, devs: dict[str, _Dev],
                 meta: dict[str, Any]) -> None:
    verifier: note.Verifier | None = meta["verifier"]
    for did, statement in led.storage.scan_revocations():
        k = f"device {did!r}"[:80]
        if did not in devs:
            p.add("revocations", k, "not an enrolled device in canonical form")
            continue
        if verifier is None or not isinstance(statement, bytes | memoryview):
            p.add("revocations", k, "cannot be checked (no verifier key, or not bytes)")
            continue
        try:
            r = revocation.open_revocation(bytes(statement), verifier, str(meta["origin"]))
        except HashtrailError as e:
            p.add("revocations", k, f"not a revocation signed by the ledger key: {e}")
            continue
        row = devs[did].row
        if (r.device_id, r.revoked_at, r.reason) != (did, row[10], row[11]):
            p.add("revocations", k, f"states {r.device_id} revoked at {r.revoked_at} "
                                    f"({r.reason!r}); the devices row says revoked at "
                                    f"{row[10]} ({row[11]!r})")


def _collector_key(key: object) -> bool:
    try:
        return note.Verifier.from_string(str(key)).to_string() == key
    except HashtrailError:
        return False


def _bundles(led: Ledger, p: _Problems, devs: dict[str, _Dev]) -> None:
    for digest, collector, at in led.storage.scan_bundles():
        k = f"digest {digest.hex() if isinstance(digest, bytes) else repr(digest)}"[:80]
        if not isinstance(digest, bytes) or len(digest) != 32 or type(at) is not int:
            p.add("bundles", k, "digest or reconciled_at of the wrong type")
        elif collector != "" and not _collector_key(collector):
            p.add("bundles", k, "collector is not a collector verifier key")
    for collector, did, seq in led.storage.scan_cursors():
        k = f"collector {collector!r} device {did!r}"[:100]
        if not _collector_key(collector):
            p.add("cursors", k, "not a collector verifier key")
        elif not isinstance(did, str) or did not in devs:
            p.add("cursors", k, "not an enrolled device")
        elif type(seq) is not int or seq < 0:
            p.add("cursors", k, "seq of the wrong type")
