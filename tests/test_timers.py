"""The loop's timers, driven by a fake clock: order, cancelling, and a heap that stays small."""

from __future__ import annotations

import random

from support import FakeClock

from kvloop.timers import COMPACT_MIN_DEAD, Timers


def test_callbacks_run_when_due_in_time_order():
    clock = FakeClock()
    timers = Timers(clock)
    ran: list[str] = []
    timers.call_later(2.0, lambda: ran.append("b"))
    timers.call_later(1.0, lambda: ran.append("a"))
    timers.call_at(clock.now + 2.0, lambda: ran.append("c"))  # same time as b: after it
    assert timers.timeout() == 1.0
    timers.run_due()
    assert ran == []
    clock.now += 1.5
    timers.run_due()
    assert ran == ["a"]
    assert timers.timeout() == 0.5
    clock.now += 10
    assert timers.timeout() == 0.0
    timers.run_due()
    assert ran == ["a", "b", "c"]
    assert timers.timeout() is None
    assert len(timers) == 0


def test_a_cancelled_timer_never_runs_and_does_not_set_the_timeout():
    clock = FakeClock()
    timers = Timers(clock)
    ran: list[str] = []
    early = timers.call_later(1.0, lambda: ran.append("early"))
    timers.call_later(5.0, lambda: ran.append("late"))
    early.cancel()
    early.cancel()  # twice is harmless
    assert not early.active
    assert len(timers) == 1
    assert timers.timeout() == 5.0  # the cancelled one no longer decides how long to sleep
    clock.now += 6
    timers.run_due()
    assert ran == ["late"]


def test_cancel_after_running_is_harmless_and_a_callback_may_cancel_others():
    clock = FakeClock()
    timers = Timers(clock)
    ran: list[int] = []
    handles = [timers.call_later(1.0 + i / 1000, lambda i=i: ran.append(i)) for i in range(300)]

    def cancel_the_rest() -> None:
        ran.append(-1)
        for handle in handles[1:]:  # enough to make the heap rebuild itself mid-run
            handle.cancel()

    handles[0].cancel()
    handles[0] = timers.call_later(0.5, cancel_the_rest)
    clock.now += 2
    timers.run_due()
    assert ran == [-1]
    handles[0].cancel()  # already ran
    assert len(timers) == 0
    assert timers.timeout() is None


def test_the_heap_does_not_grow_as_per_connection_timers_come_and_go():
    clock = FakeClock()
    timers = Timers(clock)
    rng = random.Random(7)
    live = []
    biggest = 0
    for _ in range(100_000):
        # connections arrive with an idle timer, and most leave before it fires
        live.append(timers.call_later(rng.uniform(30, 300), lambda: None))
        if len(live) > 200:
            live.pop(rng.randrange(len(live))).cancel()
        biggest = max(biggest, timers.heap_size)
    assert len(timers) == 200
    assert biggest <= 2 * 200 + COMPACT_MIN_DEAD + 2, biggest
