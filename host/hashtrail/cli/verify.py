"""`hashtrail verify --ledger FILE`: re-verify a whole ledger from raw bytes.

Every table is re-derived from device-signed data (hashtrail.ledger.ledger_verify; each
problem names its table, row and what is wrong); hashtrail.ledger.audit does the work,
this module parses and prints.

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
from typing import Any

from hashtrail.cli import progress
from hashtrail.cli.args import device_arg, given_key, ledger_arg, trusted_key
from hashtrail.errors import printable
from hashtrail.ledger.audit import audit


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="re-verify device chains, checkpoints and the Merkle log of a ledger")
    ledger_arg(p, "ledger to re-verify: a SQLite file, or a postgresql:// URL")
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


_RANGES_SHOWN = 5      # unprotected ranges printed per device in text mode


def _t(t: int | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def run(args: argparse.Namespace) -> int:
    trusted = trusted_key(args) if given_key(args) else None  # bad key: error before any work
    # how far a ledger's verification is, only the whole run knows: a pulsing bar
    with progress.bar(f"verify {args.ledger}"):
        au = audit(args.ledger, args.device, trusted)
    rep, trust, ok = au.report, au.trusted, au.ok
    if args.json:
        print(json.dumps(au.as_json(), indent=1))
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
    print(verdict(ok, au.expected_anomalies))
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
