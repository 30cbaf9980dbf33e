"""The Python client API: one :class:`Client` per connection, errors as exceptions with codes.

Blocking sockets, standard library only::

    from kvloop import Client, ConflictError, NotFoundError

    with Client("127.0.0.1", 9999) as db:
        db.put("greeting", "hello world")
        db.get("greeting")                      # -> "hello world"
        with db.transaction(level="serializable"):
            db.put("a", "1")
            db.put("b", "2")                    # both visible at once, or neither
        for key in db.scan("user:"):            # keys in order, a page fetched as needed
            print(key)

A COMMIT has three possible outcomes, and the API keeps them apart:

- **committed**: :meth:`Client.commit` returns the commit's sequence number;
- **rejected**: :class:`ConflictError`; nothing of the transaction was applied (a SERIALIZABLE
  transaction failed validation and the server rolled it back), so it is safe to retry;
- **unknown**: :class:`CommitOutcomeUnknown`; the connection dropped after COMMIT was sent and
  before its reply arrived. The commit may or may not have happened: look before retrying.

This module also owns the client side of the wire: connecting, sending request lines, framing
and parsing reply lines (:func:`parse_reply`), pipelining (:meth:`Client.stream`), and
following from the replies whether a transaction is open. ``cli.py`` builds on it.
"""

from __future__ import annotations

import contextlib
import json
import random
import selectors
import socket
import ssl
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from . import errors
from .config import format_address
from .errors import CommandError
from .protocol import Line, LineReader, find_bad_key_char, parse_line
from .transaction import LEVELS, parse_level
from .transport import client_context

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9999
DEFAULT_TIMEOUT = 10.0
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the certificate
# is trusted but names another host.
_NAME_MISMATCH = (62, 64)
# 64 KiB per recv, as the server does (see shared/PERF-NOTES.md: larger reads were slower).
READ_SIZE = 64 * 1024
# Queue at most this many request bytes ahead of the socket while pipelining, so a huge or
# endless stream of commands is pulled from its source as the server takes it, not all at once.
PIPELINE_AHEAD_BYTES = 256 * 1024
# A reply longer than this is taken as a broken peer rather than held in memory. A GET reply
# is the value (at most --max-line-bytes, 1 MiB by default) JSON-escaped: far below this.
MAX_REPLY_BYTES = 256 * 1024 * 1024
# transaction(fn, retries=N) sleeps a random time up to this, doubling per attempt, capped:
# enough for the conflicting transaction to finish, short enough not to be noticed.
RETRY_BASE_SECONDS = 0.005
RETRY_MAX_SECONDS = 0.2
# Keys per SCAN page that Client.scan asks for: large pages mean few round trips, and the
# server caps a page at 10,000 keys.
SCAN_PAGE_KEYS = 1000



# -- errors ---------------------------------------------------------------------------------

class KvloopError(Exception):
    """Base class of every error this client raises (besides ValueError for bad arguments)."""


class ServerError(KvloopError):
    """The server answered with an error reply; ``code`` and ``mesg`` are that reply's fields.

    The failed command changed nothing, unless ``mesg`` says otherwise (see ConflictError).
    """

    def __init__(self, code: str, mesg: str) -> None:
        super().__init__(f"{code}: {mesg}")
        self.code = code
        self.mesg = mesg


class NotFoundError(ServerError):
    """NOT_FOUND: GET of a key that has no value."""


class ConflictError(ServerError):
    """CONFLICT: nothing was applied, so the transaction can be retried.

    Either a PUT/DEL hit a key another open transaction has written, or (snapshot and
    serializable) a key another transaction committed after this one's snapshot (the statement
    had no effect and this transaction is still open), or a SERIALIZABLE COMMIT failed
    validation (the server has rolled the whole transaction back).
    """


class ProtocolError(KvloopError):
    """The server sent something that is not a kvloop reply; the connection was closed."""


class ConnectionLost(KvloopError, ConnectionError):
    """The connection could not be made, or it failed or was closed. The client is now closed.

    If a transaction was open, the server rolls it back when the connection goes.
    """


