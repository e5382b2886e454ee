"""`hashtrail release`: the owner's release key and signed firmware update packages.

`release keygen --out FILE` makes a P-256 release key (the file stays with the owner)
and prints its public key, which `deploy --release-key` pins on devices.
`release build --key FILE --version V --counter N [--board B] --out PKG` compiles the
firmware for the board with that version and writes an update package: a manifest
(version, security counter, board, SHA-256 and size of every file) signed with the
release key, then the files. `hashtrail update` sends it; the device installs it only
when a pinned key signed it and its counter is above every counter it installed.
`release build ... --image FILE` signs a full firmware image instead (an ESP32 app
image, `build-BOARD/micropython.bin` of a MicroPython built with the firmware frozen in
and FW_VERSION set to V): the device writes it to its next OTA partition and boots it
(docs/DEVICE.md "Full-image updates"; not run on a real board yet).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.cli.args import at_least
from hashtrail.device.release import build_image_release, build_release, keygen
from hashtrail.errors import HashtrailError
from hashtrail.formats import manifest


def register(sub: Any) -> None:
    p = sub.add_parser("release", help="release key and signed firmware update packages",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    k = s.add_parser("keygen", help="make a release key; prints its public key")
    k.add_argument("--out", required=True, type=Path, help="release key file to create")
    k.add_argument("--json", action="store_true", help="print the public key as JSON")
    k.set_defaults(func=run_keygen)
    b = s.add_parser("build", help="compile and sign an update package")
    b.add_argument("--key", required=True, type=Path, help="release key file")
    b.add_argument("--version", required=True, dest="fw_version", type=version_arg,
                   help="firmware version the package installs")
    b.add_argument("--counter", required=True, type=at_least(1),
                   help="security counter: higher than every release before it")
    b.add_argument("--board", default="esp32", help="board definition (default esp32)")
    b.add_argument("--image", type=Path, metavar="FILE",
                   help="sign this ESP32 app image (micropython.bin with the firmware "
                   "frozen in) instead of compiling the firmware files")
    b.add_argument("--out", required=True, type=Path, help="package file to write")
    b.add_argument("--json", action="store_true", help="print the package as JSON")
    b.set_defaults(func=run_build)


def version_arg(text: str) -> str:
    """argparse type: a firmware version the device can carry (manifest.check_version)."""
    try:
        return manifest.check_version(text)
    except HashtrailError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run_keygen(args: argparse.Namespace) -> int:
    userfile.check_output(args.out, "release key")
    pub = keygen(args.out)
    if args.json:
        print(json.dumps({"key": str(args.out), "public_key": pub.hex()}))
    else:
        print(pub.hex())
    return 0


def run_build(args: argparse.Namespace) -> int:
    userfile.check_output(args.out, "update package")
    if args.image is not None:
        r = build_image_release(args.key, args.fw_version, args.counter, args.board,
                                args.image, args.out)
    else:
        r = build_release(args.key, args.fw_version, args.counter, args.board, args.out)
    if args.json:
        d = dataclasses.asdict(r)
        d["out"] = str(r.out)
        print(json.dumps(d, indent=2))
    else:
        what = f"{len(r.files)} files" if r.image_size is None else \
            f"an app image of {r.image_size} bytes"
        print(f"{r.out}: firmware {r.version} for {r.board}, counter {r.counter}, "
              f"{what}, {r.size} bytes; manifest sha256 {r.manifest_sha256}")
    return 0
