"""``python -m kvloop.bench``: a load generator for any kvloop server.

It opens ``--connections`` non-blocking connections spread over ``--processes`` worker
processes (each runs its own ``selectors`` loop), keeps ``--pipeline`` units in flight on
each connection, and measures for ``--duration`` seconds (or ``--requests`` units). A unit is
one GET, PUT or DEL drawn from ``--mix``, or with ``--txn`` one transaction
``START / PUT / PUT / COMMIT``. Latency is the time from sending a unit to its last reply.

While it runs, a progress line shows the rate (on a terminal); at the end it prints a table
of units per second and p50/p99/p99.9 latency, or one JSON object with ``--json``. It also
reports the CPU it used itself (per worker process) and, with ``--server-pid``, the server's:
a run in which a worker was nearly saturated says that the generator, not the server, was
the bottleneck.

Latencies go into :class:`Histogram` (log-linear buckets, under 1% error) rather than lists,
so memory stays bounded however long it runs. Every command sent is answered before a worker
stops, so the counts match the server's STATS.

    python -m kvloop.bench -p 9999 -c 50 -P 16 --mix get:90,put:10 --duration 10

Only point it at a server you own: it writes keys ``key:0 .. key:N-1``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import selectors
import socket
import ssl
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait as wait_pipes
from typing import Any, TextIO

from .clientargs import add_auth_and_tls_options, password_from
from .config import format_address
from .transport import client_context

# 64 KiB per recv, as the server does (see shared/PERF-NOTES.md).
READ_SIZE = 64 * 1024
# A worker reports its progress to the parent this often (seconds).
PROGRESS_SECONDS = 0.5
# After the run ends, how long a worker waits for the replies still due before giving up.
DRAIN_SECONDS = 10.0
# A worker process above this share of one CPU was probably the bottleneck itself.
SATURATED_CPU_PCT = 90.0
KINDS = ("get", "put", "del")


# -- latency histogram ----------------------------------------------------------------------

class Histogram:
    """Counts of values (non-negative ints, e.g. nanoseconds) in log-linear buckets.

    Values below ``2 ** (SUB_BITS + 1)`` are exact; above, each power of two is split into
    ``2 ** SUB_BITS`` equal buckets, so a percentile is within 1/256 (0.4%) of the true
    value. Memory is bounded by the number of buckets ever hit, whatever the count.
    """

    SUB_BITS = 7

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.sum = 0
        self.max = 0

    @classmethod
    def bucket_of(cls, value: int) -> int:
        """The index of the bucket ``value`` falls in."""
        shift = max(0, value.bit_length() - cls.SUB_BITS - 1)
        return (shift << cls.SUB_BITS) + (value >> shift)

    @classmethod
    def bucket_range(cls, index: int) -> tuple[int, int]:
        """The lowest and highest value of bucket ``index``."""
        shift = max(0, (index >> cls.SUB_BITS) - 1)
        mantissa = index - (shift << cls.SUB_BITS)
        return mantissa << shift, ((mantissa + 1) << shift) - 1

    def record(self, value: int) -> None:
        """Count one value."""
        shift = max(0, value.bit_length() - self.SUB_BITS - 1)
        index = (shift << self.SUB_BITS) + (value >> shift)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.total += 1
        self.sum += value
        if value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        """Add every count of ``other`` to this one."""
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.total += other.total
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def percentile(self, percent: float) -> int:
        """The value below or at which ``percent`` % of the counts lie (the middle of its
        bucket, never above the largest value seen); 0 if empty."""
        if not self.total:
            return 0
        rank = max(1, -(-self.total * percent // 100))  # ceil, at least the first value
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = self.bucket_range(index)
                return min((low + high) // 2, self.max)
        return self.max

    def mean(self) -> float:
        """The mean of the values counted (0.0 if empty)."""
        return self.sum / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A plain form (to send between processes or store as JSON)."""
        return {"counts": self.counts, "total": self.total, "sum": self.sum, "max": self.max}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """The histogram :meth:`to_dict` described."""
        hist = cls()
        hist.counts = {int(k): int(v) for k, v in data["counts"].items()}
        hist.total, hist.sum, hist.max = data["total"], data["sum"], data["max"]
        return hist


# -- options --------------------------------------------------------------------------------

