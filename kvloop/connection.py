"""One client connection as the event loop sees it: its socket and transport, input framing,
output buffers, session, and an explicit state.

States: ``HANDSHAKING`` (TLS only: nothing is read as requests yet) -> ``OPEN`` (its lines are
read and run) -> ``CLOSING`` (nothing more is read or run; its last replies go out) ->
``CLOSED``. The loop (:mod:`kvloop.server`) moves it between them; this module only answers
what the connection needs next.
"""

from __future__ import annotations

import selectors
import socket

from .protocol import LineReader
from .session import Session
from .timers import TimerHandle
from .transport import PlainTransport, TlsTransport

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE

# The states (compared by identity: ``conn.state is OPEN``).
HANDSHAKING = "handshaking"
OPEN = "open"
CLOSING = "closing"
CLOSED = "closed"


class Connection:
    """One client socket with its transport, input framing, output buffer and session.

    ``state`` is HANDSHAKING, OPEN, CLOSING or CLOSED (see the module's docstring).
    ``recv``/``send`` are the transport's (for plain TCP, the socket's own methods).
    ``out`` holds bytes safe to send; ``held`` the replies of this loop turn that wait for the
    log's group commit (they move to ``out``, or become errors if the log fails).
    ``counted`` is what it last counted toward the client buffer budget; ``active_at`` the
    loop turn of its last event; ``timer`` its handshake or idle timer, ``hold_timer`` the
    end of its AUTH delay. ``refused``: over --max-clients on a TLS port; it gets its LIMIT
    line once its handshake is done.
    """

    __slots__ = ("sock", "transport", "recv", "send", "peer", "reader", "out", "held",
                 "session", "events", "state", "counted", "active_at", "timer", "hold_timer",
                 "refused")

    def __init__(self, sock: socket.socket, transport: PlainTransport | TlsTransport,
                 peer: str, reader: LineReader, session: Session) -> None:
        self.sock = sock
        self.transport = transport
        self.recv = transport.recv
        self.send = transport.send
        self.peer = peer
        self.reader = reader
        self.out = bytearray()
        self.held: list[bytes] = []
        self.session = session
        self.events = READ
        self.state = HANDSHAKING if transport.handshaking else OPEN
        self.counted = 0
        self.active_at = 0.0
        self.timer: TimerHandle | None = None
        self.hold_timer: TimerHandle | None = None
        self.refused = False

    def runnable(self) -> bool:
        """True when lines it sent are waiting and may run now (not closing, not held by an
        AUTH delay)."""
        session = self.session
        return (self.reader.has_lines() and not session.closing
                and session.hold_until is None and self.state is OPEN)

    def settled(self) -> bool:
        """True when it only waits for its next request: OPEN, nothing to send, nothing
        received but not yet run, not closing or held (so it needs READ events, and only
        those: :meth:`next_events` would say READ)."""
        session = self.session
        return (self.state is OPEN and not self.out and self.reader.idle()
                and not session.closing and session.hold_until is None
                and not self.transport.pending and not self.transport.buffered_input)

    def next_events(self) -> int:
        """The selector events this connection needs now, or -1 when nothing more will be
        read or answered (time to close). Writable while output is pending; readable while
        every line received so far has been run and nothing holds it back."""
        session, reader = self.session, self.reader
        if self.out or self.transport.pending:
            events = WRITE
        elif (self.state is CLOSING or session.closing
              or (reader.finished and not reader.has_lines())):
            return -1
        else:
            events = 0
        if self.state is HANDSHAKING:
            return events | READ
        if not (session.closing or session.hold_until is not None or reader.has_lines()
                or reader.finished or self.state is not OPEN):
            events |= READ
        return events
