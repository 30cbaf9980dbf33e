#!/usr/bin/env python3
"""Memory that older versions cost: server RSS added by many commits while one snapshot is open.

    python benchmarks/version_memory.py --commits 1000000

Each scenario starts its own in-memory server on a free port (stopped by its PID at the end),
and one client pipelines autocommit PUTs in batches. The server's resident set size (VmRSS
from /proc/PID/status, so Linux only) is read before and after the commits:

- ``one key, no snapshot``: N commits of one key, nothing else open (the baseline: noise);
- ``one key, idle snapshot``: the same while another client has sent ``START snapshot`` and
  one GET and then waits; versions that snapshot can see are kept, no others;
- ``distinct keys, no snapshot`` / ``idle snapshot``: N keys are created first, then each is
  overwritten once (a value of the same size); with a snapshot open each overwrite keeps the
  value the snapshot sees, so the difference between the two is the cost of one old value.

The open snapshot's version counters (STATS ``transactions.versions``) are printed too, and
the snapshot's GET is checked to still return its value at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import RawConn, ServerProcess

BATCH = 1000
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def pipeline(conn: RawConn, lines: list[str]) -> None:
    """Send ``lines`` in batches, wait for every reply, and check they are all Ok."""
    for start in range(0, len(lines), BATCH):
        chunk = lines[start:start + BATCH]
        conn.send("".join(line + "\n" for line in chunk).encode("utf-8"))
        for _ in chunk:
            reply = conn.read_line()
            if reply != b'{"status":"Ok"}':
                raise RuntimeError(f"unexpected reply: {reply!r}")


def versions(conn: RawConn) -> dict:
    """The server's version counters from STATS."""
    return conn.ask("STATS")["result"]["transactions"]["versions"]


def scenario(name: str, commits: int, *, snapshot: bool, distinct: bool) -> dict:
    """Run one scenario on a fresh server; what it measured."""
    with tempfile.TemporaryDirectory(prefix="kvloop-vmem-") as tmp:
        server = ServerProcess(Path(tmp), "--in-memory")
        try:
            writer = server.connect(timeout=60)
            value = "v" * 16
            if distinct:
                pipeline(writer, [f"PUT k{n} {value}" for n in range(commits)])
            else:
                pipeline(writer, [f"PUT x {n:016d}" for n in range(20_000)])  # warm up
            reader = None
            if snapshot:
                reader = server.connect(timeout=60)
                assert reader.ask("START snapshot") == {"status": "Ok"}
                seen = reader.ask("GET k0" if distinct else "GET x")
            time.sleep(0.2)
            before = rss_bytes(server.proc.pid)
            started = time.monotonic()
            if distinct:
                pipeline(writer, [f"PUT k{n} {'w' * 16}" for n in range(commits)])
            else:
                for start in range(0, commits, 100_000):
                    pipeline(writer, [f"PUT x {n:016d}"
                                      for n in range(start, min(start + 100_000, commits))])
            elapsed = time.monotonic() - started
            time.sleep(0.2)
            after = rss_bytes(server.proc.pid)
            counters = versions(writer)
            if reader is not None:
                assert reader.ask("GET k0" if distinct else "GET x") == seen
                assert reader.ask("COMMIT")["status"] == "Ok"
            return {"scenario": name, "commits": commits, "seconds": round(elapsed, 1),
                    "rss_before_mib": round(before / MIB, 1),
                    "rss_after_mib": round(after / MIB, 1),
                    "added_mib": round((after - before) / MIB, 2),
                    "added_bytes_per_commit": round((after - before) / commits, 1),
                    "versions": counters}
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and print one JSON line each, then a summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commits", type=int, default=1_000_000,
                   help="commits per scenario (default 1000000)")
    p.add_argument("--only", choices=("one-key", "distinct"), help="run only these scenarios")
    args = p.parse_args(argv)
    results = []
    for distinct in (False, True):
        if args.only == ("one-key" if distinct else "distinct"):
            continue
        for snapshot in (False, True):
            name = (f"{'distinct keys' if distinct else 'one key'}, "
                    f"{'idle snapshot' if snapshot else 'no snapshot'}")
            result = scenario(name, args.commits, snapshot=snapshot, distinct=distinct)
            print(json.dumps(result), flush=True)
            results.append(result)
    for first, second in zip(results[::2], results[1::2]):
        extra = second["added_mib"] - first["added_mib"]
        print(f"{second['scenario']}: +{second['added_mib']} MiB over {args.commits} commits "
              f"({first['added_mib']} MiB with no snapshot: {extra:+.2f} MiB, "
              f"{extra * MIB / args.commits:+.1f} B per commit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