@dataclass
class Options:
    """What to run: the command line, parsed."""

    host: str = "127.0.0.1"
    port: int = 9999
    connections: int = 50
    pipeline: int = 1
    processes: int = 1
    mix: dict[str, int] = field(default_factory=lambda: {"get": 90, "put": 10, "del": 0})
    keys: int = 10_000
    value_size: int = 100
    duration: float = 5.0
    requests: int | None = None
    warmup: float = 0.0
    txn: bool = False
    prefill: bool = False
    password: str | None = None
    seed: int = 1
    timeout: float = 10.0
    server_pid: int | None = None
    tls: bool = False
    cafile: str | None = None
    insecure_skip_verify: bool = False


def parse_mix(text: str) -> dict[str, int]:
    """``"get:90,put:10"`` -> ``{"get": 90, "put": 10, "del": 0}``; ValueError if malformed."""
    mix = dict.fromkeys(KINDS, 0)
    for part in text.split(","):
        name, sep, weight = part.strip().partition(":")
        name = name.strip().lower()
        if not sep or name not in mix or not weight.strip().isdigit():
            raise ValueError(
                f"bad mix entry {part.strip()!r}: use NAME:WEIGHT with NAME one of "
                f"{', '.join(KINDS)}, e.g. get:90,put:10")
        mix[name] = int(weight)
    if not sum(mix.values()):
        raise ValueError("the mix must give some command a weight above 0")
    return mix


