"""Policies that keep one client from hurting the others, as plain objects with no IO.

- :class:`AuthThrottle`: how long a connection waits after a failed AUTH, and when it is
  closed. Failures are remembered per connection and per client host, so reconnecting does
  not buy a guesser fresh free tries.
- :class:`TxnIdleDeadlines`: which open transaction has been idle longest (``--txn-timeout``).
- :func:`write_cost`: what one write counts toward ``--max-txn-bytes``.

Time is always passed in (monotonic seconds), so tests drive it with a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator

from .session import Session
from .store import text_bytes

# Failed AUTHs a connection may make without waiting: typos are free.
AUTH_FREE_FAILURES = 3
# The wait after the first failure past the free ones; it doubles with each further failure.
AUTH_FIRST_DELAY_SECONDS = 0.5
AUTH_MAX_DELAY_SECONDS = 8.0
# After this many failed AUTHs the connection is closed (its reply says so).
AUTH_MAX_FAILURES = 10
# A host's failures are forgotten once it has made none for this long.
AUTH_HOST_MEMORY_SECONDS = 300.0
# Hosts remembered at most (the oldest are forgotten first), so a botnet cannot grow it.
AUTH_MAX_HOSTS = 10_000

# What a write inside a transaction costs beyond its key and value bytes: roughly the memory
# of its undo-log entry and write intent, and the reason a transaction of a million tiny
# writes (whose COMMIT or ROLLBACK would block every client) reaches --max-txn-bytes.
WRITE_OVERHEAD_BYTES = 100


def auth_delay(failures: int) -> float:
    """Seconds a connection must wait after its ``failures``-th failed AUTH (0 for none)."""
    past_free = failures - AUTH_FREE_FAILURES
    if past_free <= 0:
        return 0.0
    return min(AUTH_MAX_DELAY_SECONDS, AUTH_FIRST_DELAY_SECONDS * 2 ** (past_free - 1))


def peer_host(peer: str) -> str:
    """The host part of a ``host:port`` or ``[v6host]:port`` peer name."""
    host = peer.rpartition(":")[0] if ":" in peer else peer
    return host.strip("[]")


class AuthThrottle:
    """Counts failed AUTHs per connection and per client host, and says what follows each.

    After a failure the connection waits :func:`auth_delay` of the larger of its own and its
    host's recent failures before its next line runs; after :data:`AUTH_MAX_FAILURES` on one
    connection it is closed. A successful AUTH never waits, whatever others did before.
    """

    def __init__(self) -> None:
        # host -> (failures, monotonic time of the last one); insertion order = oldest first.
        self._hosts: dict[str, tuple[int, float]] = {}

    def failed(self, session: Session, now: float) -> bool:
        """Record a failed AUTH of ``session`` at ``now``: sets its ``hold_until``; True if the
        connection must now be closed."""
        session.auth_failures += 1
        host_failures = self._count_host(peer_host(session.peer), now)
        if session.auth_failures >= AUTH_MAX_FAILURES:
            return True
        delay = auth_delay(max(session.auth_failures, host_failures))
        session.hold_until = now + delay if delay > 0 else None
        return False

    def _count_host(self, host: str, now: float) -> int:
        failures, last = self._hosts.pop(host, (0, now))
        if now - last > AUTH_HOST_MEMORY_SECONDS:
            failures = 0
        failures += 1
        self._hosts[host] = (failures, now)
        while len(self._hosts) > AUTH_MAX_HOSTS:
            del self._hosts[next(iter(self._hosts))]
        return failures

    def hosts_remembered(self) -> int:
        """How many client hosts have recent failures on record."""
        return len(self._hosts)


class TxnIdleDeadlines:
    """The sessions with an open transaction, ordered by when they last sent a command.

    ``touch`` moves a session to the back (dicts keep insertion order), so the front is always
    the one idle longest: :meth:`next_deadline` and :meth:`expired` cost O(1) per session.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._last_active: dict[Session, float] = {}

    def touch(self, session: Session, now: float) -> None:
        """``session`` (with a transaction open) just ran a command at ``now``."""
        last_active = self._last_active
        last_active.pop(session, None)
        last_active[session] = now

    def forget(self, session: Session) -> None:
        """``session`` no longer has a transaction open."""
        self._last_active.pop(session, None)

    def next_deadline(self) -> float | None:
        """When the longest-idle transaction times out, or ``None`` if none is open."""
        for last in self._last_active.values():
            return last + self.timeout
        return None

    def expired(self, now: float) -> Iterator[Session]:
        """Take out, and yield, each session whose transaction has been idle past the timeout."""
        last_active = self._last_active
        while last_active:
            session, last = next(iter(last_active.items()))
            if last + self.timeout > now:
                return
            del last_active[session]
            yield session

    def __len__(self) -> int:
        return len(self._last_active)


def write_cost(key: str, value: str | None) -> int:
    """What one PUT (or DEL, ``value`` None) inside a transaction adds to its size."""
    size = text_bytes(key) + WRITE_OVERHEAD_BYTES
    return size + text_bytes(value) if value is not None else size
