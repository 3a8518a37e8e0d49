"""`python -m servers.simulator --count N --base-port P`: see runner.py."""

from __future__ import annotations

import sys

from servers.simulator.runner import main

if __name__ == "__main__":
    sys.exit(main())
