"""The commands: one small function each (parse arguments, apply, encode the reply) and the
table that dispatches a request line to them.

:class:`CommandExecutor` is the whole server minus the network: feed it a session and a
request line, get back the reply bytes. It never raises for anything a client sends.
"""

from __future__ import annotations

import hmac
import logging
import time
from itertools import islice
from typing import Callable

from . import errors
from .config import Settings
from .errors import CommandError
from .limits import WRITE_OVERHEAD_BYTES, AuthThrottle, TxnIdleDeadlines, write_cost
from .protocol import (
    OK,
    Line,
    describe_char,
    encode_commit_result,
    encode_error,
    encode_ok,
    encode_result,
    encode_text_result,
    find_bad_key_char,
    is_plain_key,
    looks_like_http,
    parse_line,
    split_key_value,
    split_words,
)
from .replycache import GET_PREFIX, ReplyCache
from .session import Session
from .stats import Stats
from .store import ConflictError, Store, text_bytes
from .transaction import LEVELS, parse_level
from .wal import MemoryOnly, Persistence, ReadOnlyError

log = logging.getLogger("kvloop.commands")

Handler = Callable[["CommandExecutor", Session, str], bytes]

# Commands a client may send before AUTH when a password is set.
OPEN_VERBS = frozenset({"AUTH", "PING", "HELP", "QUIT"})
# Longest piece of client input quoted back in an error message.
ECHO_LIMIT = 64
# Longest argument text whose words an error message counts.
COUNT_WORDS_LIMIT = 4096
# Closing a connection that spoke HTTP is logged at most once per this many seconds.
HTTP_LOG_INTERVAL_SECONDS = 60.0
# SCAN's page size when LIMIT is not given, and the largest LIMIT allowed: a page of 10,000
# keys is a few hundred KiB and a few milliseconds of work, short enough not to hold up others.
SCAN_DEFAULT_LIMIT = 100
SCAN_MAX_LIMIT = 10_000
# A SCAN page stops early (with "more": true) once its keys and values reach this many
# characters, so one SCAN builds at most a few hundred KiB of reply (a few milliseconds of work,
# whatever LIMIT and the values' sizes are); its reply is then at most ~1 MiB even for 4-byte
# characters.
SCAN_PAGE_CHARS = 256 * 1024
SCAN_USAGE = "usage: SCAN [PREFIX p] [AFTER k] [LIMIT n] [VALUES] (options in any order, each once)"


PUT_PREFIX = b"PUT "
START_LINE = b"START"
COMMIT_LINE = b"COMMIT"
# The most PUTs of a transaction run as one commit when it arrives whole (START ... COMMIT in
# one batch); a longer one takes the general path: the look-ahead stays cheap when it fails.
ONE_PHASE_MAX_PUTS = 16
# write_cost(key, value) of a plain line b"PUT key value", less the line's length.
PUT_LINE_COST = WRITE_OVERHEAD_BYTES - len(b"PUT  ")
KEY_NOT_FOUND = "Key not found"
# GET's reply for a missing key: one object, so that a cached one is told apart by identity.
NOT_FOUND_REPLY = encode_error(errors.NOT_FOUND, KEY_NOT_FOUND)


def _quote(text: str) -> str:
    return repr(text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "...")


