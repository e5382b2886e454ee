"""`hashtrail enroll`: record a device's identity in the collector store
(hashtrail.collector.port.enroll_port does the work; this module parses and prints).

Why over the protocol: the device id, public key, firmware and board come from the
device itself (HELLO), and the id must be derived from the key before anything is
recorded, so a device cannot be enrolled under an id it does not own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import Any

from hashtrail.cli.args import at_least, release_key, store_arg
from hashtrail.collector.port import enroll_port
from hashtrail.errors import printable

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "enroll", help="enroll the device on a serial port into a collector store")
    p.add_argument("--port", required=True, help="serial port (or a virtual device's pty)")
    store_arg(p, "collector store file (SQLite); made here when it does not exist yet")
    p.add_argument("--label", required=True, help="a human name for the device")
    p.add_argument("--baud", type=at_least(1), default=115200,
                   help="serial baud rate (default 115200)")
    p.add_argument("--release-key", type=release_key, metavar="PUBKEY",
                   help="pin this release key on a device that has none (firmware "
                        "updates must then be signed with it); one with keys pinned "
                        "must already hold it")
    p.add_argument("--json", action="store_true", help="print the enrollment as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # a device woken from its REPL is reported by hashtrail.device.link (INFO)
    en = enroll_port(args.store, args.port, args.label, args.baud,
                     release_key=args.release_key)
    e, altered = en.enrollment, en.altered
    if altered is not None:
        # The device's own report from its boot check: a warning (-q keeps it), on
        # stderr, so --json stays data.
        log.warning(altered.describe(e.device_id))
    if args.json:
        print(json.dumps({"device_id": e.device_id, "pub": e.pub.hex(), "label": e.label,
                          "board": e.board, "fw": e.fw, "enrolled_at": e.enrolled_at,
                          "device_altered": None if altered is None
                          else dataclasses.asdict(altered),
                          "release_key": None if args.release_key is None else
                          {"pub": args.release_key.hex(), "pinned_now": en.key_pinned}}))
    else:
        print(f"enrolled {e.device_id} ({printable(e.label)}, board {printable(e.board)}, "
              f"fw {printable(e.fw)})")
        if args.release_key is not None:
            print(f"release key {args.release_key.hex()[:16]}... "
                  + ("pinned on the device" if en.key_pinned else "was already pinned"))
    return 0
