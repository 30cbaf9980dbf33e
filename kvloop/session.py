"""One client connection's state as the command layer sees it, with no socket in it."""

from __future__ import annotations

from .transaction import Transaction


class Session:
    """What the server remembers about one client between its commands.

    ``txn`` is its open transaction (at most one), ``authenticated`` whether it has passed
    AUTH, and ``closing`` is set once it asked to QUIT: no further command of it is run.
    ``hold_until``, when set, is the monotonic instant before which none of its lines may
    run (a delay after failed AUTHs); the server clears it once that time has come.
    ``auth_failures`` counts its failed AUTHs; ``txn_bytes`` is what its open transaction has
    written so far (see :mod:`kvloop.limits`); ``txn_expired``, when set, is why its
    transaction was rolled back behind its back: its next command is answered with that.
    """

    __slots__ = ("session_id", "peer", "txn", "authenticated", "closing", "hold_until",
                 "auth_failures", "txn_bytes", "txn_expired")

    def __init__(self, session_id: int, peer: str = "", authenticated: bool = True) -> None:
        self.session_id = session_id
        self.peer = peer
        self.txn: Transaction | None = None
        self.authenticated = authenticated
        self.closing = False
        self.hold_until: float | None = None
        self.auth_failures = 0
        self.txn_bytes = 0
        self.txn_expired: str | None = None

    def __repr__(self) -> str:
        return f"<Session {self.session_id} {self.peer} txn={self.txn!r}>"
