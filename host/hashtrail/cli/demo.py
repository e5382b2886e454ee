"""`hashtrail demo`: virtual devices, two collectors, one ledger, one tampering caught.

A thin layer over `hashtrail.demo.run_demo`: picks the folder (a fresh temporary one
unless --dir), turns SIGTERM into a clean stop (the demo's `finally` stops every
device process), removes the temporary folder unless --keep, and maps the report to
the exit status: 0 only when every step held and the tampering was caught.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from hashtrail import userfile
from hashtrail.cli.args import at_least
from hashtrail.cli.serve import listen_arg
from hashtrail.demo import run_demo, serve_demo_ledger
from hashtrail.device.mqtt_link import parse_url

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="the whole job on virtual devices: collect, reconcile, verify, prove, "
                     "catch a tampering",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path,
                   help="run in this new or empty folder and keep it (default: a temporary "
                        "folder, removed afterwards)")
    p.add_argument("--devices", "-n", type=at_least(1), default=3, metavar="N",
                   help="how many virtual devices (default 3)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary folder (stores, bundles, ledger, images, proof)")
    p.add_argument("--mqtt", metavar="URL",
                   help="collect over this MQTT broker (e.g. mqtt://127.0.0.1:1883) "
                        "instead of the pseudo-terminals")
    p.add_argument("--json", action="store_true",
                   help="print the final report as JSON on stdout (the steps go to stderr)")
    p.add_argument("--serve", action="store_true",
                   help="afterwards, keep the demo's ledger served (tlog-tiles and the fleet "
                        "view in the browser) and print its URL, until Ctrl-C")
    p.add_argument("--listen", type=listen_arg, default=("127.0.0.1", 0), metavar="HOST:PORT",
                   help="with --serve: address to listen on (default 127.0.0.1 and a free "
                        "port)")
    p.set_defaults(func=run)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    if args.mqtt is not None:
        parse_url(args.mqtt)  # a bad URL is bad input (exit 2) before anything starts
    if args.dir is not None:
        userfile.check_dir(args.dir, "a new or empty folder for the demo")
    temp = args.dir is None
    folder = Path(tempfile.mkdtemp(prefix="hashtrail-demo-")) if temp else args.dir
    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        rep = run_demo(folder, args.devices, out=sys.stderr if args.json else sys.stdout,
                       mqtt=args.mqtt)
        if args.json:
            print(json.dumps(rep.to_json(), indent=1), flush=True)
        if args.serve:
            _serve(folder, args)
    finally:
        signal.signal(signal.SIGTERM, old)
        if temp and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            log.info(f"removed the temporary folder {folder} and everything the demo made "
                     "in it: the $ commands above name files that are gone; run with --dir "
                     "DIR (or --keep) to keep them and run the commands yourself")
        elif temp:
            log.info(f"files kept in {folder}: the $ commands above run as printed")
    return 0 if rep.ok else 1


def _serve(folder: Path, args: argparse.Namespace) -> None:
    """`--serve`: the demo's ledger over HTTP until Ctrl-C (or SIGTERM)."""
    out = sys.stderr if args.json else sys.stdout

    def ready(url: str) -> None:
        print(f"serving the demo's ledger at {url}: fleet view {url}, ledger {url}ledger "
              "(Ctrl-C stops)", file=out, flush=True)
    host, port = args.listen
    try:
        serve_demo_ledger(folder, host, port, ready)
    except KeyboardInterrupt:
        print("hashtrail: stopped serving", file=out, flush=True)
