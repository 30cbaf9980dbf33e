#!/usr/bin/env python3
"""The command layer's cost per request line, without sockets: ``execute()`` line by line (the
general path) against ``execute_lines()`` on batches (the path the server takes, with the GET
reply cache and the plain GET/PUT fast paths), on the same lines, in one process.

Workloads (10,000 keys prefilled with 100-byte values, seeded): ``get`` (GETs of existing
keys), ``put`` (autocommit PUTs of 100-byte values), ``mix`` (90% GET / 10% PUT, as
benchmarks/compare_redis.py's rows), ``txn`` (START, PUT, PUT, COMMIT). Each figure is the
median of ``--repeats`` timed passes over ``--lines`` lines, the two paths interleaved; the
batch path's pass follows an untimed one (a warm reply cache, as in a server up a while).

    python benchmarks/hot_path.py
    python benchmarks/hot_path.py --batch 1 --lines 20000     # one line per read, as at P1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kvloop.commands import CommandExecutor
from kvloop.config import Settings
from kvloop.session import Session

KEYS = 10_000
VALUE = b"v" * 100


def workloads(count: int, seed: int) -> dict[str, list[bytes]]:
    """The request lines of each workload."""
    rnd = random.Random(seed)

    def get() -> bytes:
        return b"GET key:%d" % rnd.randrange(KEYS)

    def put() -> bytes:
        return b"PUT key:%d %s" % (rnd.randrange(KEYS), VALUE)

    txn = []
    while len(txn) < count:
        txn += [b"START", put(), put(), b"COMMIT"]
    return {
        "get": [get() for _ in range(count)],
        "put": [put() for _ in range(count)],
        "mix": [get() if rnd.random() < 0.9 else put() for _ in range(count)],
        "txn": txn[:count],
    }


def prefilled() -> tuple[CommandExecutor, Session]:
    """An executor holding KEYS keys, and a session on it."""
    executor = CommandExecutor(Settings())
    session = executor.open_session("bench")
    for key in range(KEYS):
        executor.execute(session, b"PUT key:%d %s" % (key, VALUE))
    return executor, session


def general_pass(lines: list[bytes]) -> float:
    """Seconds for execute() on every line."""
    executor, session = prefilled()
    execute = executor.execute
    start = time.perf_counter()
    for line in lines:
        execute(session, line)
    return time.perf_counter() - start


def batch_pass(lines: list[bytes], batch: int) -> float:
    """Seconds for execute_lines() on batches of ``batch`` lines, once the same lines have run
    (untimed) so that the GET reply cache is as warm as in a server that has been up a while."""
    executor, session = prefilled()
    execute_lines = executor.execute_lines
    replies: list[bytes] = []
    batches = [lines[at:at + batch] for at in range(0, len(lines), batch)]
    for _warm_then_timed in range(2):
        start = time.perf_counter()
        for chunk in batches:
            execute_lines(session, chunk, replies, 1 << 30)
            replies.clear()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Print ns per line for each workload and path, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000, help="lines per pass")
    parser.add_argument("--batch", type=int, default=16,
                        help="lines per execute_lines() call (a pipelined read)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per path")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"ns per line, medians of {args.repeats} passes of {args.lines:,} lines; "
          f"execute_lines() on batches of {args.batch}")
    print(f"{'workload':10s} {'execute()':>10s} {'execute_lines()':>16s} {'ratio':>7s}")
    for name, lines in workloads(args.lines, args.seed).items():
        general, batched = [], []
        for _ in range(args.repeats):
            general.append(general_pass(lines) / len(lines) * 1e9)
            batched.append(batch_pass(lines, args.batch) / len(lines) * 1e9)
        g, b = statistics.median(general), statistics.median(batched)
        print(f"{name:10s} {g:10,.0f} {b:16,.0f} {b / g:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
