"""The connection limits the loop enforces, as plain values and reply lines (no IO).

Each limit is a flag of ``config.py`` with a documented default (README, "Security"); when one
is hit the client gets one ``LIMIT`` error line naming the flag, then the connection closes.
"""

from __future__ import annotations

from . import errors
from .protocol import encode_error


def too_many_clients(max_clients: int) -> bytes:
    """The line a client gets when the server already has ``--max-clients`` connections."""
    return encode_error(
        errors.LIMIT,
        f"too many clients: the server is at its limit of {max_clients} connections "
        "(--max-clients); the connection is being closed, try again later",
    )


def idle_too_long(idle_timeout: float) -> bytes:
    """The line an idle client gets before the server closes its connection."""
    return encode_error(
        errors.LIMIT,
        f"connection idle for {idle_timeout:g} s (--idle-timeout); it is being closed "
        "and its open transaction, if any, rolled back",
    )


def over_buffer_budget(budget: int, held: int) -> bytes:
    """The line the biggest client gets when all clients' buffers pass the budget."""
    return encode_error(
        errors.LIMIT,
        f"the server's buffers for all clients passed their budget of {budget} bytes "
        f"(--client-buffer-budget) and this connection held the most ({held} bytes of "
        "unread replies and unrun requests); it is being closed",
    )


class BufferBudget:
    """The bytes held for all clients (input not yet run, replies not yet sent) against a
    budget, in the spirit of Redis's ``maxmemory-clients``.

    The loop adds each change of a connection's holding to :attr:`total` (inline: it runs
    once per connection per loop turn); once the total passes :attr:`limit`, :meth:`over`
    says so and the loop disconnects the biggest client.
    """

    __slots__ = ("limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def over(self) -> bool:
        """True while the clients together hold more than the budget."""
        return self.total > self.limit
