"""`hashtrail sim`: run virtual devices and print their serial ports and device ids.

Each device runs the real firmware under the MicroPython unix port, with its own
littlefs image (kept in --dir, so the next run reboots the same devices with their
data) and its own pseudo-terminal, which `hashtrail collect --port` and
`mpremote connect` open like a board's USB serial port. Runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from hashtrail.cli.args import at_least
from hashtrail.sim import launch


def register(sub: Any) -> None:
    p = sub.add_parser("sim", help="run virtual devices (real firmware, unix port)",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", "-n", type=at_least(1), default=1, metavar="N",
                   help="how many devices (default 1), named dev0..devN-1")
    p.add_argument("--dir", type=Path, default=Path("var/sim"),
                   help="where the devices' flash images live (default var/sim)")
    p.add_argument("--board", default="unix", help="board definition (only unix runs virtually)")
    p.add_argument("--fresh", action="store_true",
                   help="re-flash every image with the current firmware (erases device data)")
    p.add_argument("--log", action="store_true", help="report boots and resets on stderr")
    p.add_argument("--json", action="store_true",
                   help="print the devices (name, port, device id, image) as one JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fleet = launch.make_fleet(args.dir, args.devices, board=args.board, log=args.log)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    old_term = signal.signal(signal.SIGTERM, _stop)
    try:
        rows = launch.start(fleet, fresh=args.fresh)
        if args.json:
            print(json.dumps([r._asdict() for r in rows]), flush=True)
        else:
            for r in rows:
                print(f"{r.name}\t{r.port}\t{r.device_id or 'id unknown'}\t{r.image}",
                      flush=True)
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        fleet.stop()
        signal.signal(signal.SIGTERM, old_term)
    return 0
