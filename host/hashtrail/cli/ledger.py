"""`hashtrail ledger ...`: make the ledger, sign checkpoints, print and check proofs,
export and check fork evidence, cosign checkpoints as a witness, and keep the list of
collectors whose bundles may enroll devices.

Offline checks (`verify-proof`, `cosign`) trust only the ledger verifier key the user
brings (`--verifier-key` or `--verifier-key-file`), never a key carried by the input:
anyone can sign a checkpoint for a made-up root with a key of their own. Without a
trusted key they fail closed. Inclusion proofs are built and checked by
`hashtrail.proof` (down to the device's own signature); this module parses, calls and
prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.chain import evidence
from hashtrail.chain.evidence import check_evidence
from hashtrail.cli.args import at_least, device_arg
from hashtrail.cli.serve import add_publish, fetch_proof, url_arg
from hashtrail.errors import ConfigError, FormatError, HashtrailError, InputError, VerificationError
from hashtrail.formats import note
from hashtrail.ledger import proof
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_key import ENV, create_witness_key

KEY_HINT = "get the ledger's verifier key from its operator: hashtrail ledger init prints it"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("ledger", help="ledger checkpoints and proofs")
    s = p.add_subparsers(dest="ledger_cmd", required=True)

    def cmd(name: str, func: Any, help: str, ledger: bool = True) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = s.add_parser(name, help=help)
        if ledger:
            c.add_argument("--ledger", required=True, help="ledger file")
        c.add_argument("--json", action="store_true", help="print the result as JSON")
        c.set_defaults(func=func)
        return c

    c = cmd("init", run_init, "make a new ledger file and its Ed25519 checkpoint key")
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
    _trusted_key_args(c)
    c.add_argument("--device", metavar="ID",
                   help="refuse the proof unless it is for this device id")
    c.add_argument("--witness-key", action="append", default=[], metavar="VKEY",
                   help="a witness cosigner key you trust (as `ledger cosign --json` "
                        "prints it); repeatable")
    c.add_argument("--min-witnesses", type=at_least(0), metavar="N",
                   help="valid cosignatures required (default: every --witness-key)")
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
    _trusted_key_args(c, "; needed for split-view evidence (both checkpoints must be "
                         "signed by it)")
    c.add_argument("file", help="the evidence file (hashtrail-fork-evidence/1 or "
                                "hashtrail-split-view/1)")
    c = cmd("trust", run_trust, "let bundles signed by this collector key enroll devices")
    c.add_argument("key", metavar="VKEY_OR_FILE",
                   help="the collector's verifier key (`hashtrail export --show-key` prints "
                        "it), or a file holding it")
    c.add_argument("--name", help="what to call this collector (default: the key's name)")
    cmd("trusted", run_trusted, "list the collectors trusted to enroll devices")
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
    _trusted_key_args(c)
    c.add_argument("checkpoint", help="signed checkpoint file to cosign")
    c.add_argument("--out", help="also write the cosigned checkpoint to this file")
    add_publish(cmd)


def key_file_arg(c: argparse.ArgumentParser, what: str) -> None:
    """--key-file for commands that sign with the ledger key (never the reading ones)."""
    c.add_argument("--key-file", metavar="PATH",
                   help=f"{what}; default ${ENV}, else <ledger>.key")


def open_signing(args: argparse.Namespace) -> Ledger:
    """The ledger with its key loaded (exit 2 without it); says so when it moved a key
    still kept in the ledger file out to the key file."""
    led = Ledger.open_signing(args.ledger, args.key_file)
    if led.migrated is not None:
        print(f"hashtrail: moved the ledger key out of {args.ledger} into {led.migrated} "
              "(mode 0600): keep it private; signing commands now need it", file=sys.stderr)
    return led


def _trusted_key_args(c: argparse.ArgumentParser, need: str = "; required") -> None:
    g = c.add_mutually_exclusive_group()
    g.add_argument("--verifier-key", metavar="VKEY",
                   help="the ledger's verifier key (<name>+<key id>+<base64>), as "
                        f"`ledger init` prints it{need}")
    g.add_argument("--verifier-key-file", metavar="FILE",
                   help="a file holding the ledger's verifier key")


def trusted_key(args: argparse.Namespace) -> note.Verifier:
    """The ledger key the user trusts, from --verifier-key(-file); fails closed."""
    text = args.verifier_key
    if args.verifier_key_file is not None:
        text = userfile.read_text(args.verifier_key_file, "a ledger verifier key file",
                                  max_bytes=64 * userfile.KIB)
    if text is None:
        raise ConfigError("no trusted ledger key: give --verifier-key or "
                          "--verifier-key-file (a key carried by the input proves nothing)",
                          hint=KEY_HINT)
    try:
        return note.Verifier.from_string(text)
    except FormatError as e:
        where = args.verifier_key_file if args.verifier_key_file is not None \
            else f"--verifier-key {text!r}"
        raise InputError(f"{where}: bad ledger verifier key: {e}", hint=KEY_HINT) from None


def read_checkpoint(path: str | Path, what: str) -> bytes:
    """A checkpoint file's bytes, refused (exit 2, naming it) unless it is shaped like a
    signed checkpoint note; its signatures are checked by the caller."""
    data = userfile.read_bytes(path, what)
    try:
        note.parse_checkpoint(note.parse_note(data).text)
    except HashtrailError as e:
        raise InputError(f"{path}: not a checkpoint note ({e}); expected {what}") from None
    return data


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=1) if args.json else text)


def run_init(args: argparse.Namespace) -> int:
    led = Ledger.create(args.ledger, args.origin, key_file=args.key_file)
    with led:
        v = led.verifier.to_string()
        kp = str(led.key_file)
    _emit(args, {"ledger": args.ledger, "origin": args.origin, "verifier_key": v,
                 "key_file": kp},
          f"ledger {args.ledger} created\nverifier key: {v}\nsigning key: {kp} (mode 0600; "
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
    cp = None
    if getattr(args, "checkpoint", None) is not None:
        cp = read_checkpoint(args.checkpoint, "a signed checkpoint of this ledger")
    with Ledger.open(args.ledger) as led:
        doc = proof.build_inclusion_proof(led, args.device, args.seq, cp)
    _emit(args, doc, json.dumps(doc, indent=1))
    return 0


def run_consistency(args: argparse.Namespace) -> int:
    with Ledger.open(args.ledger) as led:
        doc = proof.build_consistency_proof(led, args.old, args.new)
    _emit(args, doc, json.dumps(doc, indent=1))
    return 0


def check_proof(doc: dict[str, Any], trusted: note.Verifier) -> str:
    """Check a proof document (either type) against the ledger key the caller trusts;
    returns its description (hashtrail.proof does the work)."""
    return proof.check_proof_doc(doc, trusted)[0]


def _witness_keys(texts: list[str]) -> list[note.Verifier]:
    out = []
    for t in texts:
        try:
            out.append(note.Verifier.from_string(t))
        except FormatError as e:
            raise ConfigError(f"bad --witness-key {t!r}: {e}",
                              hint="a witness's cosigner key, as `hashtrail ledger cosign "
                                   "--json` prints it") from None
    return out


def run_verify_proof(args: argparse.Namespace) -> int:
    witnesses = _witness_keys(args.witness_key)
    need = len({(w.name, w.pub) for w in witnesses}) if args.min_witnesses is None \
        else args.min_witnesses
    if args.device is not None:
        proof.canonical_device_id(args.device)
    what = "a proof file (JSON, from `hashtrail ledger prove` or `consistency`)"
    if args.url is not None or args.file is None:
        doc = fetch_proof(args, trusted_key)
    else:
        text = userfile.read_text(args.file, what, max_bytes=userfile.DOCUMENT)
        try:
            doc = proof.load_proof(text)
        except proof.ProofFormatError as e:
            raise InputError(f"{args.file}: {e}; expected {what}", hint=e.hint) from None
    msg, pc = proof.check_proof_doc(doc, trusted_key(args), witnesses, need, args.device)
    data: dict[str, Any] = {"ok": True, "result": msg.split("\n")[0]}
    if pc is not None:
        data["proof"] = pc.to_json()
    _emit(args, data, msg)
    return 0


def run_evidence(args: argparse.Namespace) -> int:
    userfile.check_output(args.out, "a file to write the fork evidence to")
    with Ledger.open(args.ledger) as led:
        doc = led.fork_evidence(args.device)
    if doc is None:
        raise ConfigError(f"no fork evidence for device {args.device}: the ledger has not "
                          "seen its key sign two histories",
                          hint="`hashtrail devices list --ledger FILE` shows which devices "
                               "are FORKED")
    Path(args.out).write_text(doc)
    v = check_evidence(doc)
    _emit(args, {"device": v.device_id, "seq": v.seq, "out": args.out},
          f"fork evidence for {v.device_id} at seq {v.seq} written to {args.out}")
    return 0


def run_check_evidence(args: argparse.Namespace) -> int:
    what = ("an evidence file (JSON, from `hashtrail ledger evidence`, or a witness's "
            "split-view file)")
    # a key given is checked before anything else (a bad one is bad input, exit 2),
    # even where the evidence turns out not to need it (fork evidence)
    given = trusted_key(args) if args.verifier_key or args.verifier_key_file else None
    text = userfile.read_text(args.file, what, max_bytes=userfile.DOCUMENT)
    userfile.parse_json(text, args.file, what)      # junk, binary, too deep: bad input
    if evidence.evidence_format(text) == evidence.SPLIT_VIEW_FORMAT:
        sv = evidence.check_split_view(text, given if given is not None
                                       else trusted_key(args))
        _emit(args, {"split_view": True, "origin": sv.origin, "sizes": list(sv.sizes),
                     "roots": [r.hex() for r in sv.roots]},
              f"split view proven: the ledger key of {sv.origin} signed checkpoints at "
              f"sizes {sv.sizes[0]} and {sv.sizes[1]} that no single log explains")
        return 0
    v = check_evidence(text)
    _emit(args, {"fork": True, "device": v.device_id, "seq": v.seq,
                 "hashes": [h.hex() for h in v.hashes]},
          f"fork proven: device {v.device_id} signed two different entries for seq {v.seq}")
    return 0


def _collector_key(arg: str) -> note.Verifier:
    text = arg
    if "+" not in arg:      # not a key string, so a file holding one
        text = userfile.read_text(arg, "a collector verifier key or a file holding one "
                                  "(`hashtrail export --show-key` prints it)",
                                  max_bytes=64 * userfile.KIB)
    try:
        return note.Verifier.from_string(text)
    except FormatError as e:
        where = arg if text is not arg else repr(arg)
        raise InputError(f"{where}: bad collector key: {e}",
                          hint="on the collector, `hashtrail export --store FILE --show-key` "
                               "prints its key") from None


def run_trust(args: argparse.Namespace) -> int:
    key = _collector_key(args.key)
    name = args.name or key.name
    with Ledger.open(args.ledger) as led:
        new = led.trust_collector(key, name)
        name = led.collector_name(key) or name
    _emit(args, {"key": key.to_string(), "name": name, "added": new},
          f"{'trusted' if new else 'already trusted'}: collector {name} "
          f"({key.to_string()}); its signed bundles may enroll devices")
    return 0


def run_trusted(args: argparse.Namespace) -> int:
    with Ledger.open(args.ledger) as led:
        rows = led.trusted_collectors()
    if args.json:
        print(json.dumps([{"key": k, "name": n, "added_at": t} for k, n, t in rows], indent=1))
    elif not rows:
        print("no trusted collectors: bundles can enroll no device "
              "(add one with `hashtrail ledger trust`)")
    for k, n, t in [] if args.json else rows:
        print(f"{n}  {k}  since {time.strftime('%Y-%m-%d %H:%M', time.gmtime(t))} UTC")
    return 0


def run_cosign(args: argparse.Namespace) -> int:
    """Witness: cosign only a checkpoint consistent with the last one this witness saw."""
    key_what = "a witness signer key file (PRIVATE+KEY+...)"
    try:
        witness = note.Signer.from_string(
            userfile.read_text(args.key, key_what, max_bytes=64 * userfile.KIB))
    except FormatError as e:
        raise InputError(f"{args.key}: not a signer key ({e}); expected {key_what}") \
            from None
    data = read_checkpoint(args.checkpoint, "a signed checkpoint to cosign")
    state = Path(args.state)
    state_what = "the witness state file (the last checkpoint it cosigned)"
    # missing: this witness's first cosignature; anything else must be readable
    old_data = read_checkpoint(state, state_what) if state.exists() else None
    userfile.check_output(state, state_what)
    if args.out:
        userfile.check_output(args.out, "a file to write the cosigned checkpoint to")
    # the key this witness was configured with, never the one in the ledger file given
    trusted = trusted_key(args)
    with Ledger.open(args.ledger) as led:
        try:
            cp = evidence.witness_decide(led.node, led.size, old_data, data, trusted)
        except evidence.SplitView as e:
            ev = state.with_suffix(".inconsistent.json")
            ev.write_text(e.evidence)
            raise VerificationError(f"refused to cosign: {e}",
                                    hint=f"split-view evidence (both signed checkpoints) "
                                         f"kept in {ev}; anyone holding the ledger's "
                                         f"verifier key can check it with `hashtrail ledger "
                                         f"check-evidence --verifier-key VKEY {ev}`") from e
    out = note.cosign(data, witness, int(time.time()))
    state.write_bytes(data)
    if args.out:
        Path(args.out).write_bytes(out)
    ckey = witness.verifier().cosigner_string()
    if args.json:
        print(json.dumps({"cosigned": out.decode(), "size": cp.size, "root": cp.root.hex(),
                          "origin": cp.origin, "cosigner_key": ckey}))
    else:
        print(out.decode(), end="")
        print(f"cosigned: {cp.origin} at size {cp.size} by witness {witness.name} "
              f"(cosigner key {ckey})" + (f"; written to {args.out}" if args.out else ""),
              file=sys.stderr)
    return 0


def run_witness_key(args: argparse.Namespace) -> int:
    signer = create_witness_key(args.name, args.out)
    ckey = signer.verifier().cosigner_string()
    _emit(args, {"name": signer.name, "key_file": str(args.out), "cosigner_key": ckey},
          f"witness key {args.name} written to {args.out} (mode 0600; keep it private)\n"
          f"cosigner key (give it to proof checkers: verify-proof --witness-key): {ckey}")
    return 0
