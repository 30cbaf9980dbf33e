#!/usr/bin/env python3
"""Record a long random transaction history and check it for serializability.

    python benchmarks/history_check.py --txns 20000 --seed 1
    python benchmarks/history_check.py --txns 2000 --level snapshot --workload write-skew

Random transactions (GET/PUT/DEL on a few keys, unique values) from several connections,
interleaved one command at a time by a seeded scheduler (tests/history.py), against an
in-memory server started on a free port (or ``--port`` of a running one, on 127.0.0.1).
Prints how many committed and aborted, then ``no cycle`` or the dependency cycle found, and
any read no isolation level allows (at snapshot and serializable, each read must be the
version current at its transaction's snapshot). Exits 1 if the history is not serializable at
serializable (at read-committed and snapshot a cycle is possible and only read errors fail;
at snapshot a cycle must be write skew, G2-item).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bank import with_server
from history import ABORTED, WORKLOADS, History, check, run_random_history
from support import RawConn


def main(argv: list[str] | None = None) -> int:
    """Run, check and report; the exit status says whether the history passed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--txns", type=int, default=5000, help="transactions to run (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="scheduler and client seed (default 0)")
    p.add_argument("--clients", type=int, default=5, help="connections (default 5)")
    p.add_argument("--keys", type=int, default=4, help="keys k0.. (default 4)")
    p.add_argument("--max-ops", type=int, default=4, help="operations per transaction, at most")
    p.add_argument("--level", choices=("read-committed", "snapshot", "serializable"),
                   default="serializable")
    p.add_argument("--workload", choices=WORKLOADS, default=WORKLOADS[0],
                   help="random GET/PUT/DEL (default), or write-skew: GET two keys, PUT one")
    p.add_argument("--seconds", type=float, default=120.0,
                   help="start no transaction after this long (default 120)")
    p.add_argument("--port", type=int, help="use a running server on 127.0.0.1:PORT")
    args = p.parse_args(argv)

    def record(port: int) -> History:
        return run_random_history(lambda: RawConn(port), txns=args.txns, clients=args.clients,
                                  keys=args.keys, max_ops=args.max_ops, seed=args.seed,
                                  level=args.level, workload=args.workload,
                                  seconds=args.seconds)

    started = time.monotonic()
    history = with_server(args.port, record)
    recorded = time.monotonic()
    result = check(history)
    checked = time.monotonic()
    reasons = Counter(t.abort_reason for t in history.txns if t.status == ABORTED)
    print(f"history: {len(history.txns)} transactions at {args.level}, {args.clients} clients, "
          f"{args.keys} keys, {args.workload} workload, seed {args.seed}")
    print(f"recorded in {recorded - started:.2f} s "
          f"({len(history.txns) / max(recorded - started, 1e-9):.0f} txn/s), "
          f"checked in {checked - recorded:.2f} s")
    print(f"aborted by cause: {dict(reasons)}")
    print(result.describe())
    if args.level == "serializable":
        return 0 if result.ok else 1
    if args.level == "snapshot" and result.cycle is not None:
        return 0 if not result.errors and result.cycle_kind() == "G2-item" else 1
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
