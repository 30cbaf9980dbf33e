"""``server.py`` with a test-only way to ask the loop for a pause, for tests/test_limits.py.

``PING hold`` sets ``session.hold_until`` half a second ahead, as a failed AUTH does: the
loop must run none of that client's next lines until then, without blocking anyone else.
The production code has no such hook: it lives only in this test script.
"""

from __future__ import annotations

import sys
import time

from kvloop import commands
from kvloop.server import main
from kvloop.session import Session

HOLD_SECONDS = 0.5


def install_hold() -> None:
    """Make ``PING hold`` set a hold on its session."""
    ping = commands.COMMANDS["PING"]

    def holding_ping(db: commands.CommandExecutor, session: Session, rest: str) -> bytes:
        if rest == "hold":
            session.hold_until = time.monotonic() + HOLD_SECONDS
        return ping(db, session, rest)

    commands.COMMANDS["PING"] = holding_ping


if __name__ == "__main__":
    install_hold()
    sys.exit(main())
