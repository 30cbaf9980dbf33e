"""Hostile load against a kvloop server: does a fresh client still get fast answers, and does
the server's memory stay bounded?

At once, for ``--seconds`` (default 15):

- ``--pipeliners`` clients (default 100) send ``PING`` lines as fast as the server takes them
  and never read a reply;
- ``--big-liners`` clients (default 16) send 1 MiB lines of words (``GET a a a ...``), reading
  and dropping the replies;
- ``--slowloris`` clients (default 500) each trickle a request line a few bytes at a time and
  never finish it.

Meanwhile a probe opens a fresh connection every ``--probe-interval`` seconds, sends one PING
and times the reply; the server's resident memory is sampled from /proc. The report gives the
PING latency percentiles and the server's peak RSS. Issue 7 asks for p99 < 50 ms and RSS under
200 MiB.

Only 127.0.0.1; bounded in time and connection count; stops by itself. It starts its own server
(``python server.py --port 0 --in-memory``, extra flags after ``--``) unless ``--port`` is given,
and raises its own descriptor limit (RLIMIT_NOFILE) to what the clients need. Run:

    python benchmarks/hostile_load.py                # the issue's mix, its own server
    python benchmarks/hostile_load.py --pipeliners 0 --big-liners 0 --slowloris 0  # baseline
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BIG_LINE = b"GET" + b" a" * (512 * 1024 - 2) + b"\n"  # 1 MiB of words
PIPELINE_CHUNK = b"PING\n" * 13_000  # about 64 KiB per send
SLOWLORIS_STEP = b"PUT slow"  # then one byte at a time, never a newline
SLOWLORIS_INTERVAL = 1.0  # seconds between a slow client's bytes


def raise_nofile(needed: int) -> None:
    """Raise the soft descriptor limit to ``needed`` (up to the hard limit), or exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"need {needed} file descriptors, the hard limit is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def start_server(extra: list[str], workdir: str) -> tuple[subprocess.Popen, int]:
    """``python server.py --port 0 --in-memory EXTRA`` in ``workdir``; (process, port)."""
    log_path = Path(workdir) / "server.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - the server's log for its lifetime
    proc = subprocess.Popen([sys.executable, str(ROOT / "server.py"), "--port", "0",
                             "--in-memory", *extra],
                            cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        match = re.search(r"listening on \S+:(\d+)", log_path.read_text(errors="replace"))
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            sys.exit(f"the server exited: {log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    proc.kill()
    sys.exit("the server did not start listening within 15 s")


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of process ``pid`` in KiB, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


# -- the attackers: one process, one selectors loop over every hostile connection -----------

class Attack:
    """The hostile clients' state, driven by one non-blocking loop until ``until``."""

    def __init__(self, port: int, pipeliners: int, big_liners: int, slowloris: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.sent = {"pipeline": 0, "big": 0, "slow": 0}
        self.closed_by_server = {"pipeline": 0, "big": 0, "slow": 0}
        self.slow: list[socket.socket] = []
        for kind, count in (("pipeline", pipeliners), ("big", big_liners),
                            ("slow", slowloris)):
            for _ in range(count):
                sock = socket.create_connection((HOST, port), timeout=10)
                sock.setblocking(False)
                if kind == "slow":
                    self.slow.append(sock)
                    self._send(sock, kind, SLOWLORIS_STEP)
                    self.selector.register(sock, selectors.EVENT_READ, (kind, [0]))
                else:
                    events = selectors.EVENT_WRITE | (selectors.EVENT_READ if kind == "big" else 0)
                    self.selector.register(sock, events, (kind, [0]))

    def _send(self, sock: socket.socket, kind: str, data: bytes) -> int:
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self._drop(sock, kind)
            return 0
        self.sent[kind] += sent
        return sent

    def _drop(self, sock: socket.socket, kind: str) -> None:
        self.closed_by_server[kind] += 1
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()
        if sock in self.slow:
            self.slow.remove(sock)

    def run(self, until: float) -> None:
        """Attack until the monotonic instant ``until``."""
        next_trickle = time.monotonic() + SLOWLORIS_INTERVAL
        while time.monotonic() < until:
            for key, mask in self.selector.select(0.05):
                sock = key.fileobj
                kind, offset = key.data
                if mask & selectors.EVENT_READ:
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    except OSError:
                        data = b""
                    if data == b"":
                        self._drop(sock, kind)
                        continue
                if mask & selectors.EVENT_WRITE:
                    payload = BIG_LINE if kind == "big" else PIPELINE_CHUNK
                    offset[0] = (offset[0] + self._send(sock, kind, payload[offset[0]:])) \
                        % len(payload)
            if time.monotonic() >= next_trickle:
                next_trickle += SLOWLORIS_INTERVAL
                for sock in list(self.slow):
                    self._send(sock, "slow", b"x")


def attack_process(port: int, pipeliners: int, big_liners: int, slowloris: int,
                   seconds: float, ready: multiprocessing.Event,
                   results: multiprocessing.Queue) -> None:
    """Entry point of the attacking process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_nofile(pipeliners + big_liners + slowloris + 64)
    attack = Attack(port, pipeliners, big_liners, slowloris)
    ready.set()
    attack.run(time.monotonic() + seconds)
    results.put((attack.sent, attack.closed_by_server))


# -- the probe ------------------------------------------------------------------------------

def probe(port: int) -> tuple[float, float]:
    """A fresh connection's (connect seconds, PING round trip seconds)."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as sock:
        connected = time.perf_counter()
        sock.sendall(b"PING\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before the PING reply")
            data += chunk
        done = time.perf_counter()
    if data != b'{"status":"Ok","result":"PONG"}\n':
        raise RuntimeError(f"unexpected reply {data!r}")
    return connected - started, done - connected


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> int:
    """Run the attack and the probe; print the report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, help="attack this running server instead of starting one")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=2.0, help="attack this long before probing")
    p.add_argument("--pipeliners", type=int, default=100)
    p.add_argument("--big-liners", type=int, default=16)
    p.add_argument("--slowloris", type=int, default=500)
    p.add_argument("--probe-interval", type=float, default=0.02)
    p.add_argument("server_flags", nargs="*", help="after --: extra flags for the server")
    args = p.parse_args()
    if args.seconds > 120 or args.pipeliners + args.big_liners + args.slowloris > 5000:
        sys.exit("bounded on purpose: at most 120 s and 5000 hostile connections")
    raise_nofile(args.pipeliners + args.big_liners + args.slowloris + 256)

    workdir = tempfile.mkdtemp(prefix="kvloop-hostile-")
    proc = None
    if args.port is None:
        proc, port = start_server(args.server_flags, workdir)
    else:
        port = args.port
    try:
        ready = multiprocessing.Event()
        results: multiprocessing.Queue = multiprocessing.Queue()
        attacker = multiprocessing.Process(
            target=attack_process,
            args=(port, args.pipeliners, args.big_liners, args.slowloris,
                  args.warmup + args.seconds, ready, results))
        attacker.start()
        if not ready.wait(60):
            sys.exit("the attackers could not connect within 60 s")
        time.sleep(args.warmup)
        connects, pings, rss_peak = [], [], 0
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            connect, ping = probe(port)
            connects.append(connect)
            pings.append(ping)
            if proc is not None:
                rss_peak = max(rss_peak, rss_kib(proc.pid)[0])
            time.sleep(args.probe_interval)
        sent, closed = results.get(timeout=60)
        attacker.join(30)
        hwm = rss_kib(proc.pid)[1] if proc is not None else 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    ms = 1000
    print(f"attack: {args.pipeliners} pipeliners, {args.big_liners} 1 MiB-liners, "
          f"{args.slowloris} slowloris, {args.seconds:g} s (+{args.warmup:g} s warm-up)")
    print("bytes sent by the attackers: " + ", ".join(f"{k} {v}" for k, v in sent.items()))
    print("attacker connections closed by the server: "
          + ", ".join(f"{k} {v}" for k, v in closed.items()))
    print(f"fresh-client PING: n={len(pings)} p50={percentile(pings, 50) * ms:.1f} ms "
          f"p90={percentile(pings, 90) * ms:.1f} ms p99={percentile(pings, 99) * ms:.1f} ms "
          f"max={max(pings) * ms:.1f} ms")
    print(f"fresh-client connect: p50={percentile(connects, 50) * ms:.1f} ms "
          f"p99={percentile(connects, 99) * ms:.1f} ms")
    if proc is not None:
        print(f"server RSS: peak sampled {rss_peak / 1024:.1f} MiB, "
              f"high-water mark {hwm / 1024:.1f} MiB")
        log = (Path(workdir) / "server.log").read_text(errors="replace")
        print(f"server log: {log.count('client-buffer-budget')} buffer-budget disconnections, "
              f"{log.count('Traceback')} tracebacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
