"""`hashtrail enroll`: record a device's identity in the collector store.

Why over the protocol: the device id, public key, firmware and board come from the
device itself (HELLO), and the id must be derived from the key before anything is
recorded, so a device cannot be enrolled under an id it does not own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from hashtrail.cli.args import at_least
from hashtrail.collector.store import Store, device_id_of
from hashtrail.device.link import open_serial
from hashtrail.errors import VerificationError, printable


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "enroll", help="enroll the device on a serial port into a collector store")
    p.add_argument("--port", required=True, help="serial port (or a virtual device's pty)")
    p.add_argument("--store", required=True, help="collector store file (SQLite); made here when "
                                                "it does not exist yet")
    p.add_argument("--label", required=True, help="a human name for the device")
    p.add_argument("--baud", type=at_least(1), default=115200,
                   help="serial baud rate (default 115200)")
    p.add_argument("--json", action="store_true", help="print the enrollment as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # enroll is the command that makes a store (collect and export need one): a path
    # that is not a store, or not a place for a new one, is refused before the device
    Store.check(args.store)
    with open_serial(args.port, args.baud) as link:
        link.set_deadline(60.0)   # a HELLO and its retries; the device does not decide
        info = link.hello_waking(lambda line: print(line, file=sys.stderr))
    if device_id_of(info.pub) != info.device_id:
        raise VerificationError(f"device claims id {info.device_id}, its key gives "
                                f"{device_id_of(info.pub)}")
    with Store.open(args.store) as st:
        e = st.enroll(info.device_id, info.pub, label=args.label, board=info.board,
                      fw=info.fw)
    if info.altered is not None:
        # The device's own report from its boot check: on stderr, so --json stays data.
        print(info.altered.describe(info.device_id), file=sys.stderr)
    if args.json:
        print(json.dumps({"device_id": e.device_id, "pub": e.pub.hex(), "label": e.label,
                          "board": e.board, "fw": e.fw, "enrolled_at": e.enrolled_at,
                          "device_altered": None if info.altered is None
                          else dataclasses.asdict(info.altered)}))
    else:
        print(f"enrolled {e.device_id} ({printable(e.label)}, board {printable(e.board)}, "
              f"fw {printable(e.fw)})")
    return 0
