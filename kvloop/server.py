"""The network shell: one thread, one ``selectors`` loop, non-blocking sockets.

It only moves bytes. Each connection's bytes pass through its transport
(:mod:`kvloop.transport`: plain, or TLS) into its :class:`~kvloop.protocol.LineReader`; every
complete line is run by the :class:`~kvloop.commands.CommandExecutor` and its reply appended
to the connection's output buffer. Replies are sent once per loop turn, after every event of
the turn has been handled: that is where the write-ahead log's group commit syncs
(:mod:`kvloop.wal`), before any reply leaves, and it gives pipelining clients one ``send`` for
a whole batch of replies. Replies made while commits wait for that sync are *held* apart from
the bytes already safe to send.

A connection (:mod:`kvloop.connection`) is in one of four states: ``HANDSHAKING`` (TLS only:
nothing is read as requests yet), ``OPEN`` (its lines are read and run), ``CLOSING`` (nothing
more is read or run; its last replies go out, then it closes) and ``CLOSED``.

Fairness: one loop turn runs about ``TURN_LINES`` lines, shared between the connections busy
in it; a connection's lines past its share wait for the next turn, when every other connection
gets its share too. A client that does not read
its replies is paused: once its output buffer passes ``OUTPUT_PAUSE_BYTES`` its remaining
lines wait and the server stops reading from it, until the buffer drains below
``OUTPUT_RESUME_BYTES``. The bytes held for all clients are kept under
``--client-buffer-budget`` (:mod:`kvloop.connlimits`); timers (:mod:`kvloop.timers`) close
handshakes and idle connections that take too long and end AUTH delays.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import selectors
import signal
import socket
import ssl
import sys
import time

from . import connlimits
from .commands import CommandExecutor
from .config import Settings, format_address, parse_settings
from .connection import CLOSED, CLOSING, HANDSHAKING, OPEN, READ, WRITE, Connection
from .connlimits import BufferBudget
from .datafiles import DataDirError
from .protocol import LineReader
from .store import Store
from .timers import TimerHandle, Timers
from .transport import PlainTransport, TlsTransport, server_context, tune_socket
from .wal import open_persistence, unacknowledged_reply

log = logging.getLogger("kvloop.server")

# 64 KiB per recv: larger buffers were measured 2.5-4x slower in fresh CPython processes
# (shared/PERF-NOTES.md), and it bounds how many lines one read can queue.
READ_SIZE = 64 * 1024
# A client whose unread replies pass this is paused until they drain below the resume mark.
OUTPUT_PAUSE_BYTES = 256 * 1024
OUTPUT_RESUME_BYTES = 64 * 1024
# Lines run per loop turn, shared out between the connections busy in that turn (each gets at
# least TURN_MIN_SHARE); a connection's lines past its share wait for the next turn. So a turn,
# and with it the wait of a client that just sent a command, stays around TURN_LINES commands
# long however many clients pipeline without reading, while one client alone runs them all.
TURN_LINES = 512
TURN_MIN_SHARE = 4
# A read of at most this many whole lines runs whole, even past the connection's share: a
# client's pipelined batch is answered in one turn and one send (split over two turns, each
# half costs a whole event's bookkeeping), while a long backlog is still cut into shares.
TURN_WHOLE_READ_LINES = 16
# TLS clients over --max-clients that may be mid-handshake at once to be told so (past it they
# are closed without a word): each costs a descriptor until its handshake or its time limit.
TLS_REFUSALS_MAX = 64
# How many connections one listener event may accept, so a connect storm cannot starve
# the clients already connected.
ACCEPT_BATCH = 64
LISTEN_BACKLOG = 1024
# After accept() fails (out of file descriptors), how long before trying again.
ACCEPT_BACKOFF_SECONDS = 0.1
# Descriptors the server needs besides its clients' (listener, wake-up pair, log files...).
DESCRIPTORS_RESERVED = 32
# On SIGTERM/SIGINT, how long to keep sending replies already made before closing anyway.
SHUTDOWN_FLUSH_SECONDS = 5.0
# After QUIT the server reads and discards what the client still sends, for at most this long,
# before closing: closing a socket with unread input makes the kernel send a reset, which can
# destroy replies the client has not read yet.
LINGER_SECONDS = 2.0

class Server:
    """A kvloop server: listens, runs clients' commands, and stops cleanly on request."""

    def __init__(self, settings: Settings, executor: CommandExecutor | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.executor = executor if executor is not None else CommandExecutor(settings)
        self.persistence = self.executor.persistence
        self._tls = tls
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._connections: set[Connection] = set()
        self._dirty: list[Connection] = []
        # Connections with work that needs no socket event: lines left over from an earlier
        # turn, or buffered input. Run next turn (an ordered set: each once per turn).
        self._ready: dict[Connection, None] = {}
        # Sockets closed for writing after QUIT, drained until EOF or their deadline.
        self._lingering: dict[socket.socket, TimerHandle] = {}
        self._timers = Timers()
        self._budget = BufferBudget(settings.client_buffer_budget)
        # The current loop turn's time (kept only while --idle-timeout or a transaction
        # deadline needs it).
        self._now = time.monotonic()
        self._share = TURN_LINES  # lines one connection may run this turn
        self._accept_failures = 0  # in the current accept backoff episode
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
        timers = self._timers
        clock = time.monotonic
        executor = self.executor
        next_deadline = executor.next_deadline  # --txn-timeout's (the command layer's)
        # The turn's time is only needed to see idle connections and transaction deadlines.
        watch_idle = self.settings.idle_timeout > 0
        self._maintain_persistence()
        while not self._stopping:
            timeout = 0 if self._ready else timers.timeout()
            txn_deadline = next_deadline()
            if txn_deadline is not None:
                wait = max(0.0, txn_deadline - clock())
                timeout = wait if timeout is None else min(timeout, wait)
            events = select(timeout)
            if watch_idle or txn_deadline is not None:
                self._now = clock()
            busy = len(events) + len(self._ready) if self._ready else len(events)
            self._share = (TURN_LINES // busy if busy * TURN_MIN_SHARE < TURN_LINES
                           else TURN_MIN_SHARE) if busy else TURN_LINES
            for key, mask in events:
                target = key.data
                if isinstance(target, Connection):
                    self._on_event(target, mask)
                else:
                    target()
            if self._ready:
                self._run_ready()
            if txn_deadline is not None and txn_deadline <= self._now:
                executor.expire(self._now)
            self._flush_dirty()
            timers.run_due()
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
            self._set_events(conn, WRITE if conn.out or conn.transport.pending else 0)
        deadline = time.monotonic() + SHUTDOWN_FLUSH_SECONDS
        while time.monotonic() < deadline:
            pending = [c for c in self._connections
                       if c.out or c.transport.pending or c.runnable()]
            if not pending:
                break
            for conn in pending:
                if not conn.out:
                    self._run_lines(conn)
            self._release_held(pending)
            for conn in pending:
                self._set_events(conn, WRITE if conn.out or conn.transport.pending else 0)
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

    # -- accepting -----------------------------------------------------------------------

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
                self._pause_accepting(exc)
                return
            if self._accept_failures:
                log.info("accepting connections again (accept failed %d times meanwhile)",
                         self._accept_failures)
                self._accept_failures = 0
            peer = format_address(addr[0], addr[1])
            try:
                tune_socket(sock, self.settings.tcp_keepalive)
            except OSError as exc:  # the peer may already have reset the connection
                log.debug("dropping a connection from %s: %s", peer, exc)
                sock.close()
                continue
            over = len(self._connections) - self.settings.max_clients
            if over >= 0 and (self._tls is None or over >= TLS_REFUSALS_MAX):
                self._refuse(sock, peer)
                continue
            conn = self._open_connection(sock, peer)
            conn.refused = over >= 0  # TLS: told after its handshake, then closed

    def _pause_accepting(self, exc: OSError) -> None:
        """Stop watching the listener for a moment instead of spinning (and logging) on a
        listener that stays readable until a descriptor frees up. Logged once per episode."""
        self._accept_failures += 1
        if self._accept_failures == 1:
            log.warning("accept failed: %s; pausing new connections for %.1f s at a time "
                        "until it works again", exc, ACCEPT_BACKOFF_SECONDS)
        self._selector.unregister(self._listener)
        self._timers.call_later(ACCEPT_BACKOFF_SECONDS, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self._listener is not None and not self._stopping:
            self._selector.register(self._listener, READ, self._accept)

    def _refuse(self, sock: socket.socket, peer: str) -> None:
        """Over --max-clients: one LIMIT line, then close. (Over TLS the line needs a
        handshake first: see ``Connection.refused``; past TLS_REFUSALS_MAX of those at once,
        extra TLS clients are just closed.)"""
        log.warning("refusing client %s: already %d connections (--max-clients)",
                    peer, len(self._connections))
        with contextlib.suppress(OSError):
            if self._tls is None:
                sock.send(connlimits.too_many_clients(self.settings.max_clients))
            sock.shutdown(socket.SHUT_WR)
        sock.close()

    def _open_connection(self, sock: socket.socket, peer: str) -> Connection:
        transport = PlainTransport(sock) if self._tls is None else TlsTransport(sock, self._tls)
        session = self.executor.open_session(peer)
        conn = Connection(sock, transport, peer, LineReader(self.settings.max_line_bytes),
                          session)
        conn.active_at = self._now
        self._connections.add(conn)
        self._selector.register(sock, READ, conn)
        if conn.state is HANDSHAKING:
            conn.timer = self._timers.call_later(
                self.settings.handshake_timeout,
                functools.partial(self._handshake_expired, conn))
        else:
            self._start_idle_timer(conn)
            # Most clients send their first command at once: read it now rather than a whole
            # loop turn later (when nothing came yet this costs one failed recv).
            self._on_event(conn, READ)
        log.debug("client %s connected (session %d)", peer, session.session_id)
        return conn

    # -- events --------------------------------------------------------------------------

    def _on_event(self, conn: Connection, mask: int) -> None:
        conn.active_at = self._now
        try:
            if mask & WRITE:
                self._send(conn)
            if conn.events & READ and mask & READ:
                if conn.state is OPEN:
                    self._receive(conn)
                else:
                    self._handshake(conn)
            elif len(conn.out) < OUTPUT_RESUME_BYTES and conn.runnable():
                self._run_lines(conn)
        except Exception:
            log.exception("unexpected error serving client %s; closing its connection", conn.peer)
            self._close(conn)
            return
        self._dirty.append(conn)

    def _run_ready(self) -> None:
        ready, self._ready = self._ready, {}
        for conn in ready:
            if conn.state is not CLOSED:
                self._on_event(conn, READ if conn.transport.buffered_input else 0)

    def _receive(self, conn: Connection) -> None:
        try:
            data = conn.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("client %s: receive failed: %s", conn.peer, exc)
            conn.reader.finish()
            conn.session.closing = True
            return
        lines = None
        if data:
            lines = conn.reader.take_whole(data)
            if lines is None:
                conn.reader.feed(data)
        else:
            conn.reader.finish()
        self._run_lines(conn, lines)

    def _run_lines(self, conn: Connection, lines: list[bytes] | None = None) -> None:
        """Run the connection's complete lines in order (``lines`` first, if given: they came
        whole from one read): at most its share of this turn, and only until its output
        passes the pause mark or a line holds it (AUTH delay)."""
        execute_lines = self.executor.execute_lines
        persistence = self.persistence
        session, reader, out, held = conn.session, conn.reader, conn.out, conn.held
        held_bytes = sum(map(len, held)) if held else 0
        budget = self._share
        if lines is not None and budget < len(lines) <= TURN_WHOLE_READ_LINES:
            budget = len(lines)
        replies: list[bytes] = []
        while True:
            room = OUTPUT_PAUSE_BYTES - len(out) - held_bytes
            if room <= 0 or session.closing or session.hold_until is not None:
                if lines:
                    reader.unread(lines)
                break
            if lines is None:
                lines = reader.take_lines(budget)
                if not lines:
                    break
            elif len(lines) > budget:
                reader.unread(lines[budget:])
                del lines[budget:]
            was_pending = persistence.pending
            ran = execute_lines(session, lines, replies, room)
            budget -= ran
            if was_pending:  # a commit of this turn is not durable yet: its sync comes first
                held += replies
                held_bytes += sum(map(len, replies))
            elif persistence.pending:  # the last line committed: its reply waits for the sync
                held.append(replies.pop())
                held_bytes += len(held[-1])
                out += b"".join(replies)
            else:
                out += b"".join(replies)
            replies.clear()
            if ran == len(lines):
                break  # all it had, or its whole share
            reader.unread(lines[ran:])  # stopped early: see why at the top
            lines = None
        if session.hold_until is not None:
            self._hold(conn)
        elif not budget and reader.has_lines():
            self._ready[conn] = None  # the rest next turn, after everyone else's share

    def _handshake(self, conn: Connection) -> None:
        """Advance a TLS handshake; once complete the connection is OPEN (and may have sent
        its first requests along with the handshake's last message)."""
        try:
            done = conn.transport.handshake()
        except OSError as exc:  # not TLS (a plaintext client), bad certificate, reset
            log.debug("client %s: TLS handshake failed: %s", conn.peer, exc)
            self._close(conn, notify=False)
            return
        if done:
            conn.state = OPEN
            conn.timer.cancel()
            if conn.refused:
                log.warning("refusing client %s: already %d connections (--max-clients)",
                            conn.peer, len(self._connections) - 1)
                self._close_with(conn, connlimits.too_many_clients(self.settings.max_clients))
                return
            self._start_idle_timer(conn)
            self._receive(conn)

    def _handshake_expired(self, conn: Connection) -> None:
        if conn.state is HANDSHAKING:
            log.debug("client %s: no TLS handshake within %g s (--handshake-timeout)",
                      conn.peer, self.settings.handshake_timeout)
            self._close(conn, notify=False)

    # -- timers: idle connections, AUTH delays --------------------------------------------

    def _start_idle_timer(self, conn: Connection) -> None:
        if self.settings.idle_timeout > 0:
            conn.timer = self._timers.call_at(conn.active_at + self.settings.idle_timeout,
                                              functools.partial(self._check_idle, conn))

    def _check_idle(self, conn: Connection) -> None:
        """The idle deadline passed: close the connection if nothing happened on it since,
        else look again at its new deadline (one timer per connection, whatever its traffic)."""
        if conn.state is CLOSED:
            return
        idle_timeout = self.settings.idle_timeout
        deadline = conn.active_at + idle_timeout
        if deadline > time.monotonic():
            conn.timer = self._timers.call_at(deadline, functools.partial(self._check_idle, conn))
            return
        log.info("closing client %s: idle for %g s (--idle-timeout)", conn.peer, idle_timeout)
        self._close_with(conn, connlimits.idle_too_long(idle_timeout))

    def _hold(self, conn: Connection) -> None:
        """A failed AUTH asked for a pause: run nothing more of this connection and read
        nothing from it until ``session.hold_until``; a timer resumes it."""
        until = conn.session.hold_until
        if until <= time.monotonic():
            self._resume_held(conn)
            return
        if conn.hold_timer is None or not conn.hold_timer.active:
            conn.hold_timer = self._timers.call_at(
                until, functools.partial(self._resume_held, conn))

    def _resume_held(self, conn: Connection) -> None:
        if conn.state is CLOSED:
            return
        conn.session.hold_until = None
        self._ready[conn] = None
        self._dirty.append(conn)  # its events change: it may read again

    # -- output --------------------------------------------------------------------------

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._release_held(dirty)
        budget = self._budget
        for conn in dirty:
            if conn.state is CLOSED:
                continue
            try:
                out = conn.out
                if out:
                    self._send(conn)
                if not conn.counted and conn.events == READ and conn.settled():
                    continue  # the common case: it waits for its next request, as it did
                counted = len(out) + conn.reader.held_bytes()
                budget.total += counted - conn.counted
                conn.counted = counted
                events = conn.next_events()
                if events < 0:
                    self._close(conn, linger=not conn.reader.finished)
                    continue
                if events != conn.events:
                    self._set_events(conn, events)
                if not out and conn.runnable():
                    self._ready[conn] = None  # paused, and its replies all went out
                elif events & READ and conn.transport.buffered_input:
                    self._ready[conn] = None  # TLS: an end of stream came with the last data
            except Exception:
                log.exception("unexpected error sending to client %s; closing its connection",
                              conn.peer)
                self._close(conn)
        if budget.total > budget.limit:
            self._enforce_budget()

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

    def _enforce_budget(self) -> None:
        """Disconnect the biggest clients until the buffers are back under the budget."""
        budget = self._budget
        while budget.total > budget.limit and self._connections:
            biggest = max(self._connections, key=lambda c: c.counted)
            if biggest.counted == 0:
                break
            log.warning("closing client %s: it holds %d bytes and all clients' buffers passed "
                        "--client-buffer-budget (%d bytes)", biggest.peer, biggest.counted,
                        budget.limit)
            self._close_with(biggest, connlimits.over_buffer_budget(budget.limit, biggest.counted))

    def _close_with(self, conn: Connection, line: bytes) -> None:
        """Close at once, after a best-effort try at sending ``line`` (a LIMIT error) in place
        of whatever output was waiting."""
        conn.state = CLOSING
        conn.out[:] = line
        with contextlib.suppress(Exception):
            self._send(conn)
        self._close(conn)

    def _send(self, conn: Connection) -> None:
        out = conn.out
        if not out and not conn.transport.pending:
            return
        try:
            sent = conn.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("client %s: send failed: %s", conn.peer, exc)
            out.clear()
            conn.session.closing = True
            conn.state = CLOSING
            return
        del out[:sent]

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

    # -- closing -------------------------------------------------------------------------

    def _close(self, conn: Connection, linger: bool = False, notify: bool = True) -> None:
        """Forget the connection, roll back its transaction, and close (or linger) its socket.

        ``notify``: tell a TLS peer (close_notify); not after a failed handshake, when the
        peer gets nothing at all.
        """
        if conn.state is CLOSED:
            return
        conn.state = CLOSED
        self._connections.discard(conn)
        self._budget.total -= conn.counted
        conn.counted = 0
        for timer in (conn.timer, conn.hold_timer):
            if timer is not None:
                timer.cancel()
        try:
            self.executor.close_session(conn.session)
        except Exception:
            log.exception("unexpected error closing the session of client %s", conn.peer)
        finally:
            log.debug("client %s disconnected", conn.peer)
            if notify:
                with contextlib.suppress(Exception):
                    conn.transport.close_notify()
            if linger and not self._stopping:
                self._linger(conn)
            else:
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
        self._lingering[sock] = self._timers.call_later(
            LINGER_SECONDS, functools.partial(self._end_linger, sock))
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
        timer = self._lingering.pop(sock, None)
        if timer is None:
            return
        timer.cancel()
        self._selector.unregister(sock)
        sock.close()


def configure_logging(level: str) -> None:
    """One line per event on stderr, with time, level and source."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def warn_if_descriptors_short(max_clients: int) -> None:
    """Warn when the process may open fewer descriptors than --max-clients needs (plus a few
    for the listener, the log and the data files): past that, accepting pauses instead."""
    try:
        import resource  # POSIX only
    except ImportError:
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < max_clients + DESCRIPTORS_RESERVED:
        log.warning("the descriptor limit (ulimit -n) is %d, below --max-clients %d plus %d: "
                    "past about %d clients new connections wait in the backlog; raise it or "
                    "lower --max-clients", soft, max_clients, DESCRIPTORS_RESERVED,
                    max(0, soft - DESCRIPTORS_RESERVED))


def main(argv: list[str] | None = None) -> int:
    """Run the server from the command line; returns the exit status."""
    settings = parse_settings(argv)
    configure_logging(settings.log_level)
    tls = None
    if settings.tls_cert:
        try:
            tls = server_context(settings.tls_cert, settings.tls_key, settings.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            log.error("cannot set up TLS (--tls-cert %s, --tls-key %s%s): %s",
                      settings.tls_cert, settings.tls_key,
                      f", --tls-ca {settings.tls_ca}" if settings.tls_ca else "", exc)
            return 1
    store = Store()
    try:
        persistence = open_persistence(settings, store)
    except DataDirError as exc:
        log.error("%s", exc)
        return 1
    server = Server(settings, CommandExecutor(settings, store, persistence=persistence), tls=tls)
    try:
        address = server.listen()
    except OSError as exc:
        log.error("cannot listen on %s: %s", format_address(settings.host, settings.port),
                  exc.strerror or exc)
        persistence.close()
        return 1
    server.install_signal_handlers()
    log.info("listening on %s (%s)", address, settings.describe())
    warn_if_descriptors_short(settings.max_clients)
    server.serve_forever()
    return 0
