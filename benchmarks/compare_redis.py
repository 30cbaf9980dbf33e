#!/usr/bin/env python3
"""kvloop against redis-server, side by side, with a C load generator that is not the bottleneck.

Reproduces the table of issue 10: each row is measured ``--runs`` times, alternating the two
servers (the order flips every run), and the medians and their ratio (kvloop / redis) are
printed as a Markdown table. The servers run on the first CPU and the generator on the
second, each pinned with ``taskset``. Rows:

- ``p1``: 50 connections, no pipelining, 90% GET / 10% PUT, 10,000 keys, 100-byte values;
- ``p16``: the same with 16 commands in flight per connection;
- ``latency``: one connection, one command at a time: p50 latency (lower is better);
- ``txn``: 50 connections, START/PUT/PUT/COMMIT against MULTI/SET/SET/EXEC: transactions/s;
- ``durable``: 50 connections, PUT only, kvloop ``--fsync always`` against redis
  ``appendonly yes, appendfsync always`` (fresh servers, data in a temporary folder);
- ``memory``: bytes per key for ``--memory-keys`` keys with 100-byte values (kvloop: growth of
  the process's resident memory; redis: growth of ``used_memory``, and of its RSS);
- ``conns``: ``--held`` idle connections held open, and a lone client's p50 latency then,
  against the same client's latency without them.

With ``--floor``, the rows ``p1``, ``p16`` and ``latency`` also measure
``benchmarks/floor_server.py``: the least a Python ``selectors`` server does per request
(no feature at all), as the floor a Python server can reach on this machine.

    python benchmarks/compare_redis.py                      # every row, 3 runs of 3 s
    python benchmarks/compare_redis.py --rows p1,p16 --runs 5 --seconds 5

kvloop is started with ``--in-memory`` and redis-server with no persistence, both on free
ports of 127.0.0.1, and both are stopped (by PID) at the end. The generator is
``benchmarks/loadgen.c``, compiled with ``cc`` on first use into a cache folder
(``$XDG_CACHE_HOME/kvloop`` or ``~/.cache/kvloop``). ``--generator shared`` uses the team's
``../shared/tools/loadgen/loadgen.c`` instead when it is there (its options are translated),
and ``--generator PATH.c`` builds any source taking either set of options. Every run is
bounded by its duration and a timeout.
The machine may be shared: read the ratios (measured minutes apart on the same machine) more
than the absolute figures, and look at ``other CPU`` (load from other processes).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import math
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The rows the floor server (--floor) can take part in: it knows only PUT and GET.
FLOOR_ROWS = ("p1", "p16", "latency")
GENERATOR = ROOT / "benchmarks" / "loadgen.c"
SHARED_GENERATOR = ROOT.parent / "shared" / "tools" / "loadgen" / "loadgen.c"
ROWS = ("p1", "p16", "latency", "txn", "durable", "memory", "conns")
START_TIMEOUT = 15.0


# -- tools ----------------------------------------------------------------------------------

@dataclass
class Generator:
    """A compiled load generator and which option set it takes."""

    binary: Path
    shared_options: bool  # the shared loadgen's --dialect/--mix instead of --redis/--get-pct

    def argv(self, server: Server, args: list[str]) -> list[str]:
        """The command line for ``args`` (written in loadgen.c's options) against ``server``."""
        if not self.shared_options:
            return [str(self.binary), "-p", str(server.port), *server.dialect, *args]
        dialect = (["--dialect", "redis", "--resp"] if server.dialect
                   else ["--dialect", "kvloop"])
        out = [str(self.binary), "-p", str(server.port), *dialect]
        words = iter(args)
        for word in words:
            if word == "--get-pct":
                gets = int(next(words))
                out += ["--mix", "get-only" if gets == 100 else f"get:{gets},put:{100 - gets}"]
            else:
                out.append(word)
        return out


def build_generator(source: Path) -> Generator:
    """Compile ``source`` with cc -O2 into the cache folder (once per source version)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvloop"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    binary = cache / f"{source.stem}-{digest}"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".tmp")
        subprocess.run(["cc", "-O2", "-o", str(partial), str(source)], check=True, timeout=120)
        partial.replace(binary)
    # The shared generator names the protocol with --dialect; loadgen.c with --redis.
    return Generator(binary, b"--dialect" in source.read_bytes())


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """``argv`` run under ``taskset -c cpu`` (unchanged if there is nothing to pin to)."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (redis-server cannot pick its own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ask(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send one request and return what arrives until the reply looks complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while not data.endswith(b"\n") or (data.startswith(b"$") and data.count(b"\n") < 2):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        return data


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- the two servers ------------------------------------------------------------------------

@dataclass
class Server:
    """A running server process: its name, port, PID."""

    name: str
    port: int
    proc: subprocess.Popen
    dialect: list[str] = field(default_factory=list)  # generator options for its protocol

    def stop(self) -> None:
        """SIGTERM and wait (kill -9 after 10 s); only this process, by its PID."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_kvloop(cpu: int | None, workdir: Path, durable: bool = False,
                 options: tuple[str, ...] = ()) -> Server:
    """``python server.py --in-memory`` on a free port, pinned to ``cpu``; with ``durable``,
    persistent in ``workdir/data`` with ``--fsync always`` instead; ``options`` added."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "kvloop.log"
    extra = []
    help_text = subprocess.run([sys.executable, str(ROOT / "server.py"), "--help"],
                               capture_output=True, text=True, timeout=30).stdout
    if "--max-clients" in help_text:
        extra = ["--max-clients", "20000"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pinned(cpu, [sys.executable, str(ROOT / "server.py"), "--port", "0",
                         *(["--fsync", "always"] if durable else ["--in-memory"]),
                         "--data-dir", str(workdir / "data"), *extra, *options]),
            stdout=log, stderr=subprocess.STDOUT, cwd=str(workdir))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(r"listening on \S+:(\d+)", log_path.read_text(errors="replace"))
        if match:
            return Server("kvloop", int(match.group(1)), proc)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"kvloop did not start:\n{log_path.read_text(errors='replace')}")


