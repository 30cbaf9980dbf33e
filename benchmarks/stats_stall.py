"""How long another client's PING waits behind pipelined STATS while one client holds many
open write intents (issue 7: "STATS stalls everyone").

    python benchmarks/stats_stall.py [--intents 200000] [--stats 2000] [--code CHECKOUT]

Starts an in-memory server from this checkout (or CHECKOUT), opens a transaction holding
--intents keys, sends --stats STATS lines pipelined on a second connection, then a PING on a
third, and prints how long the PING took and how long the STATS batch took to answer.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_lines(sock: socket.socket, count: int, buf: bytearray) -> None:
    while buf.count(b"\n") < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed")
        buf += chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=200_000)
    parser.add_argument("--stats", type=int, default=2000)
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="kvloop-stats-")
    log = open(Path(workdir) / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(args.code / "server.py"), "--port", "0",
                             "--in-memory", "--data-dir", workdir, "--txn-timeout", "0"]
                            if (args.code / "kvloop" / "limits.py").exists() else
                            [sys.executable, str(args.code / "server.py"), "--port", "0",
                             "--in-memory", "--data-dir", workdir],
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = None
        while port is None:
            time.sleep(0.05)
            text = (Path(workdir) / "server.log").read_text()
            if "listening on" in text:
                port = int(text.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        holder = socket.create_connection(("127.0.0.1", port))
        holder.sendall(b"START\n" + b"".join(b"PUT key%d v\n" % n for n in range(args.intents)))
        buf = bytearray()
        read_lines(holder, args.intents + 1, buf)
        staller = socket.create_connection(("127.0.0.1", port))
        pinger = socket.create_connection(("127.0.0.1", port))
        started = time.monotonic()
        staller.sendall(b"STATS\n" * args.stats)
        time.sleep(0.001)
        ping_sent = time.monotonic()
        pinger.sendall(b"PING\n")
        read_lines(pinger, 1, bytearray())
        ping_took = time.monotonic() - ping_sent
        sbuf = bytearray()
        read_lines(staller, args.stats, sbuf)
        stats_took = time.monotonic() - started
        keys = json.loads(sbuf.split(b"\n")[0])["result"]["keys"]
        print(f"{args.intents:,} intents held; {args.stats:,} pipelined STATS answered in "
              f"{stats_took:.3f} s; another client's PING took {ping_took * 1000:.1f} ms "
              f"(STATS keys={keys})")
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


if __name__ == "__main__":
    main()
