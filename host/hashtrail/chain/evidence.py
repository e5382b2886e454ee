"""Fork evidence: two signed statements by one device key about the same seq, disagreeing.

Why self-contained: a cloned or rolled-back device is misbehaviour to be proven to a
third party who has no access to our ledger. The document carries the public key and,
for each side, a *branch*: entries from the disputed seq onward, linked by `prev`,
ending in a statement the device signed about the last one (a COSE checkpoint over its
hash, or its per-entry signature). A checkpoint alone at the disputed seq is a branch
with no entries. `check_evidence` re-checks every byte with no other input.

    {"branches":[B,B],"device":"<id>","format":"hashtrail-fork-evidence/1",
     "pub":"<base64>","seq":N}
    B = {"entries":["<base64 entry>",...],"statement":{"kind":"checkpoint","cose":"<b64>"}}
      | {"entries":["<base64 entry>",...],"statement":{"kind":"entry-sig","sig":"<b64>"}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, NamedTuple

from hashtrail.chain.devicecheck import DeviceKey, parse_entry
from hashtrail.errors import ConfigError, FormatError, HashtrailError, VerificationError
from hashtrail.formats import keys, note
from hashtrail.formats.keys import parse_device_id
from hashtrail.ledger import merkle

FORMAT = "hashtrail-fork-evidence/1"


def evidence_format(text: str) -> str:
    """The `format` an evidence document names (fork or split view), read first so the
    right checker runs."""
    try:
        doc = json.loads(text)
        fmt = doc["format"] if isinstance(doc, dict) else None
    except (ValueError, KeyError):
        fmt = None
    if fmt not in (FORMAT, SPLIT_VIEW_FORMAT):
        raise FormatError(f"not an evidence document: its format is neither {FORMAT} "
                          f"nor {SPLIT_VIEW_FORMAT}")
    return str(fmt)


class Branch(NamedTuple):
    entries: list[bytes]
    kind: str                 # "checkpoint" or "entry-sig"
    statement: bytes          # COSE bytes or the 64-byte signature


class Verdict(NamedTuple):
    device_id: str
    seq: int
    hashes: tuple[bytes, bytes]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def make_evidence(pub: bytes, seq: int, a: Branch, b: Branch) -> str:
    def br(x: Branch) -> dict[str, Any]:
        st = {"kind": x.kind, ("cose" if x.kind == "checkpoint" else "sig"): _b64(x.statement)}
        return {"entries": [_b64(e) for e in x.entries], "statement": st}
    doc = {"format": FORMAT, "device": keys.device_id(pub),
           "pub": _b64(pub), "seq": seq, "branches": [br(a), br(b)]}
    text = json.dumps(doc, sort_keys=True, indent=1)
    check_evidence(text)      # never write evidence that does not prove itself
    return text


def branch_hash(key: DeviceKey, seq: int, br: Branch) -> bytes:
    """The entry hash at `seq` that this branch's device signature certifies."""
    hashes = []
    prev: bytes | None = None
    for i, raw in enumerate(br.entries):
        e = parse_entry(raw)
        if e.seq != seq + i or (prev is not None and e.prev != prev):
            raise VerificationError("evidence branch entries do not form a chain")
        prev = hashlib.sha256(raw).digest()
        hashes.append(prev)
    if br.kind == "checkpoint":
        cp = key.checkpoint(br.statement)
        if hashes:
            if cp.seq != seq + len(hashes) - 1 or cp.head != hashes[-1]:
                raise VerificationError("evidence checkpoint does not sign the branch head")
            return hashes[0]
        if cp.seq != seq:
            raise VerificationError("evidence checkpoint is for another seq")
        return cp.head
    if br.kind == "entry-sig":
        if not hashes or not key.signed(hashes[-1], br.statement):
            raise VerificationError("evidence entry signature does not verify")
        return hashes[0]
    raise FormatError(f"unknown evidence statement kind {br.kind!r}")


def check_evidence(text: str) -> Verdict:
    """Check a fork-evidence document alone; raises unless it proves a fork."""
    try:
        doc = json.loads(text)
        if doc["format"] != FORMAT or len(doc["branches"]) != 2:
            raise FormatError(f"not a {FORMAT} document")
        pub = base64.b64decode(doc["pub"], validate=True)
        did = parse_device_id(doc["device"])     # one spelling: never a second identity
        seq = doc["seq"]
        if type(seq) is not int or seq < 0:
            raise FormatError("evidence seq must be a non-negative integer")
        branches = []
        for b in doc["branches"]:
            st = b["statement"]
            kind = st["kind"]
            raw = st["cose"] if kind == "checkpoint" else st["sig"]
            branches.append(Branch([base64.b64decode(e, validate=True) for e in b["entries"]],
                                   kind, base64.b64decode(raw, validate=True)))
    except HashtrailError:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise FormatError(f"malformed fork evidence: {e}") from None
    except RecursionError:
        raise FormatError("malformed fork evidence: JSON nested too deeply") from None
    key = DeviceKey(pub)
    if did != key.id:
        raise VerificationError("evidence device id is not derived from its key")
    h1, h2 = branch_hash(key, seq, branches[0]), branch_hash(key, seq, branches[1])
    if h1 == h2:
        raise VerificationError("both branches agree: this is not a fork")
    return Verdict(key.device_id.hex(), seq, (h1, h2))


# -- split view: two checkpoints signed by one ledger key that no single log explains --

