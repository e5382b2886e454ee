"""`hashtrail sim` as functions: make a fleet of virtual devices in a folder, start it,
and report each device's serial port and the id it reports for its own key.

Why the id from the device: the user passes it to `--device` as printed, and it is the
one the device derives from its key (HELLO), not one the host made up. The caller owns
the running fleet: it stops it (`Fleet.stop`) however it ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from hashtrail import userfile
from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.sim import provision
from hashtrail.sim.device import VirtualDevice
from hashtrail.sim.fleet import Fleet

ID_TIMEOUT_S = 30.0       # first boot makes the device's key: allow for it


class SimDevice(NamedTuple):
    name: str
    port: str
    device_id: str | None     # None: it did not answer in time
    image: str


def device_id(dev: VirtualDevice) -> str | None:
    """The id the device reports for its own key (HELLO, once it has booted); None if it
    did not answer in time."""
    try:
        return provision.wait_ready(dev, ID_TIMEOUT_S, poll_s=0.1).device_id
    except (HashtrailError, OSError):
        return None


def make_fleet(directory: str | os.PathLike[str], devices: int, *, board: str = "unix",
               log: bool = False) -> Fleet:
    """`devices` virtual devices dev0..devN-1 whose flash images live in `directory`
    (refused when it is a file); nothing runs yet."""
    if devices < 1:
        raise ConfigError("--devices must be at least 1")
    userfile.check_dir(directory, "a folder for the devices' flash images")
    return Fleet(Path(directory), devices, board=board, log=log)


def start(fleet: Fleet, fresh: bool = False) -> list[SimDevice]:
    """Start every device (after re-flashing each image with the current firmware when
    `fresh`: that erases device data) and wait for each to report its id."""
    if fresh:
        fleet.dir.mkdir(parents=True, exist_ok=True)
        for d in fleet.devices:
            d.write_image()
    fleet.start()
    return [SimDevice(d.name, d.port, device_id(d), str(d.image_path)) for d in fleet.devices]
