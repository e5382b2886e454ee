"""Talking to boards: the board definitions, the serial link and its protocol, building
filesystem images, flashing, deploying, running the firmware toolchain, and checking
which devices answer.

Why: everything that needs a port or a board file is here, so the layers above see
devices only through the link.
"""
