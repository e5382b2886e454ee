"""`hashtrail update`: send a signed firmware update package to a device.

The device checks it (a release key pinned on it signed the manifest, the security
counter is above every one it installed, the board, every file's SHA-256), stages it,
resets and switches to it atomically; the update becomes an entry in its chain. On a
refusal the device's reason is printed (exit 1) and it keeps its firmware and its log.
A full-image package (`release build --image`) is written to the device's next OTA
partition instead and booted once; the new image confirms itself or the bootloader
brings the old one back (docs/DEVICE.md "Full-image updates").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from hashtrail.cli.args import seconds
from hashtrail.device.update import update


def register(sub: Any) -> None:
    p = sub.add_parser("update", help="install a signed firmware update on a device",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", required=True, help="serial port (or a virtual device's pty)")
    p.add_argument("--wait", type=seconds, default=60.0, metavar="SECONDS",
                   help="how long the device may take to come back (default 60)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("package", type=Path, help="update package (hashtrail release build)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    r = update(args.port, args.package, wait_s=args.wait)
    if args.json:
        d = dataclasses.asdict(r)
        d["info"] = {"fw": r.info.fw, "board": r.info.board, "last_seq": r.info.last_seq}
        print(json.dumps(d, indent=2))
    else:
        what = "app image, " if r.image else ""
        print(f"device {r.device_id}: firmware {r.old_version} -> {r.new_version} "
              f"(counter {r.counter}), {what}{r.bytes_sent} bytes in {r.transfer_s:.1f} s, "
              f"back in {r.total_s:.1f} s", file=sys.stdout)
    return 0
