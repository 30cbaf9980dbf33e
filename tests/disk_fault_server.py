"""A kvloop server whose log writes and fsyncs fail on demand, for tests/test_disk_failure.py.

Run like ``server.py``. While the file named by ``$KVLOOP_DISK_FAULT`` exists, every write
and fsync of a log segment raises ``OSError(EIO)``, as a failing disk would. The production
code has no such hook: the fault is patched in here, in the test script only.
"""

from __future__ import annotations

import errno
import os
import sys

from kvloop.datafiles import Segment
from kvloop.server import main

TRIGGER = os.environ.get("KVLOOP_DISK_FAULT", "")


def _failing(method):
    def run(segment, *args):
        if TRIGGER and os.path.exists(TRIGGER):
            raise OSError(errno.EIO, f"injected disk failure in Segment.{method.__name__}")
        return method(segment, *args)

    return run


if __name__ == "__main__":
    Segment.write = _failing(Segment.write)
    Segment.sync = _failing(Segment.sync)
    sys.exit(main())
