#!/usr/bin/env python3
"""The Python client's own speed: round trips per second and pipelined operations per second.

Three workloads, each run ``--runs`` times (alternating), medians printed:

- ``get``: ``Client.get`` in a loop, one command per round trip;
- ``get-probe``: the same with a client that, as kvloop's did before, probes the socket
  (``recv(MSG_PEEK)`` between two blocking-mode changes: three syscalls) before every command;
- ``put``: ``Client.put`` in a loop, one command per round trip;
- ``txn``: ``with client.transaction(): put; put`` (START, PUT, PUT, COMMIT), transactions/s;
- ``pipeline``: ``Client.pipeline`` of ``--batch`` GETs at a time, replies per second.

    python benchmarks/client_bench.py --seconds 2 --runs 5

starts its own in-memory server on a free port (stopped by its PID at the end) unless
``--port`` names a running one on 127.0.0.1. A round trip between two processes that the
scheduler moves around varies 2-3x from run to run, so on a machine with two CPUs or more
they are pinned: ``--pin split`` (the default) puts the server on the first CPU and this
client on the second, as a client on another machine would be (a round trip then includes
waking the other CPU); ``--pin same`` puts both on the second CPU (a round trip then costs
the CPU time of both sides, so it shows the client's own cost best); ``--pin none``.
Compare numbers taken in the same run, on the same machine, never across machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import ServerProcess

from kvloop import Client

KEYS = 1000


class ProbingClient(Client):
    """The client as it was: a closed-connection probe before every command, not only COMMIT."""

    def _roundtrip(self, line: bytes):
        sock = self._open_socket()
        if self._peer_closed(sock):
            raise self._lost(None, "the server closed the connection")
        return super()._roundtrip(line)


def _loop(call: Callable[[int], int], seconds: float) -> tuple[float, float]:
    """Call ``call(i)`` (it returns how many operations it did) for ``seconds``: operations
    per second, and the client's own CPU time per operation in microseconds."""
    done = 0
    i = 0
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        done += call(i)
        i += 1
        if i % 64 == 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return done / elapsed, (time.process_time() - cpu) * 1e6 / done


def measure(port: int, workload: str, seconds: float, batch: int) -> tuple[float, float]:
    """One run of ``workload`` on a fresh connection: operations (or transactions) per
    second, and the client's CPU microseconds per operation."""
    client_class = ProbingClient if workload == "get-probe" else Client
    with client_class("127.0.0.1", port) as db:
        db.pipeline([f"PUT key{i} value-{i:06d}" for i in range(KEYS)])

        def get(i: int) -> int:
            db.get(f"key{i % KEYS}")
            return 1

        def put(i: int) -> int:
            db.put(f"key{i % KEYS}", "v" * 100)
            return 1

        def txn(i: int) -> int:
            with db.transaction():
                db.put(f"key{i % KEYS}", "a")
                db.put(f"key{(i + 1) % KEYS}", "b")
            return 1

        gets = [f"GET key{i % KEYS}" for i in range(batch)]

        def pipeline(i: int) -> int:
            return len(db.pipeline(gets))

        calls = {"get": get, "get-probe": get, "put": put, "txn": txn, "pipeline": pipeline}
        return _loop(calls[workload], seconds)


WORKLOADS = ("get", "get-probe", "put", "txn", "pipeline")
UNITS = {"get": "round trips/s", "get-probe": "round trips/s", "put": "round trips/s",
         "txn": "transactions/s", "pipeline": "replies/s"}


def run_all(port: int, seconds: float, runs: int,
            batch: int) -> dict[str, list[tuple[float, float]]]:
    """Every workload ``runs`` times, interleaved, the order rotating each run."""
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in WORKLOADS}
    for run in range(runs):
        order = WORKLOADS[run % len(WORKLOADS):] + WORKLOADS[:run % len(WORKLOADS)]
        for name in order:
            results[name].append(measure(port, name, seconds, batch))
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure and print one line per workload: median, min and max of the runs."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=2.0, help="length of each run (default 2)")
    p.add_argument("--runs", type=int, default=5, help="runs per workload (default 5)")
    p.add_argument("--batch", type=int, default=100,
                   help="GETs per pipeline() call (default 100)")
    p.add_argument("--port", type=int, help="use a running server on 127.0.0.1:PORT")
    p.add_argument("--pin", choices=("split", "same", "none"), default="split",
                   help="server and client on two CPUs (default), on the same one, or free")
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = args.pin != "none" and len(cpus) >= 2
    server_cpu = cpus[0] if args.pin == "split" else cpus[-1]
    if pin:
        os.sched_setaffinity(0, {cpus[-1]})
    if args.port is not None:
        results = run_all(args.port, args.seconds, args.runs, args.batch)
    else:
        with tempfile.TemporaryDirectory(prefix="kvloop-bench-") as tmp:
            server = ServerProcess(Path(tmp), "--in-memory")
            try:
                if pin:
                    os.sched_setaffinity(server.proc.pid, {server_cpu})
                results = run_all(server.port, args.seconds, args.runs, args.batch)
            finally:
                server.stop()
    where = f"server on CPU {server_cpu}, client on CPU {cpus[-1]}" if pin else "not pinned"
    print(f"kvloop client, {args.runs} runs of {args.seconds:g} s each "
          f"(pipeline batch {args.batch}; {where}): median [min - max], "
          "and the client's median CPU time per operation")
    for name in WORKLOADS:
        rates = [rate for rate, _ in results[name]]
        cpu = statistics.median(cpu for _, cpu in results[name])
        print(f"  {name:9s} {statistics.median(rates):>10,.0f} {UNITS[name]:15s}"
              f" [{min(rates):,.0f} - {max(rates):,.0f}]   client CPU {cpu:6.1f} us/op")
    return 0


if __name__ == "__main__":
    sys.exit(main())
