"""`hashtrail verify-log`: verify segment files of one device's log against its key
(hashtrail.chain.logfiles does the work; this module parses and prints).

Why: the plainest audit there is. Given the device's public key and the raw segment
files (copied off the flash, or from a bundle), report every break with device, seq
and reason; exit 0 only when the chain and every checkpoint in it verify.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hashtrail.chain.chainverify import Anchor, ChainReport
from hashtrail.chain.logfiles import verify_log_files
from hashtrail.errors import InputError, printable
from hashtrail.formats.keys import load_pub


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify-log", help="verify a device's log segment files against its public key")
    p.add_argument("--pubkey", required=True,
                   help="device public key: 130 hex characters (04...) or a file")
    p.add_argument("--anchor", metavar="SEQ:HEAD",
                   help="trusted (seq, head hash hex) to start from, for pruned logs")
    p.add_argument("--policy", type=int, choices=(0, 1),
                   help="the signing policy the device's entry 0 declared (1: every entry "
                        "signed), for a log that no longer holds entry 0 (with --anchor)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("paths", nargs="+", metavar="SEGMENT_FILE_OR_DIR",
                   help="log segment files, or folders of them (/ht/log copied off the "
                        "flash)")
    p.set_defaults(func=run)


def parse_anchor(text: str) -> Anchor:
    seq, sep, head = text.partition(":")
    try:
        if not sep or not seq.isdigit():
            raise ValueError
        h = bytes.fromhex(head)
        if len(h) != 32:
            raise ValueError
    except ValueError:
        raise InputError(f"--anchor {text!r} is not SEQ:HEAD (HEAD 64 hex characters)"
                         ) from None
    return Anchor(int(seq), h)


def report_json(rep: ChainReport) -> dict[str, Any]:
    return {
        "device_id": rep.device_id, "ok": rep.ok, "entries": rep.entries,
        "first_seq": rep.first_seq, "last_seq": rep.last_seq,
        "head": rep.head.hex() if rep.head else None,
        "verified_through": rep.verified_through, "policy": rep.policy,
        "unprotected": [{"first": a, "last": b, "until": n, "by": by}
                        for a, b, n, by in rep.unprotected],
        "checkpoints": [{"seq": c.seq, "head": c.head.hex(), "t": c.t,
                         "nonce": c.nonce.hex() if c.nonce else None}
                        for c in rep.checkpoints],
        "findings": [{"device_id": f.device_id, "seq": f.seq, "code": f.code, "text": f.text,
                      "source": f.source, "offset": f.offset} for f in rep.findings],
    }


def run(args: argparse.Namespace) -> int:
    pub = load_pub(args.pubkey)         # bad flag values: InputError, exit 2
    anchor = parse_anchor(args.anchor) if args.anchor else None
    rep = verify_log_files(pub, args.paths, anchor=anchor, policy=args.policy)
    if args.json:
        print(json.dumps(report_json(rep), indent=2))
        return 0 if rep.ok else 1
    for f in rep.findings:
        seq = "-" if f.seq is None else str(f.seq)
        where = f" [{f.source} @ {f.offset}]" if f.source else ""
        print(f"{f.device_id}  seq {seq:>6}  {f.code}: {printable(f.text)}{where}")
    span = ("no entries" if rep.first_seq is None
            else f"{rep.entries} entries in {rep.first_seq}..{rep.last_seq}")
    for a, b, n, by in rep.unprotected:
        what = f"entry {a}" if a == b else f"entries {a}..{b}"
        print(f"{rep.device_id}  {what}: " + (
            "unprotected: no device signature covers them yet" if n is None
            else f"unprotected until checkpoint {n}" if by == "checkpoint"
            else f"unprotected until entry {n}'s signature"))
    status = "OK" if rep.ok else f"BROKEN ({len(rep.findings)} findings)"
    policy = {None: "signing policy unknown", 0: "policy 0: checkpoints only",
              1: "policy 1: every entry signed"}[rep.policy]
    print(f"{rep.device_id}: {status}; {span}; {policy}; "
          f"{len(rep.checkpoints)} signed checkpoints; verified through "
          f"{'-' if rep.verified_through is None else rep.verified_through}")
    return 0 if rep.ok else 1
