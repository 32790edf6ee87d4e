"""``python -m upgrade_demo``: ``make demo`` (see :mod:`upgrade_demo.command`)."""

import sys

from upgrade_demo.command import main

sys.exit(main(sys.argv[1:]))