def start_redis(cpu: int | None, redis: str, durable_dir: Path | None = None) -> Server:
    """redis-server without persistence on a free port of 127.0.0.1, pinned to ``cpu``; with
    ``durable_dir``, an append-only file there with ``appendfsync always`` instead."""
    port = free_port()
    persistence = ["--appendonly", "no"]
    if durable_dir is not None:
        durable_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always",
                       "--dir", str(durable_dir)]
    proc = subprocess.Popen(
        pinned(cpu, [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     *persistence, "--maxclients", "20000", "--daemonize", "no",
                     "--loglevel", "warning"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server("redis", port, proc, ["--redis"])
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if ask(port, b"PING\r\n").startswith(b"+PONG"):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("redis-server did not start")


def start_floor(cpu: int | None) -> Server:
    """``benchmarks/floor_server.py`` on a free port, pinned to ``cpu``."""
    proc = subprocess.Popen(
        pinned(cpu, [sys.executable, str(ROOT / "benchmarks" / "floor_server.py"), "--port",
                     "0"]), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    match = re.search(r"listening on \S+:(\d+)", proc.stdout.readline())
    if match is None:
        proc.kill()
        raise RuntimeError("the floor server did not start")
    return Server("floor", int(match.group(1)), proc)


def server_pid(server: Server) -> int:
    """The server's own PID (taskset execs it, so Popen's PID is the server's)."""
    return server.proc.pid


# -- one measurement ------------------------------------------------------------------------

def generate(generator: Generator, cpu: int | None, server: Server, args: list[str],
             seconds: float) -> dict[str, float]:
    """Run the generator once against ``server``; its ``key=value`` fields as numbers."""
    argv = pinned(cpu, [*generator.argv(server, args), "-d", str(seconds),
                        "--server-pid", str(server_pid(server)), "--timeout", "30"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    fields = dict(part.split("=", 1) for part in done.stdout.split())
    numbers = {}
    for key, value in fields.items():
        with contextlib.suppress(ValueError):  # text fields (dialect=..., mix=...) are skipped
            numbers[key] = float(value)
    return numbers


@dataclass
class Row:
    """One row of the table: a label, the figure's unit, and the runs of each server."""

    label: str
    unit: str
    higher_is_better: bool = True
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    figure: str = "ops_per_sec"

    def add(self, name: str, result: dict[str, float]) -> None:
        self.runs.setdefault(name, []).append(result)

    def median(self, name: str, key: str | None = None) -> float:
        return statistics.median(r[key or self.figure] for r in self.runs[name])


def throughput_rows(generator: Generator, cpus: tuple[int | None, int | None],
                    servers: list[Server], wanted: list[str], runs: int,
                    seconds: float) -> list[Row]:
    """The rows measured with the generator, each server alternately, ``runs`` times."""
    plans = {
        "p1": (Row("50 conns, no pipelining, 90% GET", "ops/s"), ["-c", "50", "-P", "1"]),
        "p16": (Row("50 conns, pipeline 16, 90% GET", "ops/s"), ["-c", "50", "-P", "16"]),
        "latency": (Row("1 conn, p50 latency", "us", higher_is_better=False, figure="p50_us"),
                    ["-c", "1", "-P", "1"]),
        "txn": (Row("50 conns, START/PUT/PUT/COMMIT vs MULTI/SET/SET/EXEC", "txn/s"),
                ["-c", "50", "-P", "1", "--txn"]),
    }
    rows = []
    for name in wanted:
        if name not in plans:
            continue
        row, args = plans[name]
        for run in range(runs):
            order = servers if run % 2 == 0 else servers[::-1]
            for server in order:
                if server.name == "floor" and name not in FLOOR_ROWS:
                    continue
                result = generate(generator, cpus[1], server, [*args, "--warmup", "0.5"], seconds)
                row.add(server.name, result)
                print(f"  {name:8s} run {run + 1}  {server.name:6s}  "
                      f"{result[row.figure]:>12,.1f} {row.unit}   server CPU "
                      f"{result['server_cpu_pct']:.0f}%, generator "
                      f"{result['loadgen_cpu_pct']:.0f}%, other {result['other_cpu_pct']:.0f}%",
                      flush=True)
        rows.append(row)
    return rows


def durable_row(generator: Generator, cpus: tuple[int | None, int | None], redis: str,
                runs: int, seconds: float, workdir: Path,
                kvloop_options: tuple[str, ...] = ()) -> Row:
    """PUT-only throughput with every write fsynced before its reply, both servers fresh."""
    label = "50 conns, PUT only, fsync always (both)"
    if kvloop_options:
        label += f" (kvloop {' '.join(kvloop_options)})"
    row = Row(label, "ops/s")
    servers = [start_kvloop(cpus[0], workdir / "durable-kvloop", durable=True,
                            options=kvloop_options),
               start_redis(cpus[0], redis, durable_dir=workdir / "durable-redis")]
    try:
        for run in range(runs):
            for server in servers if run % 2 == 0 else servers[::-1]:
                result = generate(generator, cpus[1], server,
                                  ["-c", "50", "-P", "1", "--get-pct", "0", "--warmup", "0.5"],
                                  seconds)
                row.add(server.name, result)
                print(f"  durable  run {run + 1}  {server.name:6s}  "
                      f"{result['ops_per_sec']:>12,.1f} ops/s   server CPU "
                      f"{result['server_cpu_pct']:.0f}%, other {result['other_cpu_pct']:.0f}%",
                      flush=True)
    finally:
        for server in servers:
            server.stop()
    return row


def memory_row(generator: Generator, cpus: tuple[int | None, int | None], redis: str,
               keys: int, workdir: Path) -> Row:
    """Bytes per key for ``keys`` keys of 100-byte values, each server fresh."""
    row = Row(f"memory per key, {keys:,} keys, 100-byte values", "bytes",
              higher_is_better=False, figure="bytes_per_key")
    load = ["-c", "1", "-k", str(keys), "--prefill", "--get-pct", "100"]
    kvloop = start_kvloop(cpus[0], workdir / "memory")
    try:
        before = rss_bytes(server_pid(kvloop))
        generate(generator, cpus[1], kvloop, load, 0.05)
        grown = rss_bytes(server_pid(kvloop)) - before
        row.add("kvloop", {"bytes_per_key": grown / keys, "rss_per_key": grown / keys})
    finally:
        kvloop.stop()
    server = start_redis(cpus[0], redis)
    try:
        before_used, before_rss = redis_used_memory(server), rss_bytes(server_pid(server))
        generate(generator, cpus[1], server, load, 0.05)
        row.add("redis", {"bytes_per_key": (redis_used_memory(server) - before_used) / keys,
                          "rss_per_key": (rss_bytes(server_pid(server)) - before_rss) / keys})
    finally:
        server.stop()
    return row


def redis_used_memory(server: Server) -> int:
    """redis-server's ``used_memory`` (INFO memory)."""
    info = ask(server.port, b"INFO memory\r\n").decode()
    return int(re.search(r"used_memory:(\d+)", info).group(1))


@contextmanager
def held_connections(port: int, count: int) -> Iterator[int]:
    """Open ``count`` idle connections to ``port`` and keep them while the block runs;
    yields how many the server kept open (one that it closes at once is not counted)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            socks.append(sock)
        time.sleep(1.0)  # let the server accept the backlog
        alive = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                alive += sock.recv(1) != b""
            except BlockingIOError:
                alive += 1  # nothing to read and not closed: still held
            except OSError:
                pass
        yield alive
    finally:
        for sock in socks:
            sock.close()


def conns_row(generator: Generator, cpus: tuple[int | None, int | None], servers: list[Server],
              held: int, runs: int, seconds: float) -> Row:
    """A lone client's p50 latency with ``held`` idle connections open, and without."""
    row = Row(f"1 conn p50 latency with {held:,} idle conns held (x idle)", "x idle",
              higher_is_better=False, figure="slowdown")
    for server in servers:
        idle = [generate(generator, cpus[1], server, ["-c", "1"], seconds)["p50_us"]
                for _ in range(runs)]
        with held_connections(server.port, held) as alive:
            busy = [generate(generator, cpus[1], server, ["-c", "1"], seconds)["p50_us"]
                    for _ in range(runs)]
        slowdown = statistics.median(busy) / statistics.median(idle)
        row.add(server.name, {"slowdown": slowdown, "idle_us": statistics.median(idle),
                              "held_us": statistics.median(busy), "alive": alive})
        print(f"  conns    {server.name:6s}  p50 {statistics.median(idle):.1f} us idle, "
              f"{statistics.median(busy):.1f} us with {alive:,} of {held:,} held "
              f"({slowdown:.2f}x)", flush=True)
    return row


# -- the report -----------------------------------------------------------------------------

def report(rows: list[Row], args: argparse.Namespace, cpus: tuple[int | None, int | None],
           redis_version: str) -> str:
    """The Markdown table of the medians, with the machine and the date."""
    lines = [
        f"kvloop vs redis-server {redis_version}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.node()}: {os.cpu_count()} CPUs ({_cpu_model()}), Python "
        f"{platform.python_version()}; servers on CPU {cpus[0]}, "
        f"generator ({args.generator}) on CPU {cpus[1]}; "
        f"medians of {args.runs} runs of {args.seconds:g} s",
        "",
        "| row | kvloop | redis-server | ratio (kvloop/redis) | "
        "server CPU per op, kvloop / redis (ratio) | of which user time (outside the kernel) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        kv, rd = row.median("kvloop"), row.median("redis")
        ratio = kv / rd if rd else float("nan")
        lines.append(f"| {row.label} | {_fmt(kv, row.unit)} | {_fmt(rd, row.unit)} | "
                     f"{ratio:.2f}x |{_cpu_columns(row, 'kvloop')}")
        if "floor" in row.runs:
            floor = row.median("floor")
            lines.append(f"| (the floor: a featureless Python server, against redis) | "
                         f"{_fmt(floor, row.unit)} | {_fmt(rd, row.unit)} | "
                         f"{floor / rd if rd else float('nan'):.2f}x |"
                         f"{_cpu_columns(row, 'floor')}")
        if row.figure == "bytes_per_key":
            kv_rss, rd_rss = row.median("kvloop", "rss_per_key"), row.median("redis",
                                                                             "rss_per_key")
            lines.append(f"| (resident memory growth per key) | {kv_rss:,.0f} bytes | "
                         f"{rd_rss:,.0f} bytes | {kv_rss / rd_rss:.2f}x | | |")
        if row.figure == "slowdown":
            lines.append(
                f"| (lone client p50 idle / held) | {row.median('kvloop', 'idle_us'):.0f} / "
                f"{row.median('kvloop', 'held_us'):.0f} us | "
                f"{row.median('redis', 'idle_us'):.0f} / {row.median('redis', 'held_us'):.0f}"
                f" us | | | |")
    others = [r["other_cpu_pct"] for row in rows for runs in row.runs.values() for r in runs
              if "other_cpu_pct" in r]
    gens = [r["loadgen_cpu_pct"] for row in rows for runs in row.runs.values() for r in runs
            if "loadgen_cpu_pct" in r]
    if others:
        lines += ["", f"Other processes used {statistics.median(others):.0f}% CPU (median; "
                      f"max {max(others):.0f}%) during the runs; the generator at most "
                      f"{max(gens):.0f}% of its CPU."]
        if max(gens) >= 90:
            lines.append("WARNING: the generator reached 90% of its CPU in some run: those "
                         "figures may be the generator's limit, not the server's.")
    return "\n".join(lines)


def _cpu_per_op(row: Row, name: str, user_only: bool = False) -> float:
    """The median server CPU microseconds per op of ``name``'s runs (with ``user_only``, its
    user time: the CPU time outside the kernel; NaN if the generator did not report it)."""
    def per_op(r: dict[str, float]) -> float:
        pct = r["server_cpu_pct"]
        if user_only:
            pct -= r.get("server_sys_pct", float("nan"))
        return pct / 100 / r["ops_per_sec"] * 1e6
    return statistics.median(per_op(r) for r in row.runs[name] if r["ops_per_sec"])


def _cpu_columns(row: Row, name: str) -> str:
    """The two CPU columns of ``name`` (kvloop or floor) against redis, for a throughput row."""
    if row.figure != "ops_per_sec":
        return " | |"
    mine, theirs = _cpu_per_op(row, name), _cpu_per_op(row, "redis")
    mine_user, theirs_user = (_cpu_per_op(row, name, True), _cpu_per_op(row, "redis", True))
    user = ("" if math.isnan(mine_user) else
            f"{mine_user:.2f} / {theirs_user:.2f} us ({mine_user / theirs_user:.2f}x)")
    return f" {mine:.2f} / {theirs:.2f} us ({mine / theirs:.2f}x) | {user} |"


def _fmt(value: float, unit: str) -> str:
    if unit in ("ops/s", "txn/s"):
        return f"{value / 1000:,.1f}k {unit}"
    if unit == "x idle":
        return f"{value:.2f}x"
    return f"{value:,.1f} {unit}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen rows and print the table; 2 if a tool is missing."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS),
                   help=f"comma-separated rows among {', '.join(ROWS)} (default: all)")
    p.add_argument("--runs", type=int, default=3, help="runs per server and row (default 3)")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per run (default 3)")
    p.add_argument("--memory-keys", type=int, default=1_000_000,
                   help="keys for the memory row (default 1000000)")
    p.add_argument("--held", type=int, default=10_000,
                   help="idle connections for the conns row (default 10000)")
    p.add_argument("--generator", default="own",
                   help="own (benchmarks/loadgen.c, the default), shared "
                        "(../shared/tools/loadgen/loadgen.c), or the path of a C source")
    p.add_argument("--redis-server", default=shutil.which("redis-server"),
                   help="the redis-server program (default: from PATH)")
    p.add_argument("--durable-kvloop-options", default="", metavar="OPTIONS",
                   help="more server options for kvloop in the durable row, e.g. "
                        "'--compact-min-bytes 67108864' (compaction as rare as redis's "
                        "64 MB auto-aof-rewrite-min-size)")
    p.add_argument("--floor", action="store_true",
                   help="also measure benchmarks/floor_server.py (a featureless Python "
                        "server) in the p1, p16 and latency rows")
    args = p.parse_args(argv)
    wanted = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = set(wanted) - set(ROWS)
    if unknown or not wanted:
        p.error(f"unknown rows {sorted(unknown)}; choose among {', '.join(ROWS)}")
    if not args.redis_server:
        print("compare_redis: redis-server is not installed (or pass --redis-server)",
              file=sys.stderr)
        return 2
    if not shutil.which("cc"):
        print("compare_redis: a C compiler (cc) is needed to build the generator",
              file=sys.stderr)
        return 2
    source = {"own": GENERATOR, "shared": SHARED_GENERATOR}.get(args.generator,
                                                                 Path(args.generator))
    if not source.is_file():
        print(f"compare_redis: no generator source at {source}", file=sys.stderr)
        return 2
    generator = build_generator(source)
    cpus_free = sorted(os.sched_getaffinity(0))
    use_taskset = len(cpus_free) >= 2 and shutil.which("taskset") is not None
    cpus = (cpus_free[0], cpus_free[1]) if use_taskset else (None, None)
    # Room for --held connections in this process and in the servers (they inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted_fds = args.held + 1000
    if soft < wanted_fds and (hard == resource.RLIM_INFINITY or hard >= wanted_fds):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted_fds, hard))
    version = subprocess.run([args.redis_server, "--version"], capture_output=True,
                             text=True, timeout=10).stdout.split()
    redis_version = next((w[2:] for w in version if w.startswith("v=")), "?")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kvloop-compare-") as tmp:
        workdir = Path(tmp)
        if set(wanted) & {"p1", "p16", "latency", "txn", "conns"}:
            servers = [start_kvloop(cpus[0], workdir), start_redis(cpus[0], args.redis_server)]
            if args.floor and set(wanted) & set(FLOOR_ROWS):
                servers.append(start_floor(cpus[0]))
            try:
                for server in servers:  # the same 10,000 keys in each
                    generate(generator, cpus[1], server, ["-c", "1", "--prefill", "--get-pct",
                                                       "100"], 0.05)
                rows += throughput_rows(generator, cpus, servers, wanted, args.runs, args.seconds)
                if "conns" in wanted:
                    rows.append(conns_row(generator, cpus, servers[:2], args.held, args.runs,
                                          min(args.seconds, 2.0)))
            finally:
                for server in servers:
                    server.stop()
        if "durable" in wanted:
            rows.append(durable_row(generator, cpus, args.redis_server, args.runs,
                                    args.seconds, workdir,
                                    tuple(args.durable_kvloop_options.split())))
        if "memory" in wanted:
            rows.append(memory_row(generator, cpus, args.redis_server, args.memory_keys, workdir))
    print()
    print(report(rows, args, cpus, redis_version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
