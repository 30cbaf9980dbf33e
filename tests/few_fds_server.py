"""``server.py`` with a small file-descriptor limit, for tests/test_accept_backoff.py.

The limit comes from the environment variable KVLOOP_TEST_NOFILE; it is set in-process with
``resource.setrlimit`` before the server starts, as ``ulimit -n`` would.
"""

from __future__ import annotations

import os
import resource
import sys

from kvloop.server import main

if __name__ == "__main__":
    limit = int(os.environ["KVLOOP_TEST_NOFILE"])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    sys.exit(main())
