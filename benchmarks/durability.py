#!/usr/bin/env python3
"""Durable commit throughput and latency (kvloop per --fsync mode vs redis-server AOF), and
recovery time with 1,000,000 keys.

    python benchmarks/durability.py                     # 3 runs of 2 s per cell, recovery
    python benchmarks/durability.py --runs 5 --seconds 3 --clients 1,10,50
    python benchmarks/durability.py --skip-recovery     # throughput table only

Throughput: the C load generator (``../shared/tools/loadgen`` next to the repository, built
with ``cc`` into a temporary folder) sends autocommit PUTs only (``--mix put-only``, 10,000
keys, 100-byte values, one command in flight per connection) at 1, 10 and 50 connections to:
kvloop with ``--fsync always``, ``everysec`` and ``no`` (a fresh data folder each), and
redis-server with ``appendonly yes`` and ``appendfsync always`` / ``everysec``. Each cell is
measured ``--runs`` times, the servers alternating within each run, and the table shows
medians: commits/s, p50 and p99 latency. Servers are pinned to CPU 0 and the generator to
CPU 1 when there are two CPUs. Ratios printed under the table: kvloop always at 50 clients
against 1 client (group commit) and against redis ``appendfsync always`` at 50 clients.

Recovery: a data folder with a snapshot of 900,000 keys and a log of 100,000 commits (each
a new key; 100-byte values) is written with kvloop's own file format, then the server is
started on it ``--runs`` times: the time to recover (from its log line) and from process
start to listening are reported (medians).

Everything runs on 127.0.0.1 in temporary folders, bounded in time; servers are stopped by
PID. The machine may be shared: compare the ratios (measured in one run) more than the
absolute figures, and look at ``other_cpu`` (CPU used by other processes meanwhile).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kvloop import logformat  # noqa: E402
from kvloop.datafiles import segment_name, snapshot_name  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_redis import free_port, pinned  # noqa: E402

LOADGEN_RELATIVE = Path("shared", "tools", "loadgen", "loadgen.c")
KVLOOP_MODES = ("always", "everysec", "no")
REDIS_MODES = ("always", "everysec")
START_TIMEOUT = 30.0


def default_loadgen() -> Path:
    """``../shared/tools/loadgen/loadgen.c`` next to this checkout, or next to the main
    checkout when this is a git worktree."""
    candidates = [ROOT.parent / LOADGEN_RELATIVE]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--git-common-dir"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        if common:
            main_checkout = (ROOT / common).resolve().parent
            candidates.append(main_checkout.parent / LOADGEN_RELATIVE)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]


def build_loadgen(source: Path, folder: Path) -> Path:
    """Compile the shared load generator, or exit with a message saying where it should be."""
    if not source.exists():
        sys.exit(f"the load generator's source is not at {source}: this benchmark needs "
                 "../shared/tools/loadgen/loadgen.c next to the repository (or --loadgen "
                 "PATH to a loadgen.c or a built binary)")
    if os.access(source, os.X_OK) and source.suffix != ".c":
        return source
    binary = folder / "loadgen"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True, timeout=120)
    return binary


class Server:
    """A server process under test: name, port and how the generator speaks to it."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen, dialect: list[str]):
        self.name = name
        self.port = port
        self.proc = proc
        self.dialect = dialect

    def stop(self) -> None:
        """SIGTERM, wait; kill -9 only this PID if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_listening(log_path: Path, proc: subprocess.Popen) -> int:
    """The port from kvloop's ``listening on`` line."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(r"listening on \S+:(\d+)", log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"kvloop did not start:\n{log_path.read_text(errors='replace')}")


def start_kvloop(cpu: int | None, folder: Path, fsync: str) -> Server:
    """A persistent kvloop with ``--fsync fsync`` and a fresh data folder."""
    folder.mkdir(parents=True)
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pinned(cpu, [sys.executable, str(ROOT / "server.py"), "--port", "0",
                         "--data-dir", str(folder / "data"), "--fsync", fsync]),
            stdout=log, stderr=subprocess.STDOUT, cwd=str(folder))
    return Server(f"kvloop fsync {fsync}", wait_listening(log_path, proc), proc,
                  ["--dialect", "kvloop"])


