"""`python -m hashtrail.cli`: the command line, as the `hashtrail` script runs it."""

import sys

from hashtrail.cli import main

sys.exit(main())
