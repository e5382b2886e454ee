"""`hashtrail verify --ledger FILE`: re-verify a whole ledger from raw bytes.

Every table is re-derived from device-signed data (hashtrail.ledger_verify; each
problem names its table, row and what is wrong).

Without a key, the ledger's checkpoints are checked against the key the ledger file
itself carries: that proves the file is self-consistent, not whose it is. Anyone can
build a replica with a key of their own and sign whatever history they like. A party
re-verifying a replica it does not control brings the ledger key it trusts
(`--verifier-key` / `--verifier-key-file`, as `ledger init` printed it): then every
signed checkpoint in the file must verify under that key and match the stored tree,
and a file without any such checkpoint fails (nothing ties it to the key).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

from hashtrail.cli.args import device_arg
from hashtrail.cli.ledger import trusted_key
from hashtrail.errors import HashtrailError, printable
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="re-verify device chains, checkpoints and the Merkle log of a ledger")
    p.add_argument("--ledger", required=True, help="ledger file to re-verify")
    p.add_argument("--device", type=device_arg,
                   help="report only this device (every table is still checked)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--verifier-key", metavar="VKEY",
                   help="the ledger verifier key you trust (<name>+<key id>+<base64>, as "
                        "`ledger init` prints it): every signed checkpoint must verify "
                        "under it, not under the key the ledger file carries")
    g.add_argument("--verifier-key-file", metavar="FILE",
                   help="a file holding the trusted ledger verifier key")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (devices, anomalies, problems)")
    p.set_defaults(func=run)


@dataclass
class TrustedReport:
    """What the trusted key vouches for: how many checkpoints, up to which tree size."""

    key: str
    checkpoints: int = 0
    size: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "checkpoints": self.checkpoints, "size": self.size,
                "problems": self.problems}


def _label(data: bytes) -> str:
    """Which checkpoint, for a message (its size is read unverified: a label only)."""
    try:
        return f"checkpoint at size {note.parse_checkpoint(note.parse_note(data).text).size}"
    except HashtrailError:
        return "a stored checkpoint (not a checkpoint note)"


def check_trusted(led: Ledger, trusted: note.Verifier) -> TrustedReport:
    """Every stored checkpoint must be signed by `trusted` and match the stored tree.

    The tree itself is re-derived from the leaves by verify_ledger; this ties it to the
    key the caller trusts, whatever key the file names as its own."""
    rep = TrustedReport(trusted.to_string())
    for data in led.checkpoints():
        try:
            cp, _ = note.open_checkpoint(data, [trusted])
        except HashtrailError as e:
            rep.problems.append(f"{_label(data)} is not signed by the trusted key "
                                f"{trusted.name}+{trusted.key_id.hex()} ({e})")
            continue
        try:
            if cp.size > led.size or led.root(cp.size) != cp.root:
                raise HashtrailError("its root is not the ledger's")
        except HashtrailError as e:
            rep.problems.append(f"checkpoint at size {cp.size} signed by the trusted key "
                                f"does not match the log: {e}")
            continue
        rep.checkpoints += 1
        rep.size = cp.size if rep.size is None else max(rep.size, cp.size)
    if rep.checkpoints == 0 and not rep.problems:
        rep.problems.append("the ledger holds no signed checkpoint, so nothing ties it to "
                            "the trusted key (the operator signs one with "
                            "`hashtrail ledger checkpoint`)")
    return rep


_RANGES_SHOWN = 5      # unprotected ranges printed per device in text mode


def _t(t: int | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def run(args: argparse.Namespace) -> int:
    want_key = args.verifier_key is not None or args.verifier_key_file is not None
    trusted = trusted_key(args) if want_key else None  # bad key: error before any work
    with Ledger.open(args.ledger) as led:
        rep = verify_ledger(led, args.device)
        trust = check_trusted(led, trusted) if trusted is not None else None
    ok = rep.ok and (trust is None or not trust.problems)
    if args.json:
        out = rep.as_json()
        out["ok"] = ok
        if trust is not None:
            out["trusted"] = trust.as_json()
        print(json.dumps(out, indent=1))
        return 0 if ok else 1
    print(f"{'device':<32}  {'entries':>8}  {'first (UTC)':<16}  {'last (UTC)':<16}  "
          f"{'held':>5}  status")
    for d in rep.devices:
        print(f"{d.device_id:<32}  {d.entries:>8}  {_t(d.first_t):<16}  {_t(d.last_t):<16}  "
              f"{d.pending:>5}  {d.status}")
        for u in d.unprotected[:_RANGES_SHOWN]:
            print(f"      seqs {u['first']}..{u['last']}: unprotected until {u['by']} "
                  f"{u['until']}")
        if len(d.unprotected) > _RANGES_SHOWN:
            print(f"      ... {len(d.unprotected) - _RANGES_SHOWN} more ranges (--json "
                  "lists them all)")
        for a in d.problems + (d.anomalies if d.alarm else []):
            print(f"    ! {printable(a)}")
        for a in [] if d.alarm else d.anomalies:
            print(f"    expected anomaly: {printable(a)}")
    for p in rep.problems:
        print(f"! {printable(p)}")
    for n in rep.notes:
        print(f"  note: {printable(n)}")
    print(f"Merkle log: {rep.size} leaves, root {rep.root}, {rep.checkpoints} signed "
          f"checkpoints: {'OK' if not rep.problems else 'FAILED'}")
    if trust is not None:
        for p in trust.problems:
            print(f"! {p}")
        vouched = (f"{trust.checkpoints} checkpoints up to size {trust.size}"
                   if trust.size is not None else "no checkpoint")
        print(f"trusted key {trust.key.split('+')[0]}: {vouched}: "
              f"{'OK' if not trust.problems else 'FAILED'}")
        if trust.size is not None and trust.size < rep.size:
            print(f"  note: leaves {trust.size}..{rep.size - 1} are not yet under a "
                  "checkpoint signed by the trusted key")
    print(verdict(ok, sum(len(d.anomalies) for d in rep.devices if not d.alarm)))
    return 0 if ok else 1


def verdict(ok: bool, expected: int) -> str:
    """The last line: what exit 0 or 1 means, in words."""
    if not ok:
        return "verify: PROBLEMS FOUND (integrity problems, marked ! above)"
    if expected:
        return (f"verify: OK ({expected} expected "
                f"anomal{'y' if expected == 1 else 'ies'} noted above: no integrity "
                "problem)")
    return "verify: OK"
