"""Counters behind the STATS command."""

from __future__ import annotations

import time
from collections import Counter

from .transaction import LEVELS


class Stats:
    """Counts of what the server has done since it started. Plain counters, no IO."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.clients_connected = 0
        self.clients_total = 0
        # Commands run, by verb (a plain dict: cheaper to count into than a Counter).
        self.commands: dict[str, int] = {}
        self.errors: Counter = Counter()
        self.started: dict[str, int] = dict.fromkeys(LEVELS, 0)
        self.committed: dict[str, int] = dict.fromkeys(LEVELS, 0)
        self.rolled_back: dict[str, int] = dict.fromkeys(LEVELS, 0)
        self.conflicts: Counter = Counter()
        self.http_refused = 0  # connections closed by the cross-protocol guard
        self.auth_failures = 0
        self.auth_closed = 0  # connections closed after too many failed AUTHs
        self.txn_timeouts = 0  # transactions rolled back by --txn-timeout

    def uptime(self) -> float:
        """Seconds since the server started."""
        return time.monotonic() - self.started_at
