"""A kvloop server with faults injected for tests/test_faults.py; run like ``server.py``.

It wraps the PUT, GET and DEL handlers in the command table so that a command on the key
``boom`` raises RuntimeError before doing anything, as a bug in a handler would. The
production code has no debug hooks: the fault lives only in this test script.
"""

from __future__ import annotations

import sys

from kvloop import commands
from kvloop.server import main
from kvloop.session import Session

FAULT_KEY = "boom"
FAULTY_VERBS = ("PUT", "GET", "DEL")


def _faulty(verb: str, handler: commands.Handler) -> commands.Handler:
    """``handler``, except that it raises RuntimeError when its first argument is FAULT_KEY."""

    def run(db: commands.CommandExecutor, session: Session, rest: str) -> bytes:
        words = rest.split(None, 1)
        if words and words[0] == FAULT_KEY:
            raise RuntimeError(f"injected fault in {verb}")
        return handler(db, session, rest)

    return run


def install_faults() -> None:
    """Replace the faulty verbs' handlers in kvloop's command table."""
    for verb in FAULTY_VERBS:
        commands.COMMANDS[verb] = _faulty(verb, commands.COMMANDS[verb])


if __name__ == "__main__":
    install_faults()
    sys.exit(main())
