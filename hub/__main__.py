"""python -m hub: run the service (``cartsnitch-hub serve``)."""

import sys

from hub.cli import main

raise SystemExit(main(sys.argv[1:] or ["serve"]))