SPLIT_VIEW_FORMAT = "hashtrail-split-view/1"
_SPLIT_KEYS = frozenset({"format", "reason", "seen", "offered", "path"})


class StaleCheckpoint(HashtrailError):
    """A checkpoint older than the latest one the witness cosigned, and consistent with
    it: nothing wrong with the log, nothing new to cosign."""

    exit_code = 2
    hint = "offer the witness the ledger's latest checkpoint (`hashtrail ledger checkpoint`)"


class SplitView(VerificationError):
    """Two checkpoints under one ledger key that cannot both be views of one log."""

    def __init__(self, message: str, evidence: str) -> None:
        super().__init__(message)
        self.evidence = evidence


class SplitVerdict(NamedTuple):
    origin: str
    sizes: tuple[int, int]
    roots: tuple[bytes, bytes]


def _inconsistency(lo: note.Checkpoint, hi: note.Checkpoint, path: list[bytes]) -> str:
    """Why `lo` and `hi` (lo.size <= hi.size) cannot both hold; '' if `path` shows them
    consistent. Raises if `path` does not lead to hi's root (it proves nothing then)."""
    if lo.size == hi.size:
        if path:
            raise FormatError("two checkpoints of one size need no path")
        return "" if lo.root == hi.root else f"two different roots for tree size {lo.size}"
    if lo.size == 0:
        return ""           # the empty tree is a prefix of every tree
    old, new = merkle.consistency_roots(lo.size, hi.size, path)
    if new != hi.root:
        raise VerificationError(f"the consistency path does not lead to the root signed "
                                f"for size {hi.size}")
    return "" if old == lo.root else (
        f"the tree signed at size {hi.size} does not extend the one signed at size "
        f"{lo.size}: its first {lo.size} leaves have another root")


def witness_decide(get: merkle.GetNode, size: int, seen: bytes | None, offered: bytes,
                   trusted: note.Verifier) -> note.Checkpoint:
    """May a witness that last cosigned `seen` cosign `offered`? Both must be signed by
    the ledger key the witness trusts; `get`/`size` are the ledger's tree, used only to
    build the consistency path (every claim is checked against the signed roots).

    Returns the offered checkpoint when it is the seen one or extends it. Raises
    StaleCheckpoint for an older, consistent checkpoint; SplitView (with its evidence
    document) when the two are proven inconsistent; ConfigError when the tree given
    does not hold the larger checkpoint (then nothing can be decided)."""
    cp, _ = note.open_checkpoint(offered, [trusted])
    if seen is None:
        return cp
    old, _ = note.open_checkpoint(seen, [trusted])
    lo, hi = (cp, old) if cp.size < old.size else (old, cp)
    path: list[bytes] = []
    if 0 < lo.size < hi.size:
        if hi.size > size:
            raise ConfigError(f"the ledger file holds {size} leaves, fewer than the "
                              f"checkpoint at size {hi.size}: cannot check consistency",
                              hint="give the witness the ledger this checkpoint is from")
        path = merkle.full_consistency_path(get, lo.size, hi.size)
        if merkle.consistency_roots(lo.size, hi.size, path)[1] != hi.root:
            raise ConfigError(f"the ledger file is not the tree signed at size {hi.size}: "
                              "cannot check consistency",
                              hint="give the witness the ledger this checkpoint is from")
    why = _inconsistency(lo, hi, path)
    if why:
        doc = {"format": SPLIT_VIEW_FORMAT, "reason": why, "seen": seen.decode(),
               "offered": offered.decode(), "path": [h.hex() for h in path]}
        text = json.dumps(doc, indent=1)
        check_split_view(text, trusted)      # never write evidence that does not prove
        raise SplitView(f"split view: {why}", text)
    if cp.size < old.size:
        raise StaleCheckpoint(f"stale checkpoint: size {cp.size} is older than the "
                              f"checkpoint at size {old.size} this witness last cosigned "
                              "(and consistent with it): not cosigned again")
    return cp


def check_split_view(text: str, trusted: note.Verifier) -> SplitVerdict:
    """Check split-view evidence alone: both checkpoints signed by `trusted`, and proven
    inconsistent (same size, other roots; or a path to the larger root that gives the
    smaller size another root). Raises unless it proves a split view."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != SPLIT_VIEW_FORMAT:
            raise FormatError(f"not a {SPLIT_VIEW_FORMAT} document")
        extra = set(doc) - _SPLIT_KEYS
        if extra:
            raise FormatError(f"unknown field {sorted(extra)[0]!r} in split-view evidence")
        notes = [doc["seen"].encode("utf-8"), doc["offered"].encode("utf-8")]
        path = [bytes.fromhex(h) for h in doc.get("path", [])]
        if any(len(h) != 32 or h.hex() != x for h, x in zip(path, doc.get("path", []),
                                                           strict=True)):
            raise FormatError("path hashes are 64 lower-case hex characters")
    except HashtrailError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"malformed split-view evidence: {e}") from None
    a, _ = note.open_checkpoint(notes[0], [trusted])
    b, _ = note.open_checkpoint(notes[1], [trusted])
    if a.origin != b.origin:
        raise VerificationError("the two checkpoints name different origins")
    lo, hi = (a, b) if a.size <= b.size else (b, a)
    why = _inconsistency(lo, hi, path)
    if not why:
        raise VerificationError("the two checkpoints are consistent: this is not a split "
                                "view")
    return SplitVerdict(a.origin, (lo.size, hi.size), (lo.root, hi.root))
