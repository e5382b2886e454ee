"""`hashtrail serve` and `hashtrail ledger publish`: the ledger as C2SP tlog-tiles, over
HTTP or written to a folder (hashtrail.ledger.tiles, hashtrail.ledger.serve), and with
a ledger, the read-only fleet view in the browser beside them (hashtrail.web)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.cli.args import at_least, env_default, seconds
from hashtrail.errors import ConfigError
from hashtrail.formats import note
from hashtrail.ledger import tiles, tiles_client
from hashtrail.ledger.http_app import parse_listen, serve_app
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.proof_file import CheckedProof
from hashtrail.ledger.serve import serve
from hashtrail.ledger.trust import witness_keys
from hashtrail.ledger.witness_push import CosignedFeed, publish_witnessed
from hashtrail.web.app import make_app as make_web_app

log = logging.getLogger(__name__)


def listen_arg(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def url_arg(text: str) -> str:
    try:
        return tiles_client.check_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def verify_url(args: argparse.Namespace, trusted: note.Verifier,
               witnesses: list[note.Verifier],
               collectors: list[note.Verifier] | None = None) -> CheckedProof:
    """`ledger verify-proof --url URL --device ID --seq N`: the proof, assembled from the
    log and checked like a proof file."""
    if args.url is None or args.file is not None or args.device is None or args.seq is None:
        raise ConfigError("give a proof file, or --url with --device and --seq (not both)",
                          hint="e.g. hashtrail ledger verify-proof --url "
                               "http://127.0.0.1:8080/ --device ID --seq N --verifier-key VKEY")
    return tiles_client.verify_proof_url(args.url, args.device, args.seq, trusted, witnesses,
                                         args.min_witnesses, collectors or [])


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve the ledger over HTTP as C2SP tlog-tiles (checkpoint, tiles, "
                      "entry bundles, device signatures) and a read-only fleet view for the "
                      "browser at / (with --ledger)")
    ledger = env_default("ledger")
    g = p.add_mutually_exclusive_group(required=ledger is None)
    g.add_argument("--ledger", metavar="LEDGER", default=ledger,
                   help="ledger, a SQLite file or a postgresql:// URL (only read; default: "
                        "$HASHTRAIL_LEDGER; one of --ledger and --dir is required)")
    g.add_argument("--dir", metavar="DIR",
                   help="instead of a ledger, a folder `ledger publish` or `hashtrail "
                        "mirror` wrote (only read)")
    p.add_argument("--listen", type=listen_arg, default=("127.0.0.1", 8080),
                   metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8080, "
                                             "this machine only; port 0 picks a free one)")
    p.add_argument("--json", action="store_true",
                   help="once listening, print {\"url\": ..., \"ledger\": ...} as one JSON "
                        "line (for a script that started it)")
    _witness_args(p, "serve only a checkpoint with at least K valid cosignatures "
                     "(default: one per --witness-key); until the newest has them, the "
                     "last one that had them")
    p.add_argument("--witness-interval", type=seconds, default=1.0, metavar="S",
                   help="seconds between rounds of asking the witnesses (default 1)")
    p.set_defaults(func=run_serve)


def _witness_args(c: argparse.ArgumentParser, k_help: str) -> None:
    c.add_argument("--witness", action="append", default=[], type=url_arg, metavar="URL",
                   help="a witness to ask for a cosignature first (C2SP tlog-witness, "
                        "`hashtrail witness serve`); repeatable")
    c.add_argument("--witness-key", action="append", default=[], metavar="VKEY",
                   help="a witness cosigner key whose cosignature counts; repeatable")
    c.add_argument("--min-cosignatures", type=at_least(0), metavar="K", help=k_help)


def _witnesses(args: argparse.Namespace) -> tuple[list[note.Verifier], int]:
    """The witness keys given and the cosignatures required (K)."""
    keys = witness_keys(args.witness_key)
    if args.witness and not keys:
        raise ConfigError("--witness needs --witness-key: whose cosignatures count",
                          hint="the cosigner key `hashtrail witness serve` prints")
    need = len({(k.name, k.pub) for k in keys}) if args.min_cosignatures is None \
        else args.min_cosignatures
    return keys, need


def add_publish(cmd: Any) -> None:
    """`ledger publish`, added to the `ledger` group by hashtrail.cli.ledger."""
    c: argparse.ArgumentParser = cmd("publish", run_publish,
                                     "write the log as C2SP tlog-tiles to a folder, for "
                                     "any static web server")
    c.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write into (made when missing; full tiles already "
                        "there are kept, the rest rewritten)")
    c.add_argument("--words", action="store_true",
                   help="also write each entry's device signature (hashtrail/word/...), "
                        "which `ledger verify-proof --url` needs beside the tiles: one "
                        "file per entry (`hashtrail serve` makes them on request)")
    _witness_args(c, "publish only with at least K valid cosignatures (default: one "
                     "per --witness-key)")


def run_publish(args: argparse.Namespace) -> int:
    out = userfile.check_dir(args.out, "a folder for the published log")
    keys, need = _witnesses(args)
    cosigned: tuple[str, ...] = ()
    with Ledger.open(args.ledger) as led:
        if args.witness:
            res, g = publish_witnessed(led, Path(out), args.witness, keys, need,
                                       words=args.words)
            cosigned = g.cosigned
            for f in g.failed:
                print(f"hashtrail: warning: witness {f}", file=sys.stderr)
        else:
            res = tiles.publish(led, Path(out), words=args.words)
    data = {"out": str(out), "size": res.size, "written": res.written, "kept": res.kept,
            "words": res.words, "cosigned": list(cosigned)}
    print(json.dumps(data) if args.json else
          f"published tree size {res.size} to {out}: {res.written} files written, "
          f"{res.kept} full tiles already there"
          + (f"; checkpoint cosigned by {', '.join(cosigned)}" if cosigned else ""))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    host, port = args.listen
    if (args.witness_key or args.min_cosignatures is not None) and not args.witness:
        raise ConfigError("--witness-key and --min-cosignatures need --witness URL")
    if args.dir is not None and args.witness:
        raise ConfigError("--witness needs --ledger: a folder is served as it was written",
                          hint="publish it with `ledger publish --witness ...` instead")
    if args.dir is not None:
        folder = userfile.check_dir(args.dir, "a published or mirrored log")

        def ready_dir(url: str) -> None:
            print(f"serving {folder} as tlog-tiles at {url} (Ctrl-C stops)", flush=True)
        try:
            serve(Path(folder), host, port, ready_dir)
        except KeyboardInterrupt:
            print("hashtrail: stopped", file=sys.stderr)
        return 0
    keys, need = _witnesses(args)
    if args.witness_interval > 3600:
        raise ConfigError("--witness-interval is at most 3600 seconds")
    with Ledger.open(args.ledger) as led:
        feed = CosignedFeed(led.path, args.witness, keys, need, args.witness_interval) \
            if args.witness else None
        cosigned = f" once {need} witnesses cosign it" if feed is not None else ""

        def ready(url: str) -> None:
            print(json.dumps({"url": url, "ledger": args.ledger, "fleet": url}) if args.json
                  else f"serving {args.ledger} as tlog-tiles at {url}{cosigned} (Ctrl-C "
                       f"stops); fleet view: {url}", flush=True)
        try:
            serve_app(make_web_app(led, feed), host, port, ready)
        except KeyboardInterrupt:
            log.info("hashtrail: stopped")
    return 0