class CommitOutcomeUnknown(ConnectionLost):
    """The connection dropped after COMMIT was sent and before its reply arrived.

    The transaction may or may not have been committed: read the data back (on a new
    connection) before retrying it, or make the transaction safe to apply twice.
    """


_ERROR_CLASSES: dict[str, type[ServerError]] = {
    errors.NOT_FOUND: NotFoundError,
    errors.CONFLICT: ConflictError,
}


def server_error(code: str, mesg: str) -> ServerError:
    """The exception for an error reply: NotFoundError, ConflictError or ServerError."""
    return _ERROR_CLASSES.get(code, ServerError)(code, mesg)


# -- replies --------------------------------------------------------------------------------

def parse_reply(raw: bytes) -> dict[str, Any]:
    """Parse one reply line (without its ``\\n``) into a dict with a ``status``.

    Raises :class:`ProtocolError` if it is not a kvloop reply.
    """
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or reply.get("status") not in ("Ok", "Error"):
        shown = raw[:80] + (b"..." if len(raw) > 80 else b"")
        raise ProtocolError(f"the server sent something that is not a kvloop reply: {shown!r}")
    return reply


def is_ok(reply: dict[str, Any]) -> bool:
    """True if the reply says the command succeeded."""
    return reply.get("status") == "Ok"


def reply_result(reply: dict[str, Any]) -> Any:
    """The reply's result (``None`` if it has none); raises the ServerError of an error reply."""
    if not is_ok(reply):
        raise server_error(str(reply.get("code", "")), str(reply.get("mesg", "")))
    return reply.get("result")


def command_verb(line: bytes) -> tuple[str | None, str]:
    """``(VERB, rest)`` of a request line as the server will see it; ``(None, "")`` if blank
    or not UTF-8."""
    try:
        request = parse_line(line)
    except CommandError:
        return None, ""
    return request if request is not None else (None, "")


# -- argument checks ------------------------------------------------------------------------

