"""The network shell: one thread, one ``selectors`` loop, non-blocking sockets.

It only moves bytes. Each readable socket's bytes go into its connection's
:class:`~kvloop.protocol.LineReader`; every complete line is run by the
:class:`~kvloop.commands.CommandExecutor` and its reply appended to the connection's output
buffer. Replies are sent once per loop turn, after every event of the turn has been handled:
that is where the write-ahead log's group commit syncs (:mod:`kvloop.wal`), before any reply
leaves, and it gives pipelining clients one ``send`` for a whole batch of replies. Replies made
while commits wait for that sync are *held* apart from the bytes already safe to send.

A client that does not read its replies is paused: once its output buffer passes
``OUTPUT_PAUSE_BYTES`` its remaining lines wait and the server stops reading from it, until
the buffer drains below ``OUTPUT_RESUME_BYTES``.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import selectors
import signal
import socket
import sys
import time
from typing import Callable

from .commands import CommandExecutor
from .config import Settings, format_address, parse_settings
from .datafiles import DataDirError
from .protocol import LineReader
from .session import Session
from .store import Store
from .wal import open_persistence, unacknowledged_reply

log = logging.getLogger("kvloop.server")

# 64 KiB per recv: larger buffers were measured 2.5-4x slower in fresh CPython processes
# (shared/PERF-NOTES.md), and it bounds how many lines one read can queue.
READ_SIZE = 64 * 1024
# A client whose unread replies pass this is paused until they drain below the resume mark.
OUTPUT_PAUSE_BYTES = 1024 * 1024
OUTPUT_RESUME_BYTES = 256 * 1024
# How many connections one listener event may accept, so a connect storm cannot starve
# the clients already connected.
ACCEPT_BATCH = 64
LISTEN_BACKLOG = 1024
# After accept() fails (out of file descriptors), how long before trying again.
ACCEPT_BACKOFF_SECONDS = 0.1
# On SIGTERM/SIGINT, how long to keep sending replies already made before closing anyway.
SHUTDOWN_FLUSH_SECONDS = 5.0
# After QUIT the server reads and discards what the client still sends, for at most this long,
# before closing: closing a socket with unread input makes the kernel send a reset, which can
# destroy replies the client has not read yet.
LINGER_SECONDS = 2.0

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE


class Connection:
    """One client socket with its input framing, output buffer and session.

    ``out`` holds bytes safe to send; ``held`` the replies of this loop turn that wait for the
    log's group commit (they move to ``out``, or become errors if the log fails).
    """

    __slots__ = ("sock", "peer", "reader", "out", "held", "session", "events")

    def __init__(self, sock: socket.socket, peer: str, reader: LineReader,
                 session: Session) -> None:
        self.sock = sock
        self.peer = peer
        self.reader = reader
        self.out = bytearray()
        self.held: list[bytes] = []
        self.session = session
        self.events = READ

    def done(self) -> bool:
        """True when nothing more will be read or answered: time to close."""
        if self.out:
            return False
        if self.session.closing:
            return True
        return self.reader.finished and not self.reader.has_lines()

    def paused(self) -> bool:
        """True while lines it sent wait to run because its replies piled up."""
        return self.reader.has_lines() and not self.session.closing

    def wanted_events(self) -> int:
        """The selector events this connection needs now: writable while output is pending,
        readable while every line received so far has been run."""
        events = WRITE if self.out else 0
        if not (self.session.closing or self.reader.has_lines() or self.reader.finished):
            events |= READ
        return events


class Timers:
    """Callbacks due at a time; the loop sleeps in ``select`` until the nearest is due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._count = 0  # tie-breaker: callbacks themselves are not comparable

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, ``delay`` seconds from now (at the end of a loop turn)."""
        self._count += 1
        heapq.heappush(self._heap, (time.monotonic() + delay, self._count, callback))

    def timeout(self) -> float | None:
        """Seconds until the nearest callback is due (0 if overdue), or ``None`` if none."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def run_due(self) -> None:
        """Run every callback whose time has come."""
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            heapq.heappop(self._heap)[2]()


