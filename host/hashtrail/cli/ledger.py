"""`hashtrail ledger ...`: make the ledger, sign checkpoints, print and check proofs,
export and check fork evidence, cosign checkpoints as a witness, and keep the list of
collectors whose bundles may enroll devices.

Offline checks (`verify-proof`, `cosign`) trust only the ledger verifier key the user
brings (`--verifier-key` or `--verifier-key-file`), never a key carried by the input:
anyone can sign a checkpoint for a made-up root with a key of their own. Without a
trusted key they fail closed (hashtrail.ledger.trust). The work is done by library
functions: proofs by hashtrail.ledger.proof_file (hashtrail.ledger.proof checks them
down to the device's own signature), evidence files by hashtrail.ledger.evidence_file,
cosigning and split-view detection by hashtrail.ledger.witness; this module parses,
calls and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from hashtrail.cli.args import (
    at_least,
    device_arg,
    key_file_arg,
    ledger_arg,
    open_signing,
    trusted_key,
    trusted_key_args,
)
from hashtrail.cli.serve import add_publish, url_arg, verify_url
from hashtrail.errors import printable
from hashtrail.ledger import evidence_file, firmware, proof_file, trust, witness
from hashtrail.ledger.backend import display
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile_files import collector_cursor

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("ledger", help="ledger checkpoints and proofs")
    s = p.add_subparsers(dest="ledger_cmd", required=True)

    def cmd(name: str, func: Any, help: str, ledger: bool = True) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = s.add_parser(name, help=help)
        if ledger:
            ledger_arg(c)
        c.add_argument("--json", action="store_true", help="print the result as JSON")
        c.set_defaults(func=func)
        return c

    c = cmd("init", run_init, "make a new ledger (a SQLite file, or a PostgreSQL "
                           "database) and its Ed25519 checkpoint key")
    c.add_argument("--origin", required=True, help="checkpoint origin line, e.g. example.com/log")
    key_file_arg(c, "where to write the ledger's signing key (mode 0600, never "
                 "overwritten)")
    c = cmd("checkpoint", run_checkpoint, "sign and print the current checkpoint")
    key_file_arg(c, "the ledger's signing key")
    c = cmd("prove", run_prove, "inclusion proof of one device entry, with the device's "
                                "signature over it")
    c.add_argument("--device", required=True, type=device_arg,
                   help="the device id (32 lower-case hex characters)")
    c.add_argument("--seq", required=True, type=at_least(0),
                   help="the entry's sequence number (`devices list` shows how many)")
    c.add_argument("--checkpoint", metavar="FILE",
                   help="prove against this signed (possibly cosigned) checkpoint of the "
                        "ledger instead of the latest stored one")
    c = cmd("consistency", run_consistency, "consistency proof between two tree sizes")
    c.add_argument("--old", required=True, type=at_least(1),
                   help="the older tree size (a checkpoint's second line), at least 1")
    c.add_argument("--new", type=at_least(1), help="the newer tree size (default: the ledger's)")
    c = cmd("verify-proof", run_verify_proof, "check a proof file offline", ledger=False)
    trusted_key_args(c)
    c.add_argument("--device", metavar="ID",
                   help="refuse the proof unless it is for this device id")
    c.add_argument("--witness-key", action="append", default=[], metavar="VKEY",
                   help="a witness cosigner key you trust (as `ledger cosign --json` "
                        "prints it); repeatable")
    c.add_argument("--min-witnesses", type=at_least(0), metavar="N",
                   help="valid cosignatures required (default: every --witness-key)")
    c.add_argument("--collector-key", action="append", default=[], metavar="VKEY_OR_FILE",
                   help="require the enrollment to be signed by this collector key (as "
                        "`hashtrail export --show-key` prints it, or a file holding it); "
                        "repeatable")
    c.add_argument("--url", type=url_arg, help="instead of a file, fetch the proof of "
                   "--device's entry --seq from this log (`hashtrail serve`)")
    c.add_argument("--seq", type=at_least(0), help="with --url: the entry's sequence number")
    c.add_argument("file", nargs="?", help="the proof file (`ledger prove` or `ledger "
                                           "consistency` output)")
    c = cmd("evidence", run_evidence, "export fork evidence of a device")
    c.add_argument("--device", required=True, type=device_arg,
                   help="the forked device's id (32 lower-case hex characters)")
    c.add_argument("--out", required=True, help="where to write the evidence file")
    c = cmd("check-evidence", run_check_evidence,
            "check a fork evidence file, or a witness's split-view evidence file",
            ledger=False)
    trusted_key_args(c, "; needed for split-view evidence (both checkpoints must be "
                         "signed by it)")
    c.add_argument("file", help="the evidence file (hashtrail-fork-evidence/1 or "
                                "hashtrail-split-view/1)")
    c = cmd("trust", run_trust, "let bundles signed by this collector key enroll devices")
    c.add_argument("key", metavar="VKEY_OR_FILE",
                   help="the collector's verifier key (`hashtrail export --show-key` prints "
                        "it), or a file holding it")
    c.add_argument("--name", help="what to call this collector (default: the key's name)")
    cmd("trusted", run_trusted, "list the collectors trusted to enroll devices")
    c = cmd("cursor", run_cursor, "print what this ledger has received from a collector "
            "(a cursor file for `export --since`)")
    c.add_argument("--collector", required=True, metavar="VKEY_OR_FILE",
                   help="the collector's verifier key (`hashtrail export --show-key`), or "
                        "a file holding it")
    c = cmd("firmware", run_firmware, "each device's firmware history: the running "
            "version and every signed update (seq, time, old -> new, counter, manifest)")
    c.add_argument("--device", type=device_arg,
                   help="only this device (32 lower-case hex characters)")
    c = cmd("witness-key", run_witness_key, "make a witness's signing key for `ledger "
            "cosign`; prints the cosigner key proof checkers trust", ledger=False)
    c.add_argument("--name", required=True,
                   help="the witness's name, like a log origin (e.g. witness.example.com/w1)")
    c.add_argument("--out", required=True, type=Path,
                   help="where to write the signing key (mode 0600, never overwritten)")
    c = cmd("cosign", run_cosign, "as a witness, cosign a checkpoint that extends the last one",
            ledger=True)
    c.add_argument("--key", required=True,
                   help="witness signing key file (PRIVATE+KEY+..., from `ledger witness-key`)")
    c.add_argument("--state", required=True,
                   help="witness state file: the last checkpoint this witness cosigned "
                        "(created on first use)")
    trusted_key_args(c)
    c.add_argument("checkpoint", help="signed checkpoint file to cosign")
    c.add_argument("--out", help="also write the cosigned checkpoint to this file")
    add_publish(cmd)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=1) if args.json else text)


def run_init(args: argparse.Namespace) -> int:
    led = Ledger.create(args.ledger, args.origin, key_file=args.key_file)
    with led:
        v = led.verifier.to_string()
        kp = str(led.key_file)
    shown = display(args.ledger)          # a URL's password is not for the terminal
    _emit(args, {"ledger": shown, "origin": args.origin, "verifier_key": v,
                 "key_file": kp},
          f"ledger {shown} created\nverifier key: {v}\nsigning key: {kp} (mode 0600; "
          "keep it private, apart from the ledger: reconcile and `ledger checkpoint` "
          "need it)")
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    with open_signing(args) as led:
        data = led.sign_checkpoint()
        v = led.verifier.to_string()
    _emit(args, {"checkpoint": data.decode(), "verifier_key": v}, data.decode().rstrip("\n"))
    return 0


def run_prove(args: argparse.Namespace) -> int:
    doc = proof_file.prove(args.ledger, args.device, args.seq, args.checkpoint)
    _emit(args, doc, json.dumps(doc, indent=1))
    return 0


def run_consistency(args: argparse.Namespace) -> int:
    doc = proof_file.consistency(args.ledger, args.old, args.new)
    _emit(args, doc, json.dumps(doc, indent=1))
    return 0


def run_verify_proof(args: argparse.Namespace) -> int:
    witnesses = trust.witness_keys(args.witness_key)
    collectors = [trust.collector_key(k) for k in args.collector_key]
    if args.url is not None or args.file is None:
        checked = verify_url(args, trusted_key(args), witnesses, collectors)
    else:
        checked = proof_file.verify_proof_file(args.file, trusted_key(args), witnesses,
                                               args.min_witnesses, args.device, collectors)
    _emit(args, checked.to_json(), checked.description)
    return 0


def run_evidence(args: argparse.Namespace) -> int:
    w = evidence_file.write_fork_evidence(args.ledger, args.device, args.out)
    _emit(args, {"device": w.device_id, "seq": w.seq, "out": args.out},
          f"fork evidence for {w.device_id} at seq {w.seq} written to {args.out}")
    return 0


def run_check_evidence(args: argparse.Namespace) -> int:
    # a key given is checked before anything else (a bad one is bad input, exit 2),
    # even where the evidence turns out not to need it (fork evidence)
    given = trusted_key(args) if args.verifier_key or args.verifier_key_file else None
    found = evidence_file.check_evidence_file(args.file, given)
    if isinstance(found, evidence_file.SplitViewFound):
        _emit(args, found.to_json(),
              f"split view proven: the ledger key of {found.origin} signed checkpoints at "
              f"sizes {found.sizes[0]} and {found.sizes[1]} that no single log explains")
        return 0
    _emit(args, found.to_json(),
          f"fork proven: device {found.device_id} signed two different entries for seq "
          f"{found.seq}")
    return 0


def run_trust(args: argparse.Namespace) -> int:
    key = trust.collector_key(args.key)
    t = trust.trust_collector(args.ledger, key, args.name)
    _emit(args, {"key": t.key, "name": t.name, "added": t.added},
          f"{'trusted' if t.added else 'already trusted'}: collector {t.name} "
          f"({t.key}); its signed bundles may enroll devices")
    return 0


def run_cursor(args: argparse.Namespace) -> int:
    text = collector_cursor(args.ledger, trust.collector_key(args.collector))
    print(text, end="")       # one JSON line either way (--json changes nothing)
    return 0


def run_trusted(args: argparse.Namespace) -> int:
    rows = trust.trusted_collectors(args.ledger)
    if args.json:
        print(json.dumps([{"key": t.key, "name": t.name, "added_at": t.added_at}
                          for t in rows], indent=1))
    elif not rows:
        print("no trusted collectors: bundles can enroll no device "
              "(add one with `hashtrail ledger trust`)")
    for t in [] if args.json else rows:
        print(f"{t.name}  {t.key}  since "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(t.added_at))} UTC")
    return 0


def run_cosign(args: argparse.Namespace) -> int:
    """Witness: cosign only a checkpoint consistent with the last one this witness saw."""
    # the key this witness was configured with, never the one in the ledger file given
    c = witness.cosign(args.ledger, args.key, args.state, args.checkpoint, trusted_key(args),
                       out=args.out)
    cp = c.checkpoint
    if args.json:
        print(json.dumps({"cosigned": c.cosigned.decode(), "size": cp.size,
                          "root": cp.root.hex(), "origin": cp.origin,
                          "cosigner_key": c.cosigner_key}))
    else:
        print(c.cosigned.decode(), end="")
        log.info(f"cosigned: {cp.origin} at size {cp.size} by witness {c.witness} "
                 f"(cosigner key {c.cosigner_key})"
                 + (f"; written to {args.out}" if args.out else ""))
    return 0


def run_firmware(args: argparse.Namespace) -> int:
    """Exit 1 when an update entry breaks the firmware rules (chain.fwrules), as
    `verify --ledger` would for it."""
    with Ledger.open(args.ledger) as led:
        devs = firmware.firmware_history(led, args.device)
    bad = any(u.findings for d in devs for u in d.updates)
    if args.json:
        print(json.dumps([d.as_json() for d in devs], indent=1))
        return 1 if bad else 0
    for d in devs:
        n, back = d.installed, len(d.updates) - d.installed
        print(f"{d.device_id}  {printable(d.label)}  running {printable(d.fw or '-')}  "
              f"{n} signed update{'' if n == 1 else 's'}"
              + (f", {back} taken back" if back else ""))
        for u in d.updates:
            flag = "  ! " + ", ".join(u.findings) if u.findings else ""
            what = "" if u.reverted is None else f"  REVERTED ({printable(u.reverted)})"
            print(f"  seq {u.seq:>6}  {_utc(u.t)}  {printable(u.old)} -> "
                  f"{printable(u.new)}  counter "
                  f"{u.counter}  manifest {u.manifest.hex()}{what}{flag}")
    return 1 if bad else 0


def _utc(t: int | None) -> str:
    return "time unknown    " if t is None else time.strftime("%Y-%m-%d %H:%M",
                                                              time.gmtime(t))


def run_witness_key(args: argparse.Namespace) -> int:
    k = witness.new_witness_key(args.name, args.out)
    _emit(args, {"name": k.name, "key_file": str(args.out), "cosigner_key": k.cosigner_key},
          f"witness key {args.name} written to {args.out} (mode 0600; keep it private)\n"
          f"cosigner key (give it to proof checkers: verify-proof --witness-key): "
          f"{k.cosigner_key}")
    return 0
