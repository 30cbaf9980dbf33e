"""Timers for the event loop: callbacks due at a monotonic instant, which can be cancelled.

A heap orders the pending timers; a cancelled timer is marked dead where it lies (lazy
deletion) and counted, and once dead entries outnumber the live ones the heap is rebuilt
from the live ones. So per-connection timers (handshake, idle, AUTH delay, lingering close)
can come and go by the million while the heap stays under twice the number of live timers
plus a small constant. No IO here: the loop asks :meth:`Timers.timeout` how long it may sleep
and calls :meth:`Timers.run_due` once per turn.
"""

from __future__ import annotations

import heapq
import time
from typing import Callable

# Below this many dead entries the heap is never rebuilt: rebuilding a tiny heap buys nothing.
COMPACT_MIN_DEAD = 64


class TimerHandle:
    """One scheduled callback. :meth:`cancel` it to make sure it never runs."""

    __slots__ = ("when", "callback", "_timers")

    def __init__(self, when: float, callback: Callable[[], None], timers: Timers) -> None:
        self.when = when
        self.callback: Callable[[], None] | None = callback
        self._timers = timers

    @property
    def active(self) -> bool:
        """True until the callback has run or the timer was cancelled."""
        return self.callback is not None

    def cancel(self) -> None:
        """Make sure the callback does not run; harmless if it already ran or was cancelled."""
        if self.callback is not None:
            self.callback = None
            self._timers._forget(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "done"
        return f"<TimerHandle at {self.when:.3f} {state}>"


class Timers:
    """Callbacks due at a time; the loop sleeps in ``select`` until the nearest is due.

    ``clock`` is the monotonic clock (tests pass their own to drive time).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._count = 0  # tie-breaker: handles themselves are not comparable
        self._dead = 0  # cancelled entries still in the heap

    def __len__(self) -> int:
        """How many timers are pending (cancelled ones not counted)."""
        return len(self._heap) - self._dead

    @property
    def heap_size(self) -> int:
        """Entries in the heap, cancelled ones included (bounded by about 2x ``len``)."""
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once at the monotonic instant ``when`` (at the end of a loop turn)."""
        handle = TimerHandle(when, callback, self)
        self._count += 1
        heapq.heappush(self._heap, (when, self._count, handle))
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once, ``delay`` seconds from now (at the end of a loop turn)."""
        return self.call_at(self._clock() + delay, callback)

    def timeout(self) -> float | None:
        """Seconds until the nearest timer is due (0 if overdue), or ``None`` if none."""
        heap = self._heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
            self._dead -= 1
        if not heap:
            return None
        return max(0.0, heap[0][0] - self._clock())

    def run_due(self) -> None:
        """Run every callback whose time has come, nearest first."""
        if not self._heap:
            return
        now = self._clock()
        # self._heap, not a local: a callback that cancels timers may rebuild the heap.
        while self._heap and self._heap[0][0] <= now:
            handle = heapq.heappop(self._heap)[2]
            callback = handle.callback
            if callback is None:
                self._dead -= 1
                continue
            handle.callback = None
            callback()

    def _forget(self, handle: TimerHandle) -> None:
        """A handle was cancelled: count it dead, and rebuild once the dead dominate."""
        self._dead += 1
        if self._dead > COMPACT_MIN_DEAD and self._dead * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].callback is not None]
            heapq.heapify(self._heap)
            self._dead = 0