class Server:
    """A kvloop server: listens, runs clients' commands, and stops cleanly on request."""

    def __init__(self, settings: Settings, executor: CommandExecutor | None = None) -> None:
        self.settings = settings
        self.executor = executor if executor is not None else CommandExecutor(settings)
        self.persistence = self.executor.persistence
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._connections: set[Connection] = set()
        self._dirty: list[Connection] = []
        # Paused connections whose replies all went out: their lines run next loop turn.
        self._resume: list[Connection] = []
        # Sockets closed for writing after QUIT, drained until EOF or their deadline.
        self._lingering: set[socket.socket] = set()
        self._timers = Timers()
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self.address = ""

    # -- lifecycle -----------------------------------------------------------------------

    def listen(self) -> str:
        """Bind and listen; returns ``host:port`` actually bound (``--port 0`` picks one)."""
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, READ, self._accept)
        self._selector.register(self._wake_r, READ, self._on_wakeup)
        bound = listener.getsockname()
        self.address = format_address(host, bound[1])
        return self.address

    def request_stop(self) -> None:
        """Ask the loop to stop; safe to call from a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.request_stop())

    def serve_forever(self) -> None:
        """Run the loop until :meth:`request_stop`, then shut down cleanly."""
        select = self._selector.select
        self._maintain_persistence()
        while not self._stopping:
            for key, mask in select(0 if self._resume else self._timers.timeout()):
                target = key.data
                if isinstance(target, Connection):
                    self._on_event(target, mask)
                else:
                    target()
            if self._resume:
                self._resume_paused()
            self._flush_dirty()
            self._timers.run_due()
        self._shutdown()

    def _shutdown(self) -> None:
        """Stop accepting, answer what was received, send replies, roll back, close."""
        if self._listener is not None:
            with contextlib.suppress(KeyError):  # not registered while accepting is paused
                self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        self._selector.unregister(self._wake_r)
        for sock in list(self._lingering):
            self._end_linger(sock)
        for conn in self._connections:  # nothing more is read: only replies are sent now
            self._set_events(conn, WRITE if conn.out else 0)
        deadline = time.monotonic() + SHUTDOWN_FLUSH_SECONDS
        while time.monotonic() < deadline:
            pending = [c for c in self._connections if c.out or c.paused()]
            if not pending:
                break
            for conn in pending:
                if not conn.out:
                    self._run_lines(conn)
            self._release_held(pending)
            for conn in pending:
                self._set_events(conn, WRITE if conn.out else 0)
            timeout = max(0.0, deadline - time.monotonic())
            for key, _ in self._selector.select(timeout):
                if isinstance(key.data, Connection):
                    self._send(key.data)
        for conn in list(self._connections):
            if conn.session.txn is not None:
                log.info("rolling back the open transaction of client %s", conn.peer)
            self._close(conn)
        self.persistence.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        log.info("stopped")

    # -- events --------------------------------------------------------------------------

    def _on_wakeup(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, and the like
                # The listener stays readable: stop watching it for a moment instead of
                # spinning (and logging) until a descriptor frees up.
                log.warning("accept failed: %s; pausing new connections for %.1f s",
                            exc, ACCEPT_BACKOFF_SECONDS)
                self._selector.unregister(self._listener)
                self._timers.call_later(ACCEPT_BACKOFF_SECONDS, self._resume_accepting)
                return
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # the peer may already have reset the connection
                log.debug("dropping a connection from %s: %s", addr, exc)
                sock.close()
                continue
            peer = format_address(addr[0], addr[1])
            session = self.executor.open_session(peer)
            conn = Connection(sock, peer, LineReader(self.settings.max_line_bytes), session)
            self._connections.add(conn)
            self._selector.register(sock, READ, conn)
            log.debug("client %s connected (session %d)", peer, session.session_id)

    def _resume_accepting(self) -> None:
        if self._listener is not None and not self._stopping:
            self._selector.register(self._listener, READ, self._accept)

    def _on_event(self, conn: Connection, mask: int) -> None:
        try:
            if mask & WRITE:
                self._send(conn)
            if len(conn.out) < OUTPUT_RESUME_BYTES and conn.paused():
                self._run_lines(conn)
            if mask & READ and conn.events & READ:
                self._receive(conn)
        except Exception:
            log.exception("unexpected error serving client %s; closing its connection", conn.peer)
            self._close(conn)
            return
        self._dirty.append(conn)

    def _resume_paused(self) -> None:
        resume, self._resume = self._resume, []
        for conn in resume:
            if conn in self._connections and conn.paused() and not conn.out:
                self._on_event(conn, 0)

    def _receive(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("client %s: receive failed: %s", conn.peer, exc)
            conn.reader.finish()
            conn.session.closing = True
            return
        if data:
            conn.reader.feed(data)
        else:
            conn.reader.finish()
        self._run_lines(conn)

    def _run_lines(self, conn: Connection) -> None:
        """Run the connection's complete lines in order, until its output passes the pause
        mark (the rest wait for the client to read)."""
        execute = self.executor.execute
        persistence = self.persistence
        session, reader, out, held = conn.session, conn.reader, conn.out, conn.held
        held_bytes = sum(map(len, held))
        while not session.closing and len(out) + held_bytes < OUTPUT_PAUSE_BYTES:
            line = reader.next_line()
            if line is None:
                break
            reply = execute(session, line)
            if reply is not None:
                if persistence.pending:  # a commit of this turn is not durable yet
                    held.append(reply)
                    held_bytes += len(reply)
                else:
                    out += reply

    # -- output --------------------------------------------------------------------------

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._release_held(dirty)
        for conn in dirty:
            if conn not in self._connections:
                continue
            try:
                self._send(conn)
                if conn.done():
                    self._close(conn, linger=not conn.reader.finished)
                    continue
                self._set_events(conn, conn.wanted_events())
                if not conn.out and conn.paused():
                    self._resume.append(conn)
            except Exception:
                log.exception("unexpected error sending to client %s; closing its connection",
                              conn.peer)
                self._close(conn)

    def _release_held(self, conns: list[Connection]) -> None:
        """Group commit: make this turn's commits durable, then let their replies out (or, if
        the log failed, answer each held reply with an error instead)."""
        failure = self.persistence.sync()
        for conn in conns:
            if conn.held:
                if failure is None:
                    conn.out += b"".join(conn.held)
                else:
                    conn.out += unacknowledged_reply(failure) * len(conn.held)
                conn.held.clear()

    def _maintain_persistence(self) -> None:
        delay = self.persistence.maintain()
        if delay is not None and not self._stopping:
            self._timers.call_later(delay, self._maintain_persistence)

    def _send(self, conn: Connection) -> None:
        if not conn.out:
            return
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("client %s: send failed: %s", conn.peer, exc)
            conn.out.clear()
            conn.session.closing = True
            return
        del conn.out[:sent]

    def _set_events(self, conn: Connection, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: Connection, linger: bool = False) -> None:
        """Forget the connection, roll back its transaction, and close (or linger) its socket."""
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        self.executor.close_session(conn.session)
        log.debug("client %s disconnected", conn.peer)
        if linger and not self._stopping:
            self._linger(conn)
            return
        self._forget_socket(conn)
        conn.sock.close()

    def _forget_socket(self, conn: Connection) -> None:
        """Stop watching the connection's socket (tolerating a selector already out of step)."""
        if conn.events:
            conn.events = 0
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)

    # -- lingering close after QUIT --------------------------------------------------------

    def _linger(self, conn: Connection) -> None:
        sock = conn.sock
        self._forget_socket(conn)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._lingering.add(sock)
        self._timers.call_later(LINGER_SECONDS, functools.partial(self._end_linger, sock))
        self._selector.register(sock, READ, functools.partial(self._drain, sock))

    def _drain(self, sock: socket.socket) -> None:
        try:
            if sock.recv(READ_SIZE):
                return  # discarded; wait for more, EOF or the deadline
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        if sock not in self._lingering:
            return  # already ended by EOF; this is its deadline passing
        self._lingering.discard(sock)
        self._selector.unregister(sock)
        sock.close()


def configure_logging(level: str) -> None:
    """One line per event on stderr, with time, level and source."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the server from the command line; returns the exit status."""
    settings = parse_settings(argv)
    configure_logging(settings.log_level)
    store = Store()
    try:
        persistence = open_persistence(settings, store)
    except DataDirError as exc:
        log.error("%s", exc)
        return 1
    server = Server(settings, CommandExecutor(settings, store, persistence=persistence))
    try:
        address = server.listen()
    except OSError as exc:
        log.error("cannot listen on %s: %s", format_address(settings.host, settings.port),
                  exc.strerror or exc)
        persistence.close()
        return 1
    server.install_signal_handlers()
    log.info("listening on %s (%s)", address, settings.describe())
    server.serve_forever()
    return 0
