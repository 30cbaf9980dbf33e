#!/usr/bin/env python3
"""Read-modify-write throughput at each isolation level: N clients increment hot counters.

Each client (a thread with its own socket) loops: pick one of ``--keys`` counters, then
``START <level>``, ``GET k``, ``PUT k v+1``, ``COMMIT``. A PUT that gets CONFLICT is rolled
back; a COMMIT that gets CONFLICT has been rolled back by the server; either counts as an
abort and the client moves on. All three levels are measured in the same run, alternating
(the order flips every run), each on fresh counters, and the median of ``--runs`` runs is
printed: committed increments per second, abort rate, and lost updates (committed
increments that the counters do not show; read-committed allows them, snapshot and
serializable must show none).

    python benchmarks/rmw.py --clients 8 --keys 4 --seconds 2 --runs 3

starts its own in-memory server on a free port (stopped by its PID at the end) unless
``--port`` names a running one on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bank import with_server  # the shared "start a server unless --port" helper
from support import RawConn

LEVELS = ("read-committed", "snapshot", "serializable")


@dataclass
class Measurement:
    """One level's run: committed increments, aborts, lost updates, elapsed seconds."""

    level: str
    commits: int = 0
    aborts: int = 0
    lost: int = 0
    seconds: float = 0.0

    @property
    def ops(self) -> float:
        """Committed increments per second."""
        return self.commits / self.seconds if self.seconds else 0.0

    @property
    def abort_rate(self) -> float:
        """The share of attempts that ended in CONFLICT."""
        attempts = self.commits + self.aborts
        return self.aborts / attempts if attempts else 0.0


def _client(port: int, level: str, keys: list[str], seed: int, deadline: float,
            max_txns: int, totals: Measurement, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    conn = RawConn(port)
    commits = aborts = 0
    try:
        while time.monotonic() < deadline and commits + aborts < max_txns:
            key = rng.choice(keys)
            _ok(conn.ask(f"START {level}"))
            value = int(_ok(conn.ask(f"GET {key}"))["result"])
            reply = conn.ask(f"PUT {key} {value + 1}")
            if reply.get("code") == "CONFLICT":
                _ok(conn.ask("ROLLBACK"))
                aborts += 1
                continue
            _ok(reply)
            reply = conn.ask("COMMIT")
            if reply.get("code") == "CONFLICT":
                aborts += 1
                continue
            _ok(reply)
            commits += 1
    finally:
        conn.close()
        with lock:
            totals.commits += commits
            totals.aborts += aborts


def _ok(reply: dict) -> dict:
    if reply.get("status") != "Ok":
        raise RuntimeError(f"unexpected reply: {reply}")
    return reply


def measure(port: int, level: str, *, clients: int, keys: int, seconds: float,
            max_txns: int, tag: str, seed: int = 0) -> Measurement:
    """Run the increment workload at ``level`` for ``seconds`` on fresh counters (named with
    ``tag``) and return what it did, lost updates included."""
    names = [f"rmw-{tag}-{n}" for n in range(keys)]
    admin = RawConn(port)
    for name in names:
        _ok(admin.ask(f"PUT {name} 0"))
    result = Measurement(level)
    lock = threading.Lock()
    started = time.monotonic()
    threads = [threading.Thread(target=_client, args=(
        port, level, names, seed * 1000 + n, started + seconds, max_txns, result, lock))
        for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    shown = sum(int(_ok(admin.ask(f"GET {name}"))["result"]) for name in names)
    admin.close()
    result.lost = result.commits - shown
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure both levels ``--runs`` times and print each run and the medians."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    p.add_argument("--keys", type=int, default=4, help="hot counters (default 4)")
    p.add_argument("--seconds", type=float, default=2.0, help="per level per run (default 2)")
    p.add_argument("--runs", type=int, default=3, help="runs; the median is shown (default 3)")
    p.add_argument("--max-txns", type=int, default=1_000_000,
                   help="at most this many attempts per client per measurement")
    p.add_argument("--port", type=int, help="use a running server on 127.0.0.1:PORT")
    args = p.parse_args(argv)

    def run_all(port: int) -> dict[str, list[Measurement]]:
        results: dict[str, list[Measurement]] = {level: [] for level in LEVELS}
        for run in range(args.runs):
            order = LEVELS if run % 2 == 0 else LEVELS[::-1]
            for level in order:
                m = measure(port, level, clients=args.clients, keys=args.keys,
                            seconds=args.seconds, max_txns=args.max_txns,
                            tag=f"{run}-{level}", seed=run)
                results[level].append(m)
                print(f"run {run + 1} {level:>14}: {m.ops:8.0f} commits/s, abort rate "
                      f"{m.abort_rate:6.1%}, lost updates {m.lost}", flush=True)
        return results

    print(f"rmw: {args.clients} clients, {args.keys} keys, {args.seconds} s per level, "
          f"{args.runs} runs")
    results = with_server(args.port, run_all)
    print("median:")
    failed = False
    for level in LEVELS:
        runs = results[level]
        lost = sum(m.lost for m in runs)
        print(f"  {level:>14}: {statistics.median(m.ops for m in runs):8.0f} commits/s, "
              f"abort rate {statistics.median(m.abort_rate for m in runs):6.1%}, "
              f"lost updates {lost} in {sum(m.commits for m in runs)} commits")
        failed |= level != "read-committed" and lost != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