def check_key(key: str) -> str:
    """``key`` if the server can take it as a key, else ValueError saying why."""
    if not isinstance(key, str):
        raise TypeError(f"a key must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError("a key must not be empty")
    position = find_bad_key_char(key)
    if position is not None:
        raise ValueError(
            f"key {key!r} has a blank or control character at position {position}; "
            "a key is one word of printable characters"
        )
    return key


def check_text(text: str, what: str) -> str:
    """``text`` if it survives the trip as the rest of a request line, else ValueError.

    It must be a non-empty str on one line, must not start with a space or tab (the server
    drops the blanks after the previous word) nor end with ``\\r`` (dropped as a line end).
    """
    if not isinstance(text, str):
        raise TypeError(f"a {what} must be a str, got {type(text).__name__}")
    if not text:
        raise ValueError(f"a {what} must not be empty")
    if "\n" in text:
        raise ValueError(f"a {what} must be on one line: it contains '\\n'")
    if text.endswith("\r"):
        raise ValueError(f"a {what} must not end with '\\r' (the server reads it as a line end)")
    if text[0] in " \t":
        raise ValueError(
            f"a {what} must not start with a space or tab (the server drops those blanks)"
        )
    return text


def check_line(line: str) -> bytes:
    """A raw command line as bytes to send (without ``\\n``); ValueError if it is not one line
    or is blank (a blank line gets no reply)."""
    if not isinstance(line, str):
        raise TypeError(f"a command line must be a str, got {type(line).__name__}")
    if "\n" in line:
        raise ValueError("a command line must not contain '\\n'; send one command per line")
    if not line.strip(" \t\r"):
        raise ValueError("a command line must not be blank (the server does not answer those)")
    return line.encode("utf-8")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _recv_available(sock: socket.socket) -> bytes:
    """One ``recv``; over TLS also the plaintext the TLS layer already holds (a readable
    socket is no sign of it, so it must be taken now)."""
    data = sock.recv(READ_SIZE)
    if data and isinstance(sock, ssl.SSLSocket):
        while sock.pending():
            data += sock.recv(READ_SIZE)
    return data


class _Lost(Exception):
    """Internal: the connection failed; carries the reason for the public exception."""


_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _nonblocking(call: Callable[[Any], Any], arg: Any) -> Any:
    """``call(arg)`` on a non-blocking socket (plain or TLS): ``None`` if it would block,
    _Lost on failure."""
    try:
        return call(arg)
    except _WOULD_BLOCK:
        return None
    except OSError as exc:
        raise _Lost(_describe(exc)) from None


# -- the client -----------------------------------------------------------------------------

class Client:
    """One connection to a kvloop server. Not thread-safe: use one Client per thread.

    Connects at construction (and sends AUTH if ``password`` is given); raises
    :class:`ConnectionLost` if it cannot. ``timeout`` (seconds, ``None`` for none) bounds
    connecting and the wait for each reply; a reply that does not come in time closes the
    connection with :class:`ConnectionLost`. Use it as a context manager to close it.

    Methods that send a command raise :class:`ServerError` (or its subclasses) for an error
    reply and :class:`ConnectionLost` if the connection fails; bad arguments raise ValueError
    before anything is sent.

    TLS: ``tls=True`` (implied by ``cafile`` or ``insecure_skip_verify``) checks the
    server's certificate against the system's CAs, or against ``cafile`` (PEM), and that it
    names ``host``. ``insecure_skip_verify=True`` accepts any certificate, which anyone on
    the path can then impersonate: it warns (``RuntimeWarning``); use it only for tests.
    ``certfile`` (and ``keyfile``, if the key is not in it) is this client's certificate,
    for servers that require one (``--tls-ca``).
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 timeout: float | None = DEFAULT_TIMEOUT,
                 password: str | None = None, tls: bool = False, cafile: str | None = None,
                 insecure_skip_verify: bool = False, certfile: str | None = None,
                 keyfile: str | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.last_commit_seq: int | None = None
        self._reader = LineReader(MAX_REPLY_BYTES)
        self._in_txn = False
        self._level: str | None = None
        self._default_level: str | None = None
        try:
            self._sock: socket.socket | None = socket.create_connection(
                (host, port), timeout=timeout)
        except OSError as exc:
            hint = ""
            if isinstance(exc, ConnectionRefusedError):
                hint = " (is the server running? start it with: python server.py)"
            raise ConnectionLost(
                f"cannot connect to {self.address}: {_describe(exc)}{hint}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls or cafile or insecure_skip_verify or certfile:
            self._sock = self._start_tls(self._sock, cafile, insecure_skip_verify,
                                         certfile, keyfile)
        if password is not None:
            try:
                self.auth(password)
            except BaseException:
                self.close()
                raise

    # -- connection ----------------------------------------------------------------------

    def _start_tls(self, sock: socket.socket, cafile: str | None, insecure_skip_verify: bool,
                   certfile: str | None, keyfile: str | None) -> ssl.SSLSocket:
        """The TLS handshake over ``sock``; ConnectionLost (and ``sock`` closed) if it fails."""
        try:
            context = client_context(cafile, insecure_skip_verify, certfile, keyfile)
        except OSError as exc:  # ssl.SSLError included
            sock.close()
            files = ", ".join(f for f in (cafile, certfile, keyfile) if f)
            raise ConnectionLost(f"cannot load the TLS files ({files}): {_describe(exc)}"
                                 ) from None
        if insecure_skip_verify:
            warnings.warn(
                f"TLS certificate checks are off for {self.address}: anyone on the network "
                "path can read and change this connection (insecure_skip_verify)",
                RuntimeWarning, stacklevel=3)
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            hint = ""
            if getattr(exc, "verify_code", None) in _NAME_MISMATCH:
                hint = (f" (connect with --host / host= set to a name the certificate names,"
                        f" or use a certificate that names {self.host})")
            elif isinstance(exc, ssl.SSLCertVerificationError):
                hint = " (pass the server's CA certificate with --cafile / cafile=)"
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
            raise ConnectionLost(
                f"TLS handshake with {self.address} failed: {reason or _describe(exc)}{hint}"
            ) from None

    @property
    def address(self) -> str:
        """``host:port`` of the server."""
        return format_address(self.host, self.port)

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by :meth:`close`, QUIT, or a failure)."""
        return self._sock is None

    @property
    def in_transaction(self) -> bool:
        """True while this connection has a transaction open, as the server's replies say."""
        return self._in_txn

    @property
    def transaction_level(self) -> str | None:
        """The open transaction's isolation level, or ``None`` if none is open or it was
        started without a level before :meth:`default_isolation` learnt the server's default."""
        return self._level if self._in_txn else None

    def close(self) -> None:
        """Close the connection (the server rolls back an open transaction). Idempotent."""
        sock, self._sock = self._sock, None
        self._in_txn = False
        self._level = None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "connected"
        if self._in_txn:
            state += f", in a {self._level or 'default-level'} transaction"
        return f"<Client {self.address} {state}>"

    # -- commands ------------------------------------------------------------------------

    def put(self, key: str, value: str) -> None:
        """Add or overwrite ``key`` (ConflictError if another open transaction wrote it)."""
        self._command(f"PUT {check_key(key)} {check_text(value, 'value')}")

    def get(self, key: str) -> str:
        """The value of ``key`` as this connection sees it; NotFoundError if it has none."""
        return self._command(f"GET {check_key(key)}")

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is fine."""
        self._command(f"DEL {check_key(key)}")

    def start(self, level: str | None = None) -> None:
        """Open a transaction: ``"read-committed"``, ``"snapshot"``, ``"serializable"``, or
        ``None`` for the server's default. ServerError IN_TRANSACTION if one is already open."""
        if level is None:
            self._command("START")
            return
        normal = parse_level(level) if isinstance(level, str) else None
        if normal is None:
            raise ValueError(f"unknown isolation level {level!r}; use one of {', '.join(LEVELS)}")
        self._command(f"START {normal}")

    def commit(self) -> int:
        """Commit the open transaction and return its sequence number. Three outcomes:

        - committed: returns N (also kept in ``last_commit_seq``);
        - rejected: ConflictError, SERIALIZABLE validation failed and the server rolled the
          transaction back; nothing was applied (ServerError NO_TRANSACTION if none was open);
        - unknown: CommitOutcomeUnknown, the connection dropped after COMMIT was sent.
        """
        result = self._command("COMMIT")
        return int(result["seq"])

    def rollback(self) -> None:
        """Discard every write of the open transaction (NO_TRANSACTION if none is open)."""
        self._command("ROLLBACK")

    def scan(self, prefix: str = "", values: bool = False, *,
             page_size: int = SCAN_PAGE_KEYS) -> Iterator[Any]:
        """Every key that starts with ``prefix``, in code-point order, fetched a page of
        ``page_size`` at a time as the iterator is consumed; ``(key, value)`` pairs if
        ``values``. Each page is a SCAN as this connection sees the data at that moment (inside
        a transaction: with its own writes), so keys changed between pages may be missed or
        seen in their newer state, as with any paginated listing."""
        if prefix:
            check_key(prefix)
        if not isinstance(page_size, int) or not 1 <= page_size <= 10_000:
            raise ValueError(f"page_size must be an int from 1 to 10000, got {page_size!r}")
        return self._scan_pages(prefix, values, page_size)

    def _scan_pages(self, prefix: str, values: bool, page_size: int) -> Iterator[Any]:
        after = None
        while True:
            page = self.scan_page(prefix, after=after, limit=page_size, values=values)
            if values:
                yield from zip(page["keys"], page["values"])
            else:
                yield from page["keys"]
            if not page["more"] or not page["keys"]:
                return
            after = page["keys"][-1]

    def scan_page(self, prefix: str = "", after: str | None = None, limit: int | None = None,
                  values: bool = False) -> dict[str, Any]:
        """One SCAN: the result ``{"keys": [...], "more": bool}`` (and ``"values"``): keys
        starting with ``prefix`` after ``after``, at most ``limit`` (server default: 100).
        The next page starts after the last key."""
        line = "SCAN"
        if prefix:
            line += f" PREFIX {check_key(prefix)}"
        if after is not None:
            line += f" AFTER {check_key(after)}"
        if limit is not None:
            line += f" LIMIT {int(limit)}"
        if values:
            line += " VALUES"
        return self._command(line)

    def ping(self, text: str | None = None) -> str:
        """``"PONG"``, or ``text`` echoed back by the server."""
        if text is None:
            return self._command("PING")
        return self._command(f"PING {check_text(text, 'ping text')}")

    def stats(self) -> dict[str, Any]:
        """The server's counters (SPEC §6), as a dict."""
        return self._command("STATS")

    def auth(self, password: str) -> None:
        """Authenticate (ServerError AUTH_FAILED if wrong, BAD_REQUEST if none is set)."""
        self._command(f"AUTH {check_text(password, 'password')}")

    def help(self) -> list[str]:
        """The server's list of commands, one line each."""
        return self._command("HELP")

    def default_isolation(self) -> str | None:
        """The level a plain START gets on this server (asked once, from STATS), or ``None``
        if the server will not say yet (before AUTH, say)."""
        if self._default_level is None:
            reply = self.execute("STATS")
            result = reply.get("result") if is_ok(reply) else None
            level = result.get("isolation_default") if isinstance(result, dict) else None
            self._default_level = parse_level(level) if isinstance(level, str) else None
        return self._default_level

    def execute(self, line: str) -> dict[str, Any]:
        """Send one raw command line and return its parsed reply, error replies included
        (they are not raised). ConnectionLost if the connection fails."""
        return self.execute_raw(line)[1]

    def execute_raw(self, line: str) -> tuple[bytes, dict[str, Any]]:
        """Like :meth:`execute`, also returning the reply line exactly as received."""
        return self._roundtrip(check_line(line))

    def pipeline(self, lines: Iterable[str]) -> list[dict[str, Any]]:
        """Send many command lines without waiting, then return their replies in order.

        Error replies are returned, not raised. Every line is checked before any is sent
        (ValueError for a blank or multi-line one, or a QUIT that is not the last). Reading
        and writing are interleaved, so any number of lines is safe.
        """
        encoded = [check_line(line) for line in lines]
        for line in encoded[:-1]:
            if command_verb(line)[0] == "QUIT":
                raise ValueError("QUIT closes the connection: it can only be the last line")
        replies: list[dict[str, Any]] = []
        self.stream(encoded, lambda line, raw, reply: replies.append(reply))
        return replies

    # -- transactions --------------------------------------------------------------------

    def transaction(self, body: Callable[[Client], Any] | None = None, *,
                    level: str | None = None, retries: int = 0) -> Any:
        """Run a transaction, in one of two forms.

        ``with client.transaction(level=...) as c:`` starts a transaction and yields the
        client; when the block ends it commits, or, if the block raised, rolls back and
        re-raises. If the block itself ends the transaction (commit() or rollback()), nothing
        more is done. ``retries`` must be 0 here: a with-block cannot be run again.

        ``client.transaction(fn, level=..., retries=N)`` calls ``fn(client)`` inside a
        transaction, commits, and returns what ``fn`` returned. On ConflictError, from a
        write inside ``fn`` or from COMMIT, nothing was applied: it rolls back if needed and
        runs ``fn`` again, up to N more times, after a short random pause. Any other error,
        CommitOutcomeUnknown above all (the commit may have happened), is raised at once.

        The commit's outcomes are those of :meth:`commit`: committed (the sequence number is
        in ``last_commit_seq``), rejected (ConflictError once retries are used up), unknown
        (CommitOutcomeUnknown).
        """
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if body is None:
            if retries:
                raise ValueError(
                    "retries needs the function form, client.transaction(fn, retries=N): "
                    "a with-block cannot be run again"
                )
            return _TransactionBlock(self, level)
        attempt = 0
        while True:
            self.start(level)
            try:
                result = body(self)
            except ConflictError:
                self._abandon()
                if attempt >= retries:
                    raise
            except BaseException:
                self._abandon()
                raise
            else:
                try:
                    self._finish()
                    return result
                except ConflictError:
                    self._abandon()
                    if attempt >= retries:
                        raise
            attempt += 1
            pause = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** attempt)
            time.sleep(random.uniform(0, pause))

    def _finish(self) -> None:
        """Commit the transaction the caller's code left open; tidy up if COMMIT fails."""
        if not self._in_txn:
            return
        try:
            self.commit()
        except ServerError as exc:
            if not isinstance(exc, ConflictError):
                self._abandon()  # e.g. READONLY: make sure nothing stays open
            raise

    def _abandon(self) -> None:
        """Roll back the open transaction, if any, keeping the error that led here."""
        if self._in_txn and not self.closed:
            # The original error matters more; a lost connection rolls back anyway.
            with contextlib.suppress(KvloopError):
                self.rollback()

    # -- the wire ------------------------------------------------------------------------

    def _command(self, line: str) -> Any:
        """Send one command line and return its result, raising the error of an error reply."""
        return reply_result(self._roundtrip(line.encode("utf-8"))[1])

    def _roundtrip(self, line: bytes) -> tuple[bytes, dict[str, Any]]:
        """Send one request line and read its reply; the raw reply line and its parse."""
        sock = self._open_socket()
        verb, rest = command_verb(line)
        # Only COMMIT needs to know whether the server closed before it was sent (then nothing
        # was committed) or after (outcome unknown). Any other command learns of a closed
        # connection from the reply read (EOF or reset): the same ConnectionLost, without the
        # three syscalls of a probe on every round trip.
        if verb == "COMMIT" and self._peer_closed(sock):
            raise self._lost(None, "the server closed the connection")
        try:
            sock.sendall(line + b"\n")
            raw = self._next_reply_line(sock)
        except (OSError, _Lost) as exc:
            raise self._lost(verb, _describe(exc)) from None
        except BaseException:
            self.close()  # interrupted (Ctrl-C) mid-command: its reply would come out of step
            raise
        reply = self._parse(raw)
        self._track(verb, rest, reply)
        return raw, reply

    def stream(self, lines: Iterable[bytes | int],
               on_reply: Callable[[bytes, bytes, dict[str, Any]], None], *,
               on_wait: Callable[[], None] | None = None) -> int:
        """Send command lines pipelined and call ``on_reply(line, raw_reply, reply)`` for each
        reply, in order, as it arrives; return how many replies there were.

        ``lines`` yields bytes without ``\\n``, pulled only as the server takes them (so it
        may be a generator over a huge file). Blank lines are skipped (they get no reply).
        No line is pulled after a QUIT until its reply comes, and none after a successful
        one (the server has closed the connection). A source that reads a pipe or terminal
        may yield a file descriptor (an int) instead of a line, meaning "no line is ready
        yet": it is asked again once that descriptor is readable, and meanwhile replies keep
        being read, so a producer that waits for replies before writing more works.
        ``on_wait`` is called before each wait (to flush the caller's output, say).

        Writing and reading are interleaved on a non-blocking socket, so the server pausing
        a client that does not read its replies cannot deadlock this. ``timeout`` bounds
        each wait for the server while replies are due. If the connection fails, the replies
        so far have been delivered and ConnectionLost (CommitOutcomeUnknown if a COMMIT was
        sent and not answered) is raised.
        """
        sock = self._open_socket()
        if self._peer_closed(sock):
            raise self._lost(None, "the server closed the connection")
        pipe = _Pipeline(lines)
        selector = selectors.DefaultSelector()
        sock.setblocking(False)
        try:
            selector.register(sock, selectors.EVENT_READ)
            events = selectors.EVENT_READ
            input_fd: int | None = None  # the source's descriptor, while watched
            while True:
                pipe.fill()
                if pipe.done():
                    return pipe.answered
                wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if pipe.out else 0)
                if wanted != events:
                    selector.modify(sock, wanted)
                    events = wanted
                if pipe.wait_fd is not None and input_fd is None:
                    input_fd = pipe.wait_fd
                    selector.register(input_fd, selectors.EVENT_READ)
                if on_wait is not None:
                    on_wait()
                replies_due = bool(pipe.out or pipe.waiting)
                ready = selector.select(self.timeout if replies_due else None)
                if not ready:
                    raise _Lost(f"no reply from the server within {self.timeout:g} s")
                for key, mask in ready:
                    if key.fileobj is sock:
                        if mask & selectors.EVENT_WRITE:
                            pipe.send(sock)
                        if mask & selectors.EVENT_READ:
                            pipe.receive(sock, self, on_reply)
                    else:
                        selector.unregister(key.fileobj)
                        input_fd = pipe.wait_fd = None
        except _Lost as exc:
            count = pipe.answered
            raise self._lost("COMMIT" if pipe.commit_sent() else None,
                             f"{exc} after {count} repl{'y' if count == 1 else 'ies'}, "
                             f"with {len(pipe.waiting)} sent commands unanswered") from None
        except BaseException:
            if pipe.waiting or pipe.out:
                self.close()  # replies still in flight: the connection is out of step
            raise
        finally:
            selector.close()
            if self._sock is not None:
                self._sock.settimeout(self.timeout)

    def _open_socket(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionLost(f"the connection to {self.address} is closed")
        return self._sock

    def _peer_closed(self, sock: socket.socket) -> bool:
        """True if the server has already closed the connection (checked without waiting).

        This tells "closed before COMMIT was sent" (ConnectionLost: nothing was committed)
        apart from "closed while waiting for its reply" (CommitOutcomeUnknown).
        """
        if self._reader.has_lines():
            return False
        sock.setblocking(False)
        try:
            if isinstance(sock, ssl.SSLSocket):  # no MSG_PEEK over TLS: keep what arrives
                data = _recv_available(sock)
                if data:
                    self._reader.feed(data)
                return not data
            return not sock.recv(1, socket.MSG_PEEK)
        except _WOULD_BLOCK:
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self.timeout)

    def _next_reply_line(self, sock: socket.socket) -> Line:
        reader = self._reader
        while True:
            line = reader.next_line()
            if line is not None:
                return line
            try:
                data = sock.recv(READ_SIZE)
            except socket.timeout:
                raise _Lost(f"no reply from the server within {self.timeout:g} s") from None
            if not data:
                raise _Lost("the server closed the connection")
            reader.feed(data)

    def _parse(self, raw: Line) -> dict[str, Any]:
        """Parse a reply line; on anything else the connection is out of step: close it."""
        try:
            if not isinstance(raw, bytes):
                raise ProtocolError(f"the server sent a reply over {MAX_REPLY_BYTES} bytes")
            return parse_reply(raw)
        except ProtocolError:
            self.close()
            raise

    def _lost(self, verb: str | None, reason: str) -> ConnectionLost:
        """Close; the ConnectionLost to raise (CommitOutcomeUnknown if ``verb`` is COMMIT)."""
        was_in_txn = self._in_txn
        self.close()
        if verb == "COMMIT":
            return CommitOutcomeUnknown(
                f"connection to {self.address} lost after COMMIT was sent and before its reply "
                f"arrived ({reason}): the transaction may or may not have been committed; "
                "check the data before retrying it"
            )
        rolled_back = "; the open transaction was rolled back" if was_in_txn else ""
        return ConnectionLost(f"connection to {self.address} lost: {reason}{rolled_back}")

    def _track(self, verb: str | None, rest: str, reply: dict[str, Any]) -> None:
        """Follow the connection's transaction state (and QUIT) from a command's reply."""
        ok = is_ok(reply)
        code = reply.get("code")
        if code == errors.NO_TRANSACTION or (
                code == errors.LIMIT and "(--txn-timeout)" in reply.get("mesg", "")):
            self._in_txn = False  # none open, or the server rolled back an idle one
        elif verb == "START":
            if ok:
                self._in_txn = True
                words = rest.split()
                self._level = parse_level(words[0]) if words else self._default_level
            elif code == errors.IN_TRANSACTION:
                self._in_txn = True
        elif verb == "COMMIT":
            if ok:
                self._in_txn = False
                result = reply.get("result")
                if isinstance(result, dict) and isinstance(result.get("seq"), int):
                    self.last_commit_seq = result["seq"]
            elif code in (errors.CONFLICT, errors.INTERNAL, errors.READONLY):
                # Validation failed or the log could not be written (the server rolled it
                # back), or COMMIT hit an unexpected error, after which the server has no
                # transaction open either.
                self._in_txn = False
        elif verb == "ROLLBACK" and ok:
            self._in_txn = False
        elif verb == "QUIT" and ok:
            self.close()  # the server closes the connection after this reply


