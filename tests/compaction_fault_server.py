"""A kvloop server that freezes at one point of compaction, for tests/test_compaction.py.

Run like ``server.py``, with ``$KVLOOP_STOP_AT`` naming the point and ``$KVLOOP_STOP_MARKER``
a file to create there (holding the pid of the process that froze). The test then kills the
server (and the compaction child) with SIGKILL, as a crash at that moment would. Points:

- ``child-writing``: the child has written part of the snapshot's temp file;
- ``before-rename``: the temp file is complete and fsynced, not yet renamed;
- ``after-rename``: renamed into place, the folder not yet fsynced;
- ``removing-segments``: the parent has removed the first old file after the snapshot.

The production code has no such hook: the freezes are patched in here, in the test script only.
"""

from __future__ import annotations

import os
import sys
import time

from kvloop import logformat
from kvloop.datafiles import DataFolder
from kvloop.server import main

STOP_AT = os.environ.get("KVLOOP_STOP_AT", "")
MARKER = os.environ.get("KVLOOP_STOP_MARKER", "")


def freeze() -> None:
    """Say where we are (and who), then wait to be killed."""
    with open(MARKER + ".tmp-marker", "w") as f:
        f.write(str(os.getpid()))
    os.rename(MARKER + ".tmp-marker", MARKER)
    while True:
        time.sleep(60)


def install() -> None:
    """Patch the freeze in at ``STOP_AT``."""
    if STOP_AT == "child-writing":
        encode = logformat.encode_snapshot

        def partial(*args, **kwargs):
            for number, piece in enumerate(encode(*args, **kwargs)):
                yield piece
                if number == 1:
                    freeze()

        logformat.encode_snapshot = partial
    elif STOP_AT in ("before-rename", "after-rename"):
        def publish(folder, temp, final):
            if STOP_AT == "after-rename":
                os.replace(temp, final)
            freeze()

        DataFolder.publish_snapshot = publish
    elif STOP_AT == "removing-segments":
        remove = DataFolder.remove_file

        def remove_then_freeze(folder, name):
            remove(folder, name)
            freeze()

        DataFolder.remove_file = remove_then_freeze


if __name__ == "__main__":
    install()
    sys.exit(main())
