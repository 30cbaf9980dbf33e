"""A kvloop server with faults injected for tests/test_faults.py; run like ``server.py``.

It wraps the PUT, GET and DEL handlers in the command table so that a command on the key
``boom`` raises RuntimeError before doing anything, as a bug in a handler would; and it makes
the line framing raise for bytes holding ``CRASH-CONNECTION``, as a bug in the network layer
would. The production code has no debug hooks: the faults live only in this test script.
"""

from __future__ import annotations

import sys

from kvloop import commands, protocol
from kvloop.server import main
from kvloop.session import Session

FAULT_KEY = "boom"
FRAMING_FAULT = b"CRASH-CONNECTION"
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
    """Replace the faulty verbs' handlers in kvloop's command table, and the line framing."""
    for verb in FAULTY_VERBS:
        commands.COMMANDS[verb] = _faulty(verb, commands.COMMANDS[verb])
    feed = protocol.LineReader.feed

    def faulty_feed(reader: protocol.LineReader, data: bytes) -> None:
        if FRAMING_FAULT in data:
            raise RuntimeError("injected fault in the line framing")
        feed(reader, data)

    protocol.LineReader.feed = faulty_feed


if __name__ == "__main__":
    install_faults()
    sys.exit(main())