class _Pipeline:
    """The state of one :meth:`Client.stream`: requests queued, sent, and not yet answered."""

    def __init__(self, lines: Iterable[bytes | int]) -> None:
        self.source = iter(lines)
        self.more = True  # the source may have more lines
        self.wait_fd: int | None = None  # the source has no line ready until this is readable
        self.out = bytearray()  # requests not sent yet
        self.queued = self.sent = 0  # request bytes queued / sent since the start
        # Requests not answered yet: (line, verb, rest, offset of its first byte).
        self.waiting: deque[tuple[bytes, str | None, str, int]] = deque()
        self.answered = 0
        self.quitting = False  # a QUIT is unanswered: if it succeeds, nothing more is sent

    def fill(self) -> None:
        """Pull lines until enough are queued, the source is done, or it has none ready."""
        while (self.more and self.wait_fd is None and not self.quitting
               and len(self.out) < PIPELINE_AHEAD_BYTES):
            item = next(self.source, None)
            if item is None:
                self.more = False
            elif isinstance(item, int):
                self.wait_fd = item
            else:
                self._queue(item)

    def _queue(self, line: bytes) -> None:
        if b"\n" in line:
            raise ValueError("a command line must not contain '\\n'")
        verb, rest = command_verb(line)
        if verb is None and not line.strip(b" \t\r"):
            return  # blank: the server would not answer it
        self.waiting.append((line, verb, rest, self.queued))
        self.out += line + b"\n"
        self.queued += len(line) + 1
        if verb == "QUIT":
            self.quitting = True  # wait for its reply: after an Ok the server closes

    def done(self) -> bool:
        """True when every line has been sent and answered."""
        return not (self.more or self.out or self.waiting)

    def send(self, sock: socket.socket) -> None:
        """Send what the socket takes now."""
        count = _nonblocking(sock.send, self.out) or 0
        del self.out[:count]
        self.sent += count

    def receive(self, sock: socket.socket, client: Client,
                on_reply: Callable[[bytes, bytes, dict[str, Any]], None]) -> None:
        """Read what has arrived and hand each complete reply to ``on_reply``."""
        data = _nonblocking(_recv_available, sock)
        if data == b"":
            raise _Lost("the server closed the connection")
        if data:
            client._reader.feed(data)
        waiting = self.waiting
        while waiting:
            raw = client._reader.next_line()
            if raw is None:
                break
            reply = client._parse(raw)
            line, verb, rest, _ = waiting.popleft()
            client._track(verb, rest, reply)
            self.answered += 1
            if verb == "QUIT":
                self.quitting = False
                self.more = self.more and not is_ok(reply)
            on_reply(line, raw, reply)

    def commit_sent(self) -> bool:
        """True if an unanswered COMMIT has been sent, even in part: its outcome is unknown."""
        return any(verb == "COMMIT" and start < self.sent for _, verb, _, start in self.waiting)


class _TransactionBlock:
    """The context manager of ``with client.transaction():`` (see :meth:`Client.transaction`)."""

    def __init__(self, client: Client, level: str | None) -> None:
        self.client = client
        self.level = level

    def __enter__(self) -> Client:
        self.client.start(self.level)
        return self.client

    def __exit__(self, exc_type: type | None, exc: BaseException | None,
                 tb: object) -> bool:
        if exc_type is None:
            self.client._finish()
        else:
            self.client._abandon()
        return False
