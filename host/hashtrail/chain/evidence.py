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
from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import keys
from hashtrail.formats.keys import parse_device_id

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


# The split-view document (hashtrail.ledger.witness makes and checks it); its tag is
# here so `evidence_format` tells the two kinds apart.
SPLIT_VIEW_FORMAT = "hashtrail-split-view/1"
