"""A kvloop server with faults injected for tests/test_faults.py; run like ``server.py``.

It wraps the PUT, GET and DEL handlers in the command table, and the store's get, put and
delete, so that a command on the key ``boom`` raises RuntimeError before doing anything, as
a bug in a handler or in the store would; and it makes
the line framing raise for bytes holding ``CRASH-CONNECTION``, as a bug in the network layer
would; and it makes closing the session of a client that sent ``PING FAIL-ON-CLOSE`` raise,
as a bug in the rollback on disconnect would. The production code has no debug hooks: the
faults live only in this test script.
"""

from __future__ import annotations

import sys

from kvloop import commands, protocol
from kvloop.server import main
from kvloop.session import Session
from kvloop.store import Store

FAULT_KEY = "boom"
FRAMING_FAULT = b"CRASH-CONNECTION"
FAULTY_VERBS = ("PUT", "GET", "DEL")
CLOSE_FAULT = "FAIL-ON-CLOSE"


def _faulty(verb: str, handler: commands.Handler) -> commands.Handler:
    """``handler``, except that it raises RuntimeError when its first argument is FAULT_KEY."""

    def run(db: commands.CommandExecutor, session: Session, rest: str) -> bytes:
        words = rest.split(None, 1)
        if words and words[0] == FAULT_KEY:
            raise RuntimeError(f"injected fault in {verb}")
        return handler(db, session, rest)

    return run


def _faulty_store(verb: str, method):
    """``method`` of the Store, except that it raises RuntimeError for FAULT_KEY."""

    def run(store: Store, key: str, *args, **kwargs):
        if key == FAULT_KEY:
            raise RuntimeError(f"injected fault in {verb}")
        return method(store, key, *args, **kwargs)

    return run


def install_faults() -> None:
    """Replace the faulty verbs' handlers in kvloop's command table and the store's reads
    and writes (the plain GET and PUT lines reach the store without the handlers), and the
    line framing."""
    for verb in FAULTY_VERBS:
        commands.COMMANDS[verb] = _faulty(verb, commands.COMMANDS[verb])
    for verb, name in (("GET", "get"), ("PUT", "put"), ("DEL", "delete")):
        setattr(Store, name, _faulty_store(verb, getattr(Store, name)))
    feed, take_whole = protocol.LineReader.feed, protocol.LineReader.take_whole

    def faulty_feed(reader: protocol.LineReader, data: bytes) -> None:
        if FRAMING_FAULT in data:
            raise RuntimeError("injected fault in the line framing")
        feed(reader, data)

    def faulty_take_whole(reader: protocol.LineReader, data: bytes) -> list[bytes] | None:
        if FRAMING_FAULT in data:
            raise RuntimeError("injected fault in the line framing")
        return take_whole(reader, data)

    protocol.LineReader.feed = faulty_feed
    protocol.LineReader.take_whole = faulty_take_whole

    marked: set[int] = set()  # sessions whose closing must fail
    ping = commands.COMMANDS["PING"]

    def marking_ping(db: commands.CommandExecutor, session: Session, rest: str) -> bytes:
        if rest == CLOSE_FAULT:
            marked.add(session.session_id)
        return ping(db, session, rest)

    commands.COMMANDS["PING"] = marking_ping
    close_session = commands.CommandExecutor.close_session

    def faulty_close(db: commands.CommandExecutor, session: Session) -> None:
        close_session(db, session)
        if session.session_id in marked:
            raise RuntimeError("injected fault in close_session")

    commands.CommandExecutor.close_session = faulty_close


if __name__ == "__main__":
    install_faults()
    sys.exit(main())
