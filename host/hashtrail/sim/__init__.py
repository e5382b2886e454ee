"""Virtual devices: the real firmware under the MicroPython unix port.

Python API (used by `hashtrail sim`, the demo and end-to-end tests)::

    from hashtrail.sim import VirtualDevice, Fleet

    dev = VirtualDevice(directory, "dev0")   # board "unix" (boards/unix.json)
    dev.start()          # power on; creates directory/dev0.lfs on first start
    dev.port             # pseudo-terminal path, stable for the object's lifetime:
                         # open it with pyserial, mpremote or `hashtrail collect`
    dev.image_path       # the littlefs image: the device's flash, kept between runs
    dev.power_cut()      # kill -9: uncommitted writes are lost, as on a board
    dev.start()          # boot again after a power cut (reset cause "power_on")
    dev.restart()        # hard reset (reset cause "hard")
    dev.stop()           # power off and close the port (the image stays)
    dev.write_image()    # re-flash: a fresh image with the current firmware

    with Fleet(directory, count=3) as fleet:   # devices dev0..dev2
        for d in fleet.devices: print(d.name, d.port)

The console behaves like a board's USB serial port: boot output, then main.py; Ctrl-C
(0x03) interrupts it into the friendly REPL; the raw REPL (Ctrl-A, raw-paste mode
included) makes stock `mpremote` work; Ctrl-D at an empty prompt is a soft reset
(boot.py and main.py run again in a fresh VM, reset cause "soft").
How it works, and what "Ctrl-C" means exactly: see `device.py`. Linux or macOS only
(pseudo-terminals); the Ctrl-C gate reads /proc on Linux.
"""

from __future__ import annotations

from hashtrail.sim.device import VirtualDevice
from hashtrail.sim.fleet import Fleet

__all__ = ["Fleet", "VirtualDevice"]
