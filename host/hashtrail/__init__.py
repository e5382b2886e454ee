"""hashtrail: tamper-evident telemetry for ESP32 fleets (host side).

Every module reports to the user through `logging.getLogger(__name__)`, under the
`hashtrail` logger. A library prints nothing its caller did not ask for, so that logger
gets a NullHandler here (Python's logging HOWTO, "Configuring Logging for a Library"):
a Python caller sees the lines once it configures logging; the `hashtrail` command
shows them on stderr (hashtrail.cli.logs).
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