class CommandExecutor:
    """Runs request lines against the store for many sessions, one command at a time.

    ``clock`` (monotonic seconds) times the transaction timeout, AUTH delays and log rate
    limits; tests pass a fake one. ``replies`` caches GET replies (see
    :mod:`kvloop.replycache`); :meth:`execute_lines` uses it, with the same replies as
    :meth:`execute` line by line.
    """

    def __init__(self, settings: Settings, store: Store | None = None,
                 stats: Stats | None = None, persistence: Persistence | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.store = store if store is not None else Store()
        self.stats = stats if stats is not None else Stats()
        # The write-ahead log (or MemoryOnly): STATS reads it, writes check it is writable.
        self.persistence = persistence if persistence is not None else MemoryOnly()
        self.clock = clock
        self._next_session_id = 1
        self.auth_throttle = AuthThrottle()
        self._idle_txns = TxnIdleDeadlines(settings.txn_timeout)
        # Bytes written by all open transactions (the sum of their sessions' txn_bytes).
        self.open_txn_bytes = 0
        self._http_logged_at: float | None = None
        self._http_unlogged = 0
        self.replies = ReplyCache()
        self.store.on_change = self.replies.changed

    # -- sessions ------------------------------------------------------------------------

    def open_session(self, peer: str = "") -> Session:
        """A new client's session (it must AUTH first if a password is set)."""
        session = Session(self._next_session_id, peer,
                          authenticated=self.settings.password is None)
        self._next_session_id += 1
        self.stats.clients_connected += 1
        self.stats.clients_total += 1
        return session

    def close_session(self, session: Session) -> None:
        """The client is gone: roll back its open transaction, releasing its keys."""
        if session.txn is not None:
            self.rollback(session)
        self.stats.clients_connected -= 1

    # -- transaction timeout (--txn-timeout) ------------------------------------------------

    def next_deadline(self) -> float | None:
        """The monotonic instant when the next open transaction times out, or ``None``.

        The server's loop wakes no later than this and then calls :meth:`expire`.
        """
        return self._idle_txns.next_deadline() if self.settings.txn_timeout > 0 else None

    def expire(self, now: float) -> None:
        """Roll back every transaction idle for ``--txn-timeout`` at ``now``, freeing its keys;
        its session's next command is answered with the reason instead of being run."""
        timeout = self.settings.txn_timeout
        for session in list(self._idle_txns.expired(now)):
            if session.txn is None:
                continue
            level = session.txn.level
            self.rollback(session)
            self.stats.txn_timeouts += 1
            session.txn_expired = (
                f"your {level} transaction sent no command for {timeout:g} s and was rolled "
                f"back (--txn-timeout), freeing its keys: none of its writes were applied; "
                "this command was not run; START again"
            )
            log.info("rolled back the transaction of client %s: idle for %g s (--txn-timeout)",
                     session.peer, timeout)

    # -- dispatch ------------------------------------------------------------------------

    def execute(self, session: Session, line: Line) -> bytes | None:
        """Run one request line for ``session``; the reply bytes, or ``None`` for a blank line
        or a line that closes the connection without a reply (one that looks like HTTP).

        Every failure becomes an error reply. An unexpected exception is logged with its
        traceback and answered INTERNAL; the server goes on.
        """
        try:
            if not isinstance(line, bytes):
                raise CommandError(
                    errors.TOO_LARGE,
                    f"request line is longer than the limit of {line.limit} bytes "
                    "(--max-line-bytes); it was discarded",
                )
            bare = BARE_LINES.get(line)
            if bare is not None and session.authenticated and session.txn_expired is None:
                verb, handler = bare  # "COMMIT": nothing to parse, nothing to check
                rest = ""
            else:
                request = parse_line(line)
                if request is None:
                    return None
                verb, rest = request
                if looks_like_http(verb, rest):
                    self._refuse_http(session)
                    return None
                if session.txn_expired is not None and verb != "QUIT":
                    mesg, session.txn_expired = session.txn_expired, None
                    raise CommandError(errors.LIMIT, mesg)
                handler = COMMANDS.get(verb)
                if handler is None:
                    raise CommandError(
                        errors.UNKNOWN_COMMAND,
                        f"unknown command {_quote(verb)}; commands are {', '.join(COMMANDS)} "
                        "(HELP describes them)",
                    )
                if not session.authenticated and verb not in OPEN_VERBS:
                    raise CommandError(
                        errors.AUTH_REQUIRED,
                        f"{verb} needs authentication first: send AUTH password",
                    )
            commands = self.stats.commands
            commands[verb] = commands.get(verb, 0) + 1
            return handler(self, session, rest)
        except CommandError as exc:
            self.stats.errors[exc.code] += 1
            if isinstance(exc, ConflictError):
                self.stats.conflicts[exc.cause] += 1
            return encode_error(exc.code, exc.mesg)
        except Exception:
            log.exception("unexpected error in a command of client %s", session.peer)
            self.stats.errors[errors.INTERNAL] += 1
            return encode_error(
                errors.INTERNAL,
                "the server hit an unexpected error running this command; the command had "
                "no effect, the error was logged, and the connection is still usable",
            )
        finally:
            if session.txn is not None and self.settings.txn_timeout > 0:
                self._idle_txns.touch(session, self.clock())

    def execute_lines(self, session: Session, lines: list[Line], replies: list[bytes],
                      room: int) -> int:
        """Run ``lines`` in order for ``session``, appending their replies to ``replies``; the
        replies are byte for byte those of :meth:`execute` line by line, and so are the
        store, the session and STATS afterwards.

        Stops early, and returns how many lines it ran, after a line that closes the session
        or holds it (a failed AUTH's delay), after the first line that leaves a commit
        waiting for the log's sync when none was waiting before (its reply is then the last
        in ``replies``), or once the replies it added reach ``room`` bytes.

        A plain ``GET key`` costs one lookup when its reply is cached, and is read and cached
        without the general dispatch when it is not. The cache holds only autocommit reads
        of keys no transaction holds, so it serves only a session that is authenticated and
        has no transaction open (nor a timed-out one to hear about). A plain ``PUT key
        value`` goes straight to :meth:`write`. Any other line, and any plain line that
        fails, takes the general path (:meth:`execute`), which makes its reply.
        """
        lookup = self.replies.lookup
        execute = self.execute
        persistence = self.persistence
        was_pending = persistence.pending
        plain = session.authenticated and session.txn_expired is None
        cacheable = plain and session.txn is None
        hits = missing = size = ran = 0
        remaining = iter(lines)
        for line in remaining:
            ran += 1
            reply = lookup(line) if cacheable else None
            if reply is not None:
                hits += 1
                if reply is NOT_FOUND_REPLY:
                    missing += 1
            else:
                if plain and line.__class__ is bytes:
                    try:
                        reply = self._run_plain(session, line, cacheable)
                        if reply is None and line == START_LINE and cacheable:
                            whole = self._one_phase(lines, ran, room - size)
                            if whole is not None:
                                puts, reply = whole  # reply: the COMMIT's, handled as any
                                replies += [OK] * (puts + 1)  # START's and the PUTs'
                                size += (puts + 1) * len(OK)
                                ran += puts + 1
                                next(islice(remaining, puts, None))  # the PUTs and COMMIT
                    except Exception:  # a bug: the general path answers INTERNAL and logs it
                        reply = None
                if reply is None:
                    if hits:  # counted before any other command runs (STATS may be next)
                        self._count_gets(hits, missing)
                        hits = missing = 0
                    reply = execute(session, line)
                    if (session.closing or session.hold_until is not None
                            or (persistence.pending and not was_pending)):
                        if reply is not None:
                            replies.append(reply)
                        break
                    if reply is None:
                        continue
                    plain = session.authenticated and session.txn_expired is None
                    cacheable = plain and session.txn is None
                elif persistence.pending and not was_pending:
                    replies.append(reply)
                    break
            replies.append(reply)
            size += len(reply)
            if size >= room:
                break
        if hits:
            self._count_gets(hits, missing)
        return ran

    def _run_plain(self, session: Session, line: bytes, cacheable: bool) -> bytes | None:
        """A plain GET (for a session the cache may serve) or plain PUT line (see
        :meth:`_plain_put_args`; in the session's transaction if it has one) run without the
        general dispatch; ``None`` when the line needs the general path: any other line, or
        a write that fails (it changed nothing, and the general path makes the same error
        reply and counts it)."""
        if line.startswith(GET_PREFIX):
            return self._read_committed(line) if cacheable else None
        if not line.startswith(PUT_PREFIX):
            return None
        args = self._plain_put_args(line)
        if args is None:
            return None
        key, value = args
        try:
            self.write(session, key, value)
        except CommandError:
            return None
        commands = self.stats.commands
        commands["PUT"] = commands.get("PUT", 0) + 1
        if session.txn is not None and self.settings.txn_timeout > 0:
            self._idle_txns.touch(session, self.clock())
        return OK

    def _one_phase(self, lines: list[Line], first: int,
                   room: int) -> tuple[int, bytes] | None:
        """Run a whole write-only transaction, ``START`` (at ``lines[first - 1]``), plain
        PUT lines and ``COMMIT``, as one commit (:meth:`Store.commit_puts`: no write intents,
        no undo log) for a session the reply cache may serve; return how many PUT lines it
        had and the COMMIT's reply. Every line's reply (``OK`` but the COMMIT's) is byte for
        byte the general path's, and so are the store and STATS afterwards: nothing else runs
        in between either way.

        ``None``, with nothing changed, when the general path must run them: the COMMIT is
        not among the next :data:`ONE_PHASE_MAX_PUTS` + 1 lines, a line before it is not a
        plain PUT (:meth:`_plain_put_args`), a write would fail (a key under another
        transaction's write intent, --max-txn-bytes, --max-data-bytes, a read-only or
        refusing log: the general path then makes the error replies), or the replies but
        the last would fill ``room``.
        """
        try:
            commit_at = lines.index(COMMIT_LINE, first, first + ONE_PHASE_MAX_PUTS + 1)
        except ValueError:
            return None
        count = commit_at - first  # PUT lines
        if not count or (count + 1) * len(OK) >= room:
            return None
        puts: dict[str, str] = {}
        cost = count * PUT_LINE_COST
        plain_put_args = self._plain_put_args
        for line in islice(lines, first, commit_at):
            args = (plain_put_args(line)
                    if line.__class__ is bytes and line.startswith(PUT_PREFIX) else None)
            if args is None:
                return None
            puts[args[0]] = args[1]
            cost += len(line)  # write_cost(key, value): the line holds their UTF-8
        settings = self.settings
        if (self.persistence.readonly is not None
                or (settings.max_txn_bytes and cost > settings.max_txn_bytes)
                or (settings.max_data_bytes and self.store.data_bytes + self.open_txn_bytes
                    + cost > settings.max_data_bytes)):
            return None
        try:
            seq = self.store.commit_puts(puts)
        except CommandError:
            return None
        stats, level = self.stats, settings.isolation
        commands = stats.commands
        commands["START"] = commands.get("START", 0) + 1
        commands["PUT"] = commands.get("PUT", 0) + count
        commands["COMMIT"] = commands.get("COMMIT", 0) + 1
        stats.started[level] += 1
        stats.committed[level] += 1
        return count, encode_commit_result(seq)

    def _count_gets(self, count: int, missing: int) -> None:
        """STATS for ``count`` GETs answered from the cache, ``missing`` of them NOT_FOUND."""
        commands = self.stats.commands
        commands["GET"] = commands.get("GET", 0) + count
        if missing:
            self.stats.errors[errors.NOT_FOUND] += missing

    def _read_committed(self, line: bytes) -> bytes | None:
        """The reply to the line ``GET key`` (one space, a valid key) as an autocommit read
        of a key no transaction holds: the committed value, or NOT_FOUND; cached. ``None``
        when the line needs the general path (any other key: its error, or the before-image
        of a key under a write intent, come from there)."""
        try:
            key = line[4:].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not is_plain_key(key, self.settings.max_key_bytes) or self.store.has_intent(key):
            return None
        value = self.store.get(key)
        reply = NOT_FOUND_REPLY if value is None else encode_text_result(value)
        self.replies.add(line, reply)
        self._count_gets(1, int(value is None))
        return reply

    def _plain_put_args(self, line: bytes) -> tuple[str, str] | None:
        """The key and value of the line ``PUT key value`` (one space after each word, a
        valid key, no ``\r`` at the end); ``None`` for any other shape (the general path
        parses it, or makes its error reply)."""
        try:
            rest = line[4:].decode("utf-8")
        except UnicodeDecodeError:
            return None
        key, _, value = rest.partition(" ")
        if (not value or value[0] in " \t" or rest[-1] == "\r" or rest[-8:-3] == "HTTP/"
                or not is_plain_key(key, self.settings.max_key_bytes)):
            return None
        return key, value

    def _refuse_http(self, session: Session) -> None:
        """Close a connection that sent an HTTP request: a web page may be trying to reach the
        database through the browser (cross-protocol scripting). No reply; logged at most once
        a minute."""
        session.closing = True
        self.stats.http_refused += 1
        now = self.clock()
        last = self._http_logged_at
        if last is not None and now - last < HTTP_LOG_INTERVAL_SECONDS:
            self._http_unlogged += 1
            return
        self._http_logged_at = now
        unlogged, self._http_unlogged = self._http_unlogged, 0
        log.warning(
            "closed the connection of client %s: it sent an HTTP request, maybe from a web "
            "page (cross-protocol attack); %d more since the last such line; logged at most "
            "once a minute", session.peer, unlogged)

    # -- helpers for the commands ---------------------------------------------------------

    def check_key(self, key: str) -> str:
        """``key`` if it is a valid key, else CommandError saying what a key may be."""
        limit = self.settings.max_key_bytes
        if is_plain_key(key, limit):
            return key  # the common case
        # A character is at most 4 bytes: only a long enough key needs its bytes counted.
        if len(key) * 4 > limit and text_bytes(key) > limit:
            raise CommandError(
                errors.TOO_LARGE,
                f"key is {text_bytes(key)} bytes; the limit is {limit} (--max-key-bytes)",
            )
        bad = find_bad_key_char(key)
        if bad is not None:
            raise CommandError(
                errors.BAD_REQUEST,
                f"key contains {describe_char(key[bad])} at position {bad}; "
                "a key is one word of printable characters",
            )
        return key

    def write(self, session: Session, key: str, value: str | None) -> None:
        """PUT (or DEL, ``value`` None) within the limits: --max-txn-bytes for a transaction's
        writes, --max-data-bytes for a PUT. Over one, LIMIT and nothing changes; READONLY
        if the log could not be written."""
        self._check_writable()
        txn = session.txn
        cost = write_cost(key, value) if txn is not None else 0
        if txn is not None and self.settings.max_txn_bytes:
            limit = self.settings.max_txn_bytes
            if session.txn_bytes + cost > limit:
                raise CommandError(
                    errors.LIMIT,
                    f"this write would bring the transaction to {session.txn_bytes + cost} "
                    f"bytes, over the limit of {limit} (--max-txn-bytes: keys and values "
                    "plus 100 bytes per write); it had no effect and the transaction is "
                    "still open: COMMIT or ROLLBACK it and write the rest in another",
                )
        if value is not None and self.settings.max_data_bytes:
            limit = self.settings.max_data_bytes
            adds = cost or self._autocommit_growth(key, value)
            if adds > 0 and self.store.data_bytes + self.open_txn_bytes + adds > limit:
                raise CommandError(
                    errors.LIMIT,
                    f"the data would pass the memory budget of {limit} bytes "
                    f"(--max-data-bytes; {self.store.data_bytes} committed, "
                    f"{self.open_txn_bytes} in open transactions); this PUT had no effect; "
                    "GET and DEL still work: delete keys to make room",
                )
        if value is None:
            self.store.delete(key, txn)
        else:
            self.store.put(key, value, txn)
        if txn is not None:
            session.txn_bytes += cost
            self.open_txn_bytes += cost

    def _autocommit_growth(self, key: str, value: str) -> int:
        """How many bytes an autocommit PUT adds to the committed data: an overwrite replaces
        the old value (a transaction's write is charged in full: its before-image stays until
        it ends)."""
        old = self.store.get(key)
        return text_bytes(value) - text_bytes(old) if old is not None else (
            text_bytes(key) + text_bytes(value))

    def _check_writable(self) -> None:
        """READONLY if the log could not be written: no write is accepted until restart."""
        reason = self.persistence.readonly
        if reason is not None:
            raise ReadOnlyError(reason)

    def rollback(self, session: Session) -> None:
        """Roll back the session's open transaction."""
        txn = session.txn
        self.end_txn(session)
        self.store.rollback(txn)
        self.stats.rolled_back[txn.level] += 1

    def end_txn(self, session: Session) -> None:
        """The session's transaction is over (committed or rolled back): forget it."""
        session.txn = None
        self.open_txn_bytes -= session.txn_bytes
        session.txn_bytes = 0
        self._idle_txns.forget(session)


# -- argument parsing ---------------------------------------------------------------------

def _one_key(db: CommandExecutor, rest: str, usage: str) -> str:
    if rest and " " not in rest and "\t" not in rest:
        return db.check_key(rest)
    words = split_words(rest, 1)  # stops at the second word: a long line is not split whole
    if len(words) != 1:
        raise CommandError(errors.BAD_REQUEST,
                           f"expected exactly one key, got {_count_words(rest)}; usage: {usage}")
    return db.check_key(words[0])


def _count_words(rest: str) -> str:
    """"N words" for an error message; counted only in a short line (splitting a 1 MiB line of
    one-letter words costs ~40 ms: a cheap way to stall every client)."""
    if len(rest) > COUNT_WORDS_LIMIT:
        return f"many words ({len(rest)} characters)"
    return f"{len(split_words(rest))} words"


def _no_args(rest: str, verb: str) -> None:
    if rest.strip(" \t"):
        raise CommandError(errors.BAD_REQUEST, f"{verb} takes no arguments; usage: {verb}")


def _need_transaction(session: Session, verb: str) -> None:
    if session.txn is None:
        raise CommandError(errors.NO_TRANSACTION,
                           f"{verb} needs an open transaction and there is none; send START first")


# -- the commands -------------------------------------------------------------------------

def cmd_put(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """PUT key value: add or overwrite; the value is the rest of the line, blanks kept."""
    key, value = split_key_value(rest)
    if not key:
        raise CommandError(errors.BAD_REQUEST, "PUT needs a key and a value; usage: PUT key value")
    db.check_key(key)
    if not value:
        raise CommandError(errors.BAD_REQUEST,
                           f"PUT {_quote(key)} has no value; usage: PUT key value "
                           "(the value must not be empty)")
    db.write(session, key, value)
    return encode_ok()


def cmd_get(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """GET key: the value this session sees, or NOT_FOUND."""
    key = _one_key(db, rest, "GET key")
    value = db.store.get(key, session.txn)
    if value is None:
        raise CommandError(errors.NOT_FOUND, KEY_NOT_FOUND)
    return encode_text_result(value)


def cmd_del(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """DEL key: delete; a missing key is fine."""
    key = _one_key(db, rest, "DEL key")
    db.write(session, key, None)
    return encode_ok()


def cmd_start(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """START [read-committed|snapshot|serializable]: open a transaction."""
    words = split_words(rest, 1)
    if len(words) > 1:
        raise CommandError(errors.BAD_REQUEST,
                           "START takes at most one word; "
                           "usage: START [read-committed|snapshot|serializable]")
    level = parse_level(words[0]) if words else db.settings.isolation
    if level is None:
        raise CommandError(errors.BAD_REQUEST,
                           f"unknown isolation level {_quote(words[0])}; "
                           f"use one of {', '.join(LEVELS)}")
    if session.txn is not None:
        raise CommandError(errors.IN_TRANSACTION,
                           f"a {session.txn.level} transaction is already open; "
                           "COMMIT or ROLLBACK it before START")
    session.txn = db.store.begin(level)
    db.stats.started[level] += 1
    return encode_ok()


def cmd_commit(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """COMMIT: make the transaction's writes visible at once; result {"seq": N}."""
    _no_args(rest, "COMMIT")
    _need_transaction(session, "COMMIT")
    txn = session.txn
    db.end_txn(session)  # whatever happens below, the transaction ends with this COMMIT
    try:
        seq = db.store.commit(txn)
    except ConflictError:
        db.stats.rolled_back[txn.level] += 1
        raise
    except CommandError as exc:  # from the log (READONLY, TOO_LARGE): the store rolled back
        db.stats.rolled_back[txn.level] += 1
        raise CommandError(exc.code, exc.mesg.replace(
            "nothing was changed", "the transaction was rolled back")) from None
    except Exception:
        log.exception("COMMIT failed with an unexpected error (client %s)", session.peer)
        if txn.undo:  # the store rolls back when logging fails; anything else, here
            db.store.rollback(txn)
        db.stats.rolled_back[txn.level] += 1
        db.stats.errors[errors.INTERNAL] += 1
        return encode_error(
            errors.INTERNAL,
            "COMMIT hit an unexpected error; the transaction was rolled back: none of its "
            "writes were applied; the error was logged, and the connection is still usable "
            "with no transaction open",
        )
    db.stats.committed[txn.level] += 1
    return encode_commit_result(seq)


def cmd_rollback(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """ROLLBACK: discard every write of the transaction."""
    _no_args(rest, "ROLLBACK")
    _need_transaction(session, "ROLLBACK")
    db.rollback(session)
    return encode_ok()


def cmd_ping(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """PING [text]: "PONG", or the text back."""
    return encode_text_result(rest or "PONG")


def cmd_auth(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """AUTH password: unlock the other commands when the server has a password.

    The password is the rest of the line; blanks around it are ignored, as in the password file.
    It is compared in constant time. A failure leaves an already authenticated session
    authenticated (as Redis does); it delays the connection's next line after a few failures
    and closes it after many (:class:`~kvloop.limits.AuthThrottle`).
    """
    expected = db.settings.password
    rest = rest.strip(" \t")
    if expected is None:
        raise CommandError(errors.BAD_REQUEST,
                           "this server has no password set; AUTH is not needed")
    if not rest:
        raise CommandError(errors.BAD_REQUEST, "AUTH needs the password; usage: AUTH password")
    if not hmac.compare_digest(rest.encode("utf-8"), expected.encode("utf-8")):
        db.stats.auth_failures += 1
        if db.auth_throttle.failed(session, db.clock()):
            session.closing = True
            db.stats.auth_closed += 1
            log.warning("closing the connection of client %s after %d failed AUTHs",
                        session.peer, session.auth_failures)
            raise CommandError(errors.AUTH_FAILED,
                               f"wrong password; that was {session.auth_failures} failed "
                               "AUTHs on this connection: it is being closed")
        wait = ("" if session.hold_until is None else
                f"; the connection's next command waits "
                f"{session.hold_until - db.clock():.1f} s (repeated failures)")
        held = "" if not session.authenticated else "; the session stays authenticated"
        raise CommandError(errors.AUTH_FAILED, f"wrong password{held}{wait}")
    session.authenticated = True
    return encode_ok()


def cmd_stats(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """STATS: counters about the server, as a JSON object."""
    _no_args(rest, "STATS")
    stats, store = db.stats, db.store
    by_level = {
        level: {
            "started": stats.started[level],
            "committed": stats.committed[level],
            "rolled_back": stats.rolled_back[level],
        }
        for level in LEVELS
    }
    started = sum(stats.started.values())
    committed = sum(stats.committed.values())
    rolled_back = sum(stats.rolled_back.values())
    return encode_result({
        "uptime_seconds": round(stats.uptime(), 3),
        "clients": {"connected": stats.clients_connected, "total": stats.clients_total},
        "commands": dict(stats.commands),
        "errors": dict(stats.errors),
        "keys": store.committed_key_count(),
        "data_bytes": store.data_bytes,
        "commit_seq": store.seq,
        "isolation_default": db.settings.isolation,
        "transactions": {
            "started": started,
            "committed": committed,
            "rolled_back": rolled_back,
            "open": started - committed - rolled_back,
            "conflicts": sum(stats.conflicts.values()),
            "conflicts_by_cause": dict(stats.conflicts),
            "by_level": by_level,
            "versions": store.version_stats(),
        },
        "limits": {
            "max_data_bytes": db.settings.max_data_bytes,
            "open_txn_bytes": db.open_txn_bytes,
            "max_txn_bytes": db.settings.max_txn_bytes,
            "txn_timeout_seconds": db.settings.txn_timeout,
        },
        "security": {
            "http_refused": stats.http_refused,
            "auth_failures": stats.auth_failures,
            "auth_closed": stats.auth_closed,
            "txn_timeouts": stats.txn_timeouts,
        },
        **db.persistence.stats(),
    })


def _parse_scan(db: CommandExecutor, rest: str) -> tuple[str, str | None, int, bool]:
    """SCAN's options as ``(prefix, after, limit, values)``; BAD_REQUEST naming the problem."""
    options: dict[str, str] = {}
    # Seven words at most are valid: stop there (an eighth item is the unsplit rest, an error).
    words = split_words(rest, 7)
    at = 0
    while at < len(words):
        word = words[at]
        option = word.upper() if word.isascii() else word
        if option not in ("PREFIX", "AFTER", "LIMIT", "VALUES"):
            raise CommandError(errors.BAD_REQUEST,
                               f"unknown SCAN option {_quote(word)}; {SCAN_USAGE}")
        if option in options:
            raise CommandError(errors.BAD_REQUEST,
                               f"SCAN option {option} given twice; {SCAN_USAGE}")
        if option == "VALUES":
            options[option] = ""
            at += 1
            continue
        if at + 1 == len(words):
            raise CommandError(errors.BAD_REQUEST,
                               f"SCAN option {option} needs a value; {SCAN_USAGE}")
        options[option] = words[at + 1]
        at += 2
    prefix = db.check_key(options["PREFIX"]) if "PREFIX" in options else ""
    after = db.check_key(options["AFTER"]) if "AFTER" in options else None
    limit = SCAN_DEFAULT_LIMIT
    if "LIMIT" in options:
        text = options["LIMIT"]
        if not (text.isascii() and text.isdigit()) or int(text) == 0:
            raise CommandError(errors.BAD_REQUEST,
                               f"SCAN LIMIT must be a whole number from 1 to {SCAN_MAX_LIMIT}, "
                               f"got {_quote(text)}; {SCAN_USAGE}")
        limit = int(text)
        if limit > SCAN_MAX_LIMIT:
            raise CommandError(errors.BAD_REQUEST,
                               f"SCAN LIMIT {limit} is over the maximum of {SCAN_MAX_LIMIT} keys "
                               "per page; page through with AFTER instead")
    return prefix, after, limit, "VALUES" in options


def cmd_scan(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """SCAN [PREFIX p] [AFTER k] [LIMIT n] [VALUES]: keys in order, one page; result
    {"keys": [...], "more": bool} (+ "values": [...])."""
    prefix, after, limit, values = _parse_scan(db, rest)
    page = db.store.scan(prefix, after, limit, session.txn, values=values,
                         max_chars=SCAN_PAGE_CHARS)
    result: dict[str, object] = {"keys": page.keys, "more": page.more}
    if values:
        result["values"] = page.values
    return encode_result(result)


HELP_TEXT: list[str] = [
    "PUT key value      add or overwrite (the value is the rest of the line)",
    "GET key            read a value (NOT_FOUND if there is none)",
    "DEL key            delete a key (a missing key is fine)",
    "START [read-committed|snapshot|serializable]   open a transaction",
    "COMMIT             make the transaction's writes visible; result {\"seq\": N}",
    "ROLLBACK           discard the transaction's writes",
    "SCAN [PREFIX p] [AFTER k] [LIMIT n] [VALUES]   keys in order, one page (LIMIT: default "
    "100, max 10000); result {\"keys\", \"more\"} (+ \"values\"); next page: AFTER the last key",
    "PING [text]        PONG, or the text back",
    "AUTH password      authenticate when the server has a password",
    "STATS              server counters as a JSON object",
    "HELP               this list",
    "QUIT               close the connection",
]


def cmd_help(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """HELP: the list of commands."""
    return encode_result(HELP_TEXT)


def cmd_quit(db: CommandExecutor, session: Session, rest: str) -> bytes:
    """QUIT: Ok, then the server closes the connection (rolling back an open transaction)."""
    _no_args(rest, "QUIT")
    session.closing = True
    return encode_ok()


COMMANDS: dict[str, Handler] = {
    "PUT": cmd_put,
    "GET": cmd_get,
    "DEL": cmd_del,
    "START": cmd_start,
    "COMMIT": cmd_commit,
    "ROLLBACK": cmd_rollback,
    "SCAN": cmd_scan,
    "PING": cmd_ping,
    "AUTH": cmd_auth,
    "STATS": cmd_stats,
    "HELP": cmd_help,
    "QUIT": cmd_quit,
}

# Lines that are just a verb in capitals, and what they run: the command with no arguments,
# exactly what parsing the line would find (execute() skips the parsing for them).
BARE_LINES: dict[bytes, tuple[str, Handler]] = {
    verb.encode(): (verb, handler) for verb, handler in COMMANDS.items()}
