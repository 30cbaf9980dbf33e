#!/usr/bin/env python3
"""Talk to a kvloop server from a checkout, with nothing installed: ``python client.py --help``."""

import sys

from kvloop.cli import main

if __name__ == "__main__":
    sys.exit(main())