def _positive(kind: type) -> Any:
    def convert(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    return convert


def _mix_arg(text: str) -> dict[str, int]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m kvloop.bench``."""
    p = argparse.ArgumentParser(
        prog="python -m kvloop.bench",
        description="Load generator for a kvloop server: ops/s and latency percentiles.")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("-p", "--port", type=int, default=9999, help="server port (default 9999)")
    p.add_argument("-c", "--connections", type=_positive(int), default=50,
                   help="connections in all (default 50)")
    p.add_argument("-P", "--pipeline", type=_positive(int), default=1,
                   help="units in flight per connection (default 1: no pipelining)")
    p.add_argument("--processes", type=_positive(int),
                   default=max(1, (os.cpu_count() or 2) // 2),
                   help="worker processes, each with its own event loop "
                        "(default: half the CPUs, leaving the rest to the server)")
    p.add_argument("--mix", type=_mix_arg, default="get:90,put:10",
                   help="command weights, e.g. get:90,put:10 or get:50,put:40,del:10 "
                        "(default get:90,put:10)")
    p.add_argument("-k", "--keys", type=_positive(int), default=10_000,
                   help="key space: keys key:0 .. key:N-1 (default 10000)")
    p.add_argument("-s", "--value-size", type=_positive(int), default=100,
                   help="bytes per PUT value (default 100)")
    p.add_argument("-d", "--duration", type=_positive(float), default=5.0,
                   help="seconds to measure (default 5)")
    p.add_argument("-n", "--requests", type=_positive(int),
                   help="stop after this many units in all instead of after --duration")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="seconds of load before measuring starts (default 0)")
    p.add_argument("--txn", action="store_true",
                   help="each unit is a transaction: START, PUT, PUT, COMMIT")
    p.add_argument("--prefill", action="store_true",
                   help="PUT every key once before the run (so GETs find values)")
    add_auth_and_tls_options(p)
    p.add_argument("--server-pid", type=int,
                   help="also report this process's CPU use (Linux /proc)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--timeout", type=_positive(float), default=10.0,
                   help="seconds to wait for the server at connect and for replies "
                        "at the end (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object, no table")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="live progress line on stderr (default: when stderr is a terminal)")
    return p


def options_from(args: argparse.Namespace) -> Options:
    """The :class:`Options` of parsed command-line arguments; ValueError if inconsistent."""
    password = password_from(args)
    mix = args.mix if isinstance(args.mix, dict) else parse_mix(args.mix)
    if args.warmup < 0:
        raise ValueError("--warmup must be 0 or more")
    return Options(
        host=args.host, port=args.port, connections=args.connections, pipeline=args.pipeline,
        processes=min(args.processes, args.connections), mix=mix, keys=args.keys,
        value_size=args.value_size, duration=args.duration, requests=args.requests,
        warmup=args.warmup, txn=args.txn, prefill=args.prefill, password=password,
        seed=args.seed, timeout=args.timeout, server_pid=args.server_pid,
        tls=bool(args.tls or args.cafile or args.insecure_skip_verify), cafile=args.cafile,
        insecure_skip_verify=args.insecure_skip_verify)


# -- one worker process ---------------------------------------------------------------------

@dataclass
class WorkerResult:
    """What one worker counted during the measured window (and in all, for STATS checks)."""

    units: int = 0
    errors: int = 0  # error replies other than NOT_FOUND and CONFLICT
    not_found: int = 0
    conflicts: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # every command sent, by verb
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latency: dict[str, Any] = field(default_factory=dict)  # Histogram.to_dict(), ns


class _Conn:
    """One connection's buffers and the units it has in flight."""

    __slots__ = ("sock", "out", "partial", "inflight", "events")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = b""
        self.partial = b""
        # Units in flight: [send time in ns, replies still due]
        self.inflight: deque[list[int]] = deque()
        self.events = selectors.EVENT_READ


# What a non-blocking send or recv raises when it would block, plain or TLS.
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _open(options: Options) -> socket.socket:
    """A blocking connection (TLS handshake done, if asked) with TCP_NODELAY set."""
    sock = socket.create_connection((options.host, options.port), timeout=options.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not options.tls:
        return sock
    context = client_context(options.cafile, options.insecure_skip_verify)
    try:
        return context.wrap_socket(sock, server_hostname=options.host)
    except OSError:
        sock.close()
        raise


def _connect(options: Options) -> socket.socket:
    sock = _open(options)
    if options.password is not None:
        sock.sendall(f"AUTH {options.password}\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                raise ConnectionError("the server closed the connection during AUTH")
            reply += chunk
        if not reply.startswith(b'{"status":"Ok"'):
            raise ConnectionError(f"AUTH failed: {reply.decode(errors='replace').strip()}")
    sock.setblocking(False)
    return sock


class _Worker:
    """One process's share of the connections, driven by one selectors loop."""

    def __init__(self, options: Options, connections: int, units: int | None,
                 seed: int) -> None:
        self.options = options
        self.rng = random.Random(seed)
        self.units_left = units  # None: until the deadline
        self.value = (b"v" * options.value_size)
        table: list[str] = []
        for kind in KINDS:
            table += [kind] * options.mix[kind]
        self.table = table
        self.selector = selectors.DefaultSelector()
        self.conns = [_Conn(_connect(options)) for _ in range(connections)]
        for conn in self.conns:
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        self.hist = Histogram()
        self.result = WorkerResult()
        self.sent: dict[str, int] = {}
        self.measuring = False
        self.running = True

    def _unit(self) -> tuple[bytes, int]:
        """The request bytes of one unit and how many replies it gets."""
        keys, rng = self.options.keys, self.rng
        sent = self.sent
        if self.options.txn:
            first, second = rng.randrange(keys), rng.randrange(keys)
            sent["START"] = sent.get("START", 0) + 1
            sent["PUT"] = sent.get("PUT", 0) + 2
            sent["COMMIT"] = sent.get("COMMIT", 0) + 1
            return (b"START\nPUT key:%d %s\nPUT key:%d %s\nCOMMIT\n"
                    % (first, self.value, second, self.value)), 4
        kind = self.table[rng.randrange(len(self.table))]
        key = rng.randrange(keys)
        if kind == "get":
            sent["GET"] = sent.get("GET", 0) + 1
            return b"GET key:%d\n" % key, 1
        if kind == "put":
            sent["PUT"] = sent.get("PUT", 0) + 1
            return b"PUT key:%d %s\n" % (key, self.value), 1
        sent["DEL"] = sent.get("DEL", 0) + 1
        return b"DEL key:%d\n" % key, 1

    def _fill(self, conn: _Conn, now: int) -> None:
        """Queue units until the connection has ``pipeline`` in flight (or the run ends)."""
        parts = []
        while self.running and len(conn.inflight) < self.options.pipeline:
            if self.units_left is not None:
                if self.units_left <= 0:
                    self.running = False
                    break
                self.units_left -= 1
            data, replies = self._unit()
            parts.append(data)
            conn.inflight.append([now, replies])
        if parts:
            conn.out += b"".join(parts)
            self._send(conn)

    def _send(self, conn: _Conn) -> None:
        try:
            count = conn.sock.send(conn.out)
        except _WOULD_BLOCK:
            count = 0
        conn.out = conn.out[count:]
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if wanted != conn.events:
            self.selector.modify(conn.sock, wanted, conn)
            conn.events = wanted

    def _receive(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            data = sock.recv(READ_SIZE)
            # TLS: plaintext already decrypted makes the socket no more readable: take it now.
            while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
                data += sock.recv(READ_SIZE)
        except _WOULD_BLOCK:
            return
        if not data:
            raise ConnectionError("the server closed a connection during the run")
        lines = (conn.partial + data).split(b"\n")
        conn.partial = lines.pop()
        now = time.perf_counter_ns()
        result, inflight, hist = self.result, conn.inflight, self.hist
        for line in lines:
            if not line.startswith(b'{"status":"Ok"'):
                self._count_error(line)
            unit = inflight[0]
            unit[1] -= 1
            if not unit[1]:
                inflight.popleft()
                if self.measuring:
                    result.units += 1
                    hist.record(now - unit[0])
        self._fill(conn, now)

    def _count_error(self, line: bytes) -> None:
        start = line.find(b'"code":"')
        code = line[start + 8:line.find(b'"', start + 8)].decode() if start >= 0 else "?"
        result = self.result
        if code == "NOT_FOUND":
            result.not_found += 1
        elif code == "CONFLICT":
            result.conflicts += 1
        else:
            result.errors += 1
            result.error_codes[code] = result.error_codes.get(code, 0) + 1

    def run(self, pipe: Pipe) -> WorkerResult:
        """Run the warmup and the measured window, reporting progress through ``pipe``.

        With a duration, the window ends at the deadline (replies still due are read but
        not counted); with a number of units, it ends when the last reply has come."""
        options = self.options
        start = time.monotonic()
        measure_at = start + options.warmup
        end = None if self.units_left is not None else measure_at + options.duration
        window: list[float] = []  # [monotonic start, process_time start] once measuring
        next_report = start + PROGRESS_SECONDS
        reported = 0
        drain_until = None
        now_ns = time.perf_counter_ns()
        for conn in self.conns:
            self._fill(conn, now_ns)
        while True:
            now = time.monotonic()
            if not window and now >= measure_at:
                self.measuring = True
                window = [now, time.process_time()]
            if self.running and end is not None and now >= end:
                self.running = self.measuring = False
                self._close_window(window, now)
            if not self.running and drain_until is None:
                drain_until = now + options.timeout
            if drain_until is not None:
                if not any(conn.inflight or conn.out for conn in self.conns):
                    break
                if now >= drain_until:
                    raise TimeoutError(
                        f"replies still due {options.timeout:g} s after the run ended")
            if now >= next_report:
                pipe.send(("progress", self.result.units - reported))
                reported = self.result.units
                next_report = now + PROGRESS_SECONDS
            for key, mask in self.selector.select(0.1):
                conn = key.data
                if mask & selectors.EVENT_READ:
                    self._receive(conn)
                if mask & selectors.EVENT_WRITE and conn.out:
                    self._send(conn)
        if end is None:
            self._close_window(window, time.monotonic())
        pipe.send(("progress", self.result.units - reported))
        self.result.sent = self.sent
        self.result.latency = self.hist.to_dict()
        return self.result

    def _close_window(self, window: list[float], now: float) -> None:
        if window:
            self.result.seconds = now - window[0]
            self.result.cpu_seconds = time.process_time() - window[1]

    def close(self) -> None:
        """Close every connection and the selector."""
        for conn in self.conns:
            conn.sock.close()
        self.selector.close()


def _worker_main(options: Options, connections: int, units: int | None, seed: int,
                 pipe: Pipe) -> None:
    """A worker process: connect, say ready, wait for go, run, send the result."""
    try:
        worker = _Worker(options, connections, units, seed)
    except (OSError, ConnectionError) as exc:
        pipe.send(("error", f"cannot connect to {format_address(options.host, options.port)}: "
                            f"{exc}"))
        return
    try:
        pipe.send(("ready", None))
        if pipe.recv() != "go":
            return
        pipe.send(("done", worker.run(pipe)))
    except (OSError, ConnectionError, TimeoutError) as exc:
        pipe.send(("error", str(exc) or type(exc).__name__))
    finally:
        worker.close()


# -- the whole run --------------------------------------------------------------------------

def _split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _prefill(options: Options) -> int:
    """PUT every key once over one pipelined connection; how many PUTs were sent."""
    value = b"v" * options.value_size
    with _open(options) as s:
        if options.password is not None:
            s.sendall(f"AUTH {options.password}\n".encode())
            _read_lines(s, 1)
        batch = 1000
        for first in range(0, options.keys, batch):
            keys = range(first, min(first + batch, options.keys))
            s.sendall(b"".join(b"PUT key:%d %s\n" % (key, value) for key in keys))
            _read_lines(s, len(keys))
    return options.keys


def _read_lines(sock: socket.socket, count: int) -> None:
    seen = 0
    while seen < count:
        chunk = sock.recv(READ_SIZE)
        if not chunk:
            raise ConnectionError("the server closed the connection during prefill")
        seen += chunk.count(b"\n")


def _cpu_ticks(pid: int) -> float | None:
    """Seconds of CPU (user + system) used so far by process ``pid``; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _Progress:
    """The live progress line (stderr), redrawn at most twice a second."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.units = 0
        self.window_units = 0
        self.window_start = self.start

    def add(self, units: int) -> None:
        self.units += units
        self.window_units += units
        now = time.monotonic()
        if self.stream is not None and now - self.window_start >= PROGRESS_SECONDS:
            rate = self.window_units / (now - self.window_start)
            self.stream.write(f"\r  {now - self.start:6.1f} s  {rate:>12,.0f} units/s now"
                              f"  {self.units:>12,} units in all ")
            self.stream.flush()
            self.window_units, self.window_start = 0, now

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()


def run(options: Options, progress: TextIO | None = None) -> dict[str, Any]:
    """Run the load described by ``options`` and return the merged results as a dict
    (what ``--json`` prints). Raises ConnectionError if a worker cannot connect or fails."""
    prefilled = _prefill(options) if options.prefill else 0
    per_process = _split(options.connections, options.processes)
    units = (_split(options.requests, options.processes)
             if options.requests is not None else [None] * options.processes)
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Pipe] = []
    procs = []
    for i, conns in enumerate(per_process):
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, daemon=True,
                           args=(options, conns, units[i], options.seed * 1000 + i, child_end))
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(proc)
    try:
        return _drive(options, pipes, prefilled, _Progress(progress))
    finally:
        for proc in procs:
            proc.join(options.timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _drive(options: Options, pipes: list[Pipe], prefilled: int,
           progress: _Progress) -> dict[str, Any]:
    """Wait for every worker to be ready, start them together, collect their results."""
    for pipe in pipes:
        kind, payload = _receive(pipe)
        if kind == "error":
            raise ConnectionError(payload)
    server_pid = options.server_pid
    server_cpu_start = _cpu_ticks(server_pid) if server_pid else None
    started = time.monotonic()
    for pipe in pipes:
        pipe.send("go")
    results: list[WorkerResult] = []
    pending = list(pipes)
    while pending:
        for pipe in wait_pipes(pending):
            kind, payload = _receive(pipe)
            if kind == "progress":
                progress.add(payload)
            elif kind == "done":
                results.append(payload)
                pending.remove(pipe)
            elif kind == "error":
                raise ConnectionError(payload)
    wall = time.monotonic() - started
    progress.finish()
    server_cpu = None
    if server_cpu_start is not None:
        end = _cpu_ticks(server_pid)
        if end is not None:
            server_cpu = 100.0 * (end - server_cpu_start) / max(wall - options.warmup, 1e-9)
    return summarize(options, results, prefilled, server_cpu)


def _receive(pipe: Pipe) -> tuple[str, Any]:
    try:
        return pipe.recv()
    except EOFError:
        raise ConnectionError("a worker process ended without a result") from None


def summarize(options: Options, results: list[WorkerResult], prefilled: int,
              server_cpu_pct: float | None) -> dict[str, Any]:
    """Merge the workers' results into the report ``--json`` prints."""
    hist = Histogram()
    sent: dict[str, int] = {}
    codes: dict[str, int] = {}
    for result in results:
        hist.merge(Histogram.from_dict(result.latency))
        for verb, count in result.sent.items():
            sent[verb] = sent.get(verb, 0) + count
        for code, count in result.error_codes.items():
            codes[code] = codes.get(code, 0) + count
    units = sum(r.units for r in results)
    seconds = max((r.seconds for r in results), default=0.0)
    worker_cpu = [100.0 * r.cpu_seconds / r.seconds if r.seconds else 0.0 for r in results]
    busiest = max(worker_cpu, default=0.0)
    us = 1000.0
    return {
        "target": format_address(options.host, options.port),
        "connections": options.connections,
        "pipeline": options.pipeline,
        "processes": options.processes,
        "unit": "transaction" if options.txn else "command",
        "mix": None if options.txn else options.mix,
        "keys": options.keys,
        "value_size": options.value_size,
        "seconds": round(seconds, 3),
        "units": units,
        "units_per_sec": round(units / seconds, 1) if seconds else 0.0,
        "latency_us": {
            "p50": hist.percentile(50) / us, "p99": hist.percentile(99) / us,
            "p99.9": hist.percentile(99.9) / us, "max": hist.max / us,
            "mean": round(hist.mean() / us, 3),
        },
        "errors": sum(r.errors for r in results),
        "error_codes": codes,
        "not_found": sum(r.not_found for r in results),
        "conflicts": sum(r.conflicts for r in results),
        "commands_sent": sent,
        "prefill_puts": prefilled,
        "generator_cpu_pct": [round(pct, 1) for pct in worker_cpu],
        "server_cpu_pct": None if server_cpu_pct is None else round(server_cpu_pct, 1),
        "generator_bound": busiest >= SATURATED_CPU_PCT,
    }


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table of a report."""
    lat = report["latency_us"]
    what = ("transactions (START, PUT, PUT, COMMIT)" if report["unit"] == "transaction"
            else "commands, mix " + ",".join(f"{k}:{v}" for k, v in report["mix"].items() if v))
    lines = [
        f"kvloop.bench -> {report['target']}: {report['connections']} connections, "
        f"pipeline {report['pipeline']}, {report['processes']} process(es), {what}, "
        f"{report['keys']:,} keys, {report['value_size']}-byte values",
        "",
        f"  {'units/s':>12} {'p50':>10} {'p99':>10} {'p99.9':>10} {'max':>10} {'units':>12}",
        f"  {report['units_per_sec']:>12,.0f} {_ms(lat['p50']):>10} {_ms(lat['p99']):>10} "
        f"{_ms(lat['p99.9']):>10} {_ms(lat['max']):>10} {report['units']:>12,}",
        "",
    ]
    codes = "".join(f" ({code}: {count:,})" for code, count in report["error_codes"].items())
    sent = ", ".join(f"{verb} {count:,}" for verb, count in report["commands_sent"].items())
    lines.append(f"  replies: {report['errors']:,} errors{codes}, {report['not_found']:,} "
                 f"NOT_FOUND, {report['conflicts']:,} CONFLICT; commands sent: {sent}; "
                 f"measured over {report['seconds']:.2f} s")
    cpu = ", ".join(f"{pct:.0f}%" for pct in report["generator_cpu_pct"])
    server = report["server_cpu_pct"]
    lines.append(f"  CPU: generator process(es) {cpu} of one core each"
                 + (f"; server {server:.0f}%" if server is not None else ""))
    if report["generator_bound"]:
        lines.append(f"  WARNING: a generator process used over {SATURATED_CPU_PCT:.0f}% of "
                     "its CPU: the generator was the bottleneck, not the server. Add "
                     "--processes, or use benchmarks/loadgen.c.")
    return "\n".join(lines)


def _ms(us: float) -> str:
    return f"{us:,.0f} us" if us < 10_000 else f"{us / 1000:,.1f} ms"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kvloop.bench``: 0 on a completed run, 2 on a failure."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    show = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty()
                                     and not args.json)
    try:
        report = run(options, sys.stderr if show else None)
    except (ConnectionError, OSError) as exc:
        print(f"kvloop.bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
