#!/usr/bin/env python3
"""Start the kvloop server from a checkout, with nothing installed: ``python server.py --help``."""

import sys

from kvloop.server import main

if __name__ == "__main__":
    sys.exit(main())
