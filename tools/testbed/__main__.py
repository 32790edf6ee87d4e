"""``python -m testbed up|down|status|env``: the local cluster (see :mod:`testbed.cluster`)."""

import sys

from testbed.cluster import main

sys.exit(main(sys.argv[1:]))
