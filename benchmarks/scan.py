"""SCAN's costs, measured against real servers (and the store in-process).

    python benchmarks/scan.py pages      [--keys 1000000]   paging through every key, 100 a time;
                                                            one page of 100 under a prefix
    python benchmarks/scan.py inproc     [--keys 1000000]   the same paging, Store.scan alone
    python benchmarks/scan.py stall      [--inserts 100000] another client's PING latency while
                                                            SCANs run right after many inserts
    python benchmarks/scan.py memory     --baseline DIR     server RSS with 1,000,000 keys,
                                                            this checkout against DIR's
    python benchmarks/scan.py throughput --baseline DIR     the read-committed loadgen benchmark,
                                                            this checkout against DIR's

``DIR`` is another checkout holding ``server.py`` (for example the commit before SCAN, made with
``git archive <commit> | tar -x -C DIR``). Servers are started in memory on free loopback ports,
pinned to CPU 0 where the machine allows, and stopped by their PID. Every phase is bounded in
count and time. Numbers are medians of ``--runs`` runs; servers compared are run alternately in
one run, because the machine may be shared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support import ServerProcess  # noqa: E402

from kvloop.store import Store  # noqa: E402

# The team's C load generator, next to the checkout (../shared) or next to its worktree folder.
LOADGEN_SOURCES = [up / "shared" / "tools" / "loadgen" / "loadgen.c"
                   for up in (ROOT.parent, ROOT.parent.parent)]
VALUE = "v" * 100
# Pipelined requests per batch when loading keys: many per send, few enough to stay far below
# the server's per-connection output cap.
BATCH = 5000


# -- servers and connections ----------------------------------------------------------------

@contextmanager
def running_server(checkout: Path = ROOT, cpu: int | None = 0) -> Iterator[ServerProcess]:
    """An in-memory server from ``checkout`` on a free port, pinned to ``cpu`` if possible."""
    with tempfile.TemporaryDirectory(prefix="kvloop-scan-bench-") as tmp:
        server = ServerProcess(Path(tmp), "--in-memory", script=checkout / "server.py")
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            with suppress(OSError):
                os.sched_setaffinity(server.proc.pid, {cpu})
        try:
            yield server
        finally:
            server.stop()


class Conn:
    """A blocking socket speaking request lines and counting reply lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self) -> bytes:
        """The next reply line."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def ask(self, request: str) -> bytes:
        """One round trip."""
        self.sock.sendall(request.encode() + b"\n")
        return self.line()

    def pipeline(self, requests: list[str]) -> None:
        """Send ``requests`` in batches and wait for every reply; fail on an error reply."""
        for start in range(0, len(requests), BATCH):
            batch = requests[start:start + BATCH]
            self.sock.sendall(("\n".join(batch) + "\n").encode())
            replies = 0
            while replies < len(batch):
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                if b"Error" in chunk:
                    raise RuntimeError(f"error reply while loading: {chunk[:200]!r}")
                replies += chunk.count(b"\n")

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def key_name(i: int) -> str:
    """Key number ``i``: ``key:<i>`` (as the C load generator names them; not in sort order)."""
    return f"key:{i}"


def load_keys(port: int, count: int, start: int = 0) -> float:
    """PUT ``count`` new keys with 100-byte values, pipelined; seconds taken."""
    conn = Conn(port)
    began = time.perf_counter()
    for first in range(start, start + count, 100_000):
        last = min(first + 100_000, start + count)
        conn.pipeline([f"PUT {key_name(i)} {VALUE}" for i in range(first, last)])
    conn.close()
    return time.perf_counter() - began


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc (this measurement needs Linux)")


# -- paging ---------------------------------------------------------------------------------

def page_through(conn: Conn, limit: int, prefix: str = "") -> tuple[int, float]:
    """Fetch every key, ``limit`` a page; (keys seen, seconds)."""
    import json
    seen = 0
    after = ""
    base = "SCAN" + (f" PREFIX {prefix}" if prefix else "") + f" LIMIT {limit}"
    began = time.perf_counter()
    while True:
        result = json.loads(conn.ask(base + after))["result"]
        keys = result["keys"]
        seen += len(keys)
        if not result["more"]:
            return seen, time.perf_counter() - began
        after = f" AFTER {keys[-1]}"


def prefix_pages(conn: Conn, keys: int, samples: int, seed: int = 1) -> list[float]:
    """Seconds for each of ``samples`` single SCAN PREFIX p LIMIT 100 round trips, with p a
    random 4-digit prefix of the key names (``key:1234`` has 100+ keys under it)."""
    rng = random.Random(seed)
    width = max(len(str(keys - 1)) - 2, 1)
    times = []
    for _ in range(samples):
        prefix = key_name(rng.randrange(10 ** (width - 1), 10 ** width))
        began = time.perf_counter()
        reply = conn.ask(f"SCAN PREFIX {prefix} LIMIT 100")
        times.append(time.perf_counter() - began)
        assert reply.startswith(b'{"status":"Ok"'), reply[:200]
    return times


def cmd_pages(args: argparse.Namespace) -> None:
    with running_server() as server:
        took = load_keys(server.port, args.keys)
        print(f"loaded {args.keys:,} keys in {took:.1f} s")
        conn = Conn(server.port)
        per_key = []
        for run in range(args.runs):
            seen, took = page_through(conn, 100)
            assert seen == args.keys, (seen, args.keys)
            per_key.append(took / seen * 1e6)
            print(f"  run {run + 1}: {seen:,} keys, 100 per page, in {took:.2f} s: "
                  f"{per_key[-1]:.2f} us per key")
        pings = [conn.ask("PING") for _ in range(10)]  # the connection is still fine
        assert all(p.endswith(b'"PONG"}') for p in pings)
        cpu_before = cpu_seconds(server.proc.pid)
        times = sorted(prefix_pages(conn, args.keys, args.samples))
        cpu_per_page = (cpu_seconds(server.proc.pid) - cpu_before) / len(times)
        conn.close()
    print(f"paging {args.keys:,} keys, LIMIT 100 (round trips included): median "
          f"{statistics.median(per_key):.2f} us per key returned (target < 10)")
    print(f"one page of 100 under a prefix, {len(times)} round trips: median "
          f"{statistics.median(times) * 1e3:.3f} ms, p99 {times[len(times) * 99 // 100] * 1e3:.3f}"
          f" ms, max {times[-1] * 1e3:.3f} ms (target < 1 ms); server CPU per page "
          f"{cpu_per_page * 1e3:.3f} ms")


def cmd_inproc(args: argparse.Namespace) -> None:
    store = Store()
    began = time.perf_counter()
    for i in range(args.keys):
        store.put(key_name(i), VALUE)
    print(f"{args.keys:,} autocommit PUTs into a Store in {time.perf_counter() - began:.2f} s")
    per_key = []
    for _ in range(args.runs):
        began = time.perf_counter()
        seen, after = 0, None
        while True:
            page = store.scan("", after, 100)
            seen += len(page.keys)
            if not page.more:
                break
            after = page.keys[-1]
        per_key.append((time.perf_counter() - began) / seen * 1e6)
    print(f"Store.scan paging, LIMIT 100: median {statistics.median(per_key):.3f} us per key")


# -- stalls ---------------------------------------------------------------------------------

def _pinger(port: int, stop, queue) -> None:
    conn = Conn(port)
    samples = []
    deadline = time.time() + 600  # bounded even if the parent dies
    while not stop.is_set() and time.time() < deadline:
        began = time.time()
        conn.ask("PING")
        samples.append((began, time.time() - began))
        time.sleep(0.0005)
    conn.close()
    queue.put(samples)


def cmd_stall(args: argparse.Namespace) -> None:
    with running_server(cpu=None if args.no_pin else 0) as server:
        ctx = multiprocessing.get_context("spawn")
        queue, stop = ctx.Queue(), ctx.Event()
        pinger = ctx.Process(target=_pinger, args=(server.port, stop, queue))
        pinger.start()
        windows = []
        conn = Conn(server.port)
        try:
            time.sleep(2.0)  # the pinger alone: the machine's own noise, for comparison
            quiet_until = time.time()
            for round_ in range(args.rounds):
                load_keys(server.port, args.inserts, start=round_ * args.inserts)
                began = time.time()
                for request in ["SCAN", "SCAN LIMIT 10000", "SCAN LIMIT 10000 VALUES",
                                "SCAN PREFIX key:9 LIMIT 10000 VALUES"]:
                    reply = conn.ask(request)
                    assert reply.startswith(b'{"status":"Ok"'), reply[:200]
                page_through(conn, 10000)
                windows.append((began, time.time()))
            # Server CPU per request (immune to waiting for a CPU on a busy machine): the
            # longest a SCAN can hold up other clients on an idle machine.
            cpu_per = {}
            for request in ["SCAN LIMIT 10000", "SCAN LIMIT 10000 VALUES",
                            "SCAN PREFIX key:9 LIMIT 10000 VALUES", "SCAN LIMIT 100"]:
                before = cpu_seconds(server.proc.pid)
                for _ in range(args.repeat):
                    conn.ask(request)
                cpu_per[request] = (cpu_seconds(server.proc.pid) - before) / args.repeat
        finally:
            conn.close()
            stop.set()
            samples = queue.get(timeout=30)
            pinger.join(10)
    during = [lat for at, lat in samples for lo, hi in windows if lo - 0.001 <= at <= hi]
    overall = [lat for _, lat in samples]
    quiet = [lat for at, lat in samples if at < quiet_until]
    print(f"{args.rounds} rounds of {args.inserts:,} inserts, each followed at once by SCAN, "
          "SCAN LIMIT 10000 (+ VALUES, + a prefix) and paging through every key 10000 a time:")
    print(f"  another client's PING while the SCANs ran: {len(during)} pings, max "
          f"{max(during, default=0) * 1e3:.1f} ms, median "
          f"{statistics.median(during) * 1e3 if during else 0:.2f} ms (target: max < 20 ms)")
    print(f"  over the whole run (inserts included): max {max(overall) * 1e3:.1f} ms")
    print(f"  the same PING with the server idle (before the work, the machine's noise): "
          f"{len(quiet)} pings, max {max(quiet, default=0) * 1e3:.1f} ms")
    for request, seconds in cpu_per.items():
        print(f"  server CPU per {request!r} ({args.repeat} runs, {args.rounds * args.inserts:,} "
              f"keys): {seconds * 1e3:.2f} ms")


# -- memory and throughput against a baseline checkout ---------------------------------------

def cmd_memory(args: argparse.Namespace) -> None:
    results: dict[str, list[int]] = {"baseline": [], "this": []}
    for _ in range(args.runs):
        for name, checkout in (("baseline", args.baseline), ("this", ROOT)):
            with running_server(checkout) as server:
                empty = rss_kib(server.proc.pid)
                load_keys(server.port, args.keys)
                full = rss_kib(server.proc.pid)
                results[name].append(full - empty)
                print(f"  {name}: RSS {empty / 1024:.1f} MiB empty, {full / 1024:.1f} MiB with "
                      f"{args.keys:,} keys: {(full - empty) * 1024 / args.keys:.1f} B per key")
    base, this = (statistics.median(results[n]) * 1024 / args.keys for n in ("baseline", "this"))
    print(f"RSS per key (median of {args.runs}): baseline {base:.1f} B, this {this:.1f} B: "
          f"the index costs {this - base:+.1f} B per key (target <= 24)")


def build_loadgen() -> str:
    """Path of the C load generator, built from ../shared/tools/loadgen on first use."""
    target = Path(tempfile.gettempdir()) / "kvloop-scan-bench-loadgen"
    if not target.exists():
        source = next((path for path in LOADGEN_SOURCES if path.exists()), None)
        if source is None:
            raise SystemExit(f"needs the load generator source at {LOADGEN_SOURCES[0]}")
        subprocess.run(["cc", "-O2", "-o", str(target), str(source)], check=True)
    return str(target)


def loadgen_run(loadgen: str, port: int, pid: int,
                args: argparse.Namespace) -> tuple[float, float]:
    """ops/s of one loadgen run (50 connections, ``--mix`` over ``--keys`` keys, prefilled
    unless ``--creations``), and the server's CPU microseconds per op (steadier than ops/s when
    the machine is shared)."""
    cmd = [loadgen, "-p", str(port), "-c", "50", "-P", str(args.pipeline), "--mix", args.mix,
           "-k", str(args.keys), "-d", str(args.seconds), "--server-pid", str(pid)]
    if not args.creations:
        cmd.append("--prefill")
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 120,
                         check=True).stdout
    fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
    if fields.get("errors", "0") != "0" or fields.get("error_replies", "0") != "0":
        raise RuntimeError(f"loadgen saw errors: {out}")
    ops = float(fields["ops_per_sec"])
    return ops, float(fields["server_cpu_pct"]) / 100 / ops * 1e6


def cmd_throughput(args: argparse.Namespace) -> None:
    loadgen = build_loadgen()
    results: dict[str, list[float]] = {"baseline": [], "this": []}
    cpu: dict[str, list[float]] = {"baseline": [], "this": []}
    for run in range(args.runs):
        for name, checkout in (("baseline", args.baseline), ("this", ROOT)):
            with running_server(checkout) as server:
                ops, us_per_op = loadgen_run(loadgen, server.port, server.proc.pid, args)
                results[name].append(ops)
                cpu[name].append(us_per_op)
                print(f"  run {run + 1} {name}: {ops:,.0f} ops/s, server CPU "
                      f"{us_per_op:.2f} us per op")
    base, this = (statistics.median(results[n]) for n in ("baseline", "this"))
    base_cpu, this_cpu = (statistics.median(cpu[n]) for n in ("baseline", "this"))
    what = "creating keys" if args.creations else "prefilled keys"
    print(f"50 conns, pipeline {args.pipeline}, {args.mix} over {args.keys:,} {what}, medians "
          f"of {args.runs}: "
          f"baseline {base:,.0f} ops/s, this {this:,.0f} ops/s: ratio {this / base:.3f} "
          "(target >= 0.95)")
    print(f"server CPU per op, medians: baseline {base_cpu:.2f} us, this {this_cpu:.2f} us: "
          f"ratio {this_cpu / base_cpu:.3f}")


def main(argv: list[str] | None = None) -> int:
    """Run one measurement from the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    pages = sub.add_parser("pages", help="paging and prefix pages over a real server")
    pages.add_argument("--keys", type=int, default=1_000_000)
    pages.add_argument("--samples", type=int, default=1000, help="prefix pages to time")
    pages.add_argument("--runs", type=int, default=3)
    inproc = sub.add_parser("inproc", help="Store.scan paging in this process")
    inproc.add_argument("--keys", type=int, default=1_000_000)
    inproc.add_argument("--runs", type=int, default=3)
    stall = sub.add_parser("stall", help="another client's latency while SCANs run")
    stall.add_argument("--inserts", type=int, default=100_000)
    stall.add_argument("--rounds", type=int, default=3)
    stall.add_argument("--repeat", type=int, default=100, help="runs per CPU measurement")
    stall.add_argument("--no-pin", action="store_true",
                       help="let the kernel place the server (on a busy shared machine a "
                       "server pinned to one CPU waits for it behind other processes)")
    for name in ("memory", "throughput"):
        sp = sub.add_parser(name, help=f"{name}: this checkout against --baseline")
        sp.add_argument("--baseline", type=Path, required=True,
                        help="another checkout (a folder with server.py) to compare with")
        sp.add_argument("--runs", type=int, default=3)
        if name == "memory":
            sp.add_argument("--keys", type=int, default=1_000_000)
        else:
            sp.add_argument("--seconds", type=float, default=5.0)
            sp.add_argument("--pipeline", type=int, default=1)
            sp.add_argument("--mix", default="get:90,put:10", help="loadgen's --mix")
            sp.add_argument("--keys", type=int, default=10_000, help="key space (loadgen -k)")
            sp.add_argument("--creations", action="store_true",
                            help="no prefill: PUTs create keys (the index's add path); use "
                            "with --mix put-only and a large --keys")
    args = p.parse_args(argv)
    {"pages": cmd_pages, "inproc": cmd_inproc, "stall": cmd_stall, "memory": cmd_memory,
     "throughput": cmd_throughput}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