def start_redis(cpu: int | None, folder: Path, redis: str, fsync: str) -> Server:
    """redis-server with the append-only file on, ``appendfsync fsync``."""
    folder.mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen(
        pinned(cpu, [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "yes", "--appendfsync", fsync, "--dir", str(folder),
                     "--daemonize", "no", "--loglevel", "warning"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return Server(f"redis appendfsync {fsync}", port, proc,
                                  ["--dialect", "redis", "--resp"])
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def measure(loadgen: Path, cpu: int | None, server: Server, clients: int,
            seconds: float) -> dict[str, float]:
    """One timed run of PUTs; the generator's numeric fields."""
    argv = pinned(cpu, [str(loadgen), "-p", str(server.port), *server.dialect,
                        "-c", str(clients), "-P", "1", "--mix", "put-only", "-k", "10000",
                        "-s", "100", "-d", str(seconds), "--timeout", "60",
                        "--server-pid", str(server.proc.pid)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    numbers = {}
    for part in done.stdout.split():
        key, _, value = part.partition("=")
        with contextlib.suppress(ValueError):
            numbers[key] = float(value)
    if numbers.get("errors", 0) or numbers.get("error_replies", 0):
        raise RuntimeError(f"{server.name}: errors in {done.stdout.strip()}")
    return numbers


def throughput(args: argparse.Namespace, loadgen: Path, tmp: Path) -> None:
    """Measure and print the throughput table and ratios."""
    cpus = (0, 1) if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else (None, None)
    redis = shutil.which(args.redis)
    names = [f"kvloop fsync {m}" for m in KVLOOP_MODES]
    if redis:
        names += [f"redis appendfsync {m}" for m in REDIS_MODES]
    else:
        print(f"({args.redis} not found: redis columns left out)")
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for run in range(args.runs):
        order = names if run % 2 == 0 else names[::-1]
        for name in order:
            folder = tmp / f"run{run}-{name.replace(' ', '-')}"
            mode = name.rsplit(" ", 1)[1]
            server = (start_kvloop(cpus[0], folder, mode) if name.startswith("kvloop")
                      else start_redis(cpus[0], folder, redis, mode))
            try:
                for clients in args.clients:
                    result = measure(loadgen, cpus[1], server, clients, args.seconds)
                    results.setdefault((name, clients), []).append(result)
                    print(f"  run {run + 1}: {name:24} {clients:3} clients: "
                          f"{result['ops_per_sec']:9.0f} commits/s  p50 {result['p50_us']:7.0f} us"
                          f"  p99 {result['p99_us']:7.0f} us  other_cpu "
                          f"{result.get('other_cpu_pct', 0):.0f}%", flush=True)
            finally:
                server.stop()
                shutil.rmtree(folder, ignore_errors=True)

    def med(name: str, clients: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, clients)])

    print(f"\nPUT-only autocommit, 100-byte values, 10,000 keys, medians of {args.runs} runs of "
          f"{args.seconds:g} s\n")
    print("| server | clients | commits/s | p50 us | p99 us |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        for clients in args.clients:
            print(f"| {name} | {clients} | {med(name, clients, 'ops_per_sec'):,.0f} | "
                  f"{med(name, clients, 'p50_us'):,.0f} | {med(name, clients, 'p99_us'):,.0f} |")
    low, high = min(args.clients), max(args.clients)
    always = "kvloop fsync always"
    print(f"\nkvloop fsync always, {high} clients / {low} client: "
          f"{med(always, high, 'ops_per_sec') / med(always, low, 'ops_per_sec'):.1f}x "
          "(target >= 5x: group commit)")
    if redis:
        ratio = med(always, high, "ops_per_sec") / med("redis appendfsync always", high,
                                                       "ops_per_sec")
        print(f"kvloop fsync always / redis appendfsync always, {high} clients: {ratio:.2f}x "
              "(target >= 1.0x)")
        per_run = [a["ops_per_sec"] / b["ops_per_sec"] for a, b in
                   zip(results[(always, high)], results[("redis appendfsync always", high)])]
        print("  per run: " + ", ".join(f"{r:.2f}x" for r in per_run))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_recovery_folder(folder: Path, keys: int, log_commits: int) -> None:
    """A data folder of ``keys`` keys: a snapshot of most, the last ``log_commits`` in the log."""
    folder.mkdir(parents=True)
    in_snapshot = keys - log_commits
    value = "v" * 100
    items = ((f"key:{i:09d}", value) for i in range(in_snapshot))
    data_bytes = in_snapshot * (13 + 100)
    with open(folder / snapshot_name(2), "wb") as f:
        f.writelines(logformat.encode_snapshot(in_snapshot, items, in_snapshot, data_bytes))
    with open(folder / segment_name(2), "wb") as f:
        f.write(logformat.file_header(logformat.LOG_MAGIC))
        for n in range(log_commits):
            seq = in_snapshot + n + 1
            f.write(logformat.encode_commit(seq, [(f"key:{in_snapshot + n:09d}", value)]))


def recovery(args: argparse.Namespace, tmp: Path) -> None:
    """Measure and print recovery time for 1,000,000 keys in snapshot + log."""
    folder = tmp / "recovery" / "data"
    write_recovery_folder(folder, args.recovery_keys, args.recovery_log)
    size = sum(p.stat().st_size for p in folder.iterdir())
    recovered, listening, cpu = [], [], []
    for _ in range(args.runs):
        log_path = tmp / "recovery" / "server.log"
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "server.py"), "--port", "0", "--data-dir",
                 str(folder), "--compact-min-bytes", str(1 << 40)],
                stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp))
        wait_listening(log_path, proc)
        listening.append(time.monotonic() - started)
        cpu.append(cpu_seconds(proc.pid))
        text = log_path.read_text()
        match = re.search(r"recovered (\d+) keys .* in ([\d.]+) s", text)
        assert match and int(match.group(1)) == args.recovery_keys, text
        recovered.append(float(match.group(2)))
        Server("kvloop", 0, proc, []).stop()
    print(f"\nRecovery: {args.recovery_keys:,} keys (100-byte values): "
          f"{args.recovery_keys - args.recovery_log:,} in a snapshot + {args.recovery_log:,} "
          f"log records, {size / 2**20:.0f} MiB on disk")
    print(f"  recovery (log line), median of {args.runs}: {statistics.median(recovered):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in recovered)}); target < 3 s")
    print(f"  process start to listening, median: {statistics.median(listening):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in listening)})")
    print(f"  CPU time of the server process until listening, median: "
          f"{statistics.median(cpu):.2f} s (runs: {', '.join(f'{t:.2f}' for t in cpu)}; "
          "less disturbed than wall time when the machine is shared)")


def main(argv: list[str] | None = None) -> int:
    """Run the throughput table and the recovery measurement."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per cell (default 3)")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per cell (default 2)")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 10, 50], help="client counts (default 1,10,50)")
    p.add_argument("--loadgen", type=Path, default=None,
                   help="loadgen.c to build, or a built binary (default: "
                   "../shared/tools/loadgen/loadgen.c next to the checkout)")
    p.add_argument("--redis", default="redis-server", help="redis-server binary")
    p.add_argument("--recovery-keys", type=int, default=1_000_000)
    p.add_argument("--recovery-log", type=int, default=100_000,
                   help="of those, how many are commits in the log (default 100000)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-recovery", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kvloop-durability-") as name:
        tmp = Path(name)
        if not args.skip_throughput:
            throughput(args, build_loadgen(args.loadgen or default_loadgen(), tmp), tmp)
        if not args.skip_recovery:
            recovery(args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
