"""``server.py`` with AUTH delays shrunk to milliseconds, for tests/test_security_server.py.

The policy (how many failures are free, how the delay grows, when the connection closes) is
the production one; only the seconds are scaled down so a test can reach the closing limit
in well under a second. The production code has no such hook: it lives only in this script.
"""

from __future__ import annotations

import sys

from kvloop import limits
from kvloop.server import main

limits.AUTH_FIRST_DELAY_SECONDS = 0.01
limits.AUTH_MAX_DELAY_SECONDS = 0.04

if __name__ == "__main__":
    sys.exit(main())
