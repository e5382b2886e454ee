"""Several virtual devices in one folder, started and stopped together."""

from __future__ import annotations

from pathlib import Path

from hashtrail.sim.device import VirtualDevice


class Fleet:
    """Devices `dev0`..`dev{count-1}` whose images live in `directory`."""

    def __init__(self, directory: Path | str, count: int = 1, board: str = "unix",
                 prefix: str = "dev", log: bool = False) -> None:
        self.dir = Path(directory)
        self.devices = [VirtualDevice(self.dir, f"{prefix}{i}", board, log=log)
                        for i in range(count)]

    def start(self) -> Fleet:
        try:
            for d in self.devices:
                d.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for d in self.devices:
            d.stop()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
