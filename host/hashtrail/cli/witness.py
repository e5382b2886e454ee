"""`hashtrail witness serve`: a C2SP tlog-witness over HTTP (add-checkpoint), for the
one log whose key it is given (hashtrail.ledger.witness_http)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.cli.args import trusted_key, trusted_key_args
from hashtrail.cli.serve import listen_arg
from hashtrail.formats.notefile import read_checkpoint, read_signer
from hashtrail.ledger.http_app import serve_app
from hashtrail.ledger.witness_http import Witness, make_witness_app


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "witness", help="a witness over HTTP (C2SP tlog-witness)")
    s = p.add_subparsers(dest="witness_command", metavar="COMMAND", required=True)
    c: argparse.ArgumentParser = s.add_parser(
        "serve", help="answer add-checkpoint: cosign checkpoints that extend the last one "
                      "cosigned, proven by the consistency proof in the request")
    c.add_argument("--key", required=True, metavar="FILE",
                   help="the witness's signer key (`ledger witness-key --out`)")
    c.add_argument("--state", required=True, metavar="FILE",
                   help="the last checkpoint this witness cosigned (made on the first "
                        "cosignature; the same file `ledger cosign --state` keeps)")
    trusted_key_args(c)
    c.add_argument("--listen", type=listen_arg, default=("127.0.0.1", 8081),
                   metavar="HOST:PORT", help="address to listen on (default "
                                             "127.0.0.1:8081; port 0 picks a free one)")
    c.add_argument("--json", action="store_true",
                   help="once listening, print {\"url\": ..., \"witness\": ..., "
                        "\"cosigner_key\": ...} as one JSON line (for a script that "
                        "started it)")
    c.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    signer = read_signer(args.key, "a witness signer key file (PRIVATE+KEY+...)")
    trusted = trusted_key(args)
    what = "the witness state file (the last checkpoint it cosigned)"
    state = Path(args.state)
    if state.exists():
        read_checkpoint(state, what)
    userfile.check_output(state, what)
    w = Witness(signer, trusted, state)
    host, port = args.listen

    def ready(url: str) -> None:
        if args.json:
            print(json.dumps({"url": f"{url}add-checkpoint", "witness": signer.name,
                              "log": trusted.name,
                              "cosigner_key": signer.verifier().cosigner_string()}),
                  flush=True)
            return
        print(f"witness {signer.name} for {trusted.name} at {url}add-checkpoint "
              f"(cosigner key {signer.verifier().cosigner_string()}; Ctrl-C stops)",
              flush=True)
    try:
        serve_app(make_witness_app(w), host, port, ready)
    except KeyboardInterrupt:
        print("hashtrail: stopped", file=sys.stderr)
    return 0
