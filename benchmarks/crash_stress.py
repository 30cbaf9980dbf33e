#!/usr/bin/env python3
"""kill -9 the server hundreds of times under concurrent writers; check every recovery.

    python benchmarks/crash_stress.py --kills 500 --seed 1
    python benchmarks/crash_stress.py --kills 100 --fsync everysec --compact-min-bytes 65536

Each round starts the real server on one data folder, checks that every commit acknowledged
so far is there and that no transaction is there in part, runs writer threads (numbered
autocommit PUTs and three-key transactions, every acknowledgement recorded) and kills the
server with SIGKILL after a random delay (tests/crash.py has the details). A small
``--compact-min-bytes`` makes kills land around compactions too. Prints progress, then the
totals; exits 1 at the first lost or partial commit. Everything runs on 127.0.0.1 in a
temporary folder, and stops by itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from crash import crash_rounds, data_folder_size
from support import ServerProcess


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and report; the exit status says whether every recovery was exact."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=500, help="kill points (default 500)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--writers", type=int, default=4, help="writer connections (default 4)")
    p.add_argument("--fsync", choices=("always", "everysec", "no"), default="always")
    p.add_argument("--compact-min-bytes", type=int, default=256 * 1024,
                   help="server's --compact-min-bytes (default 262144: frequent compactions)")
    args = p.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kvloop-crash-") as tmp:
        folder = Path(tmp) / "data"
        runs = 0

        def start() -> ServerProcess:
            nonlocal runs
            runs += 1
            workdir = Path(tmp) / f"run{runs % 2}"  # keep the last two logs, not all
            workdir.mkdir(exist_ok=True)
            return ServerProcess(workdir, "--data-dir", str(folder), "--fsync", args.fsync,
                                 "--compact-min-bytes", str(args.compact_min_bytes))

        def report(line: str) -> None:
            if runs % 25 == 0:
                print(f"{time.monotonic() - started:7.1f} s  {line}", flush=True)

        try:
            done = crash_rounds(start, args.kills, args.seed, args.writers, report)
        except AssertionError as exc:
            print(f"FAILED: {exc}", flush=True)
            return 1
        size = data_folder_size(folder)
    puts = sum(len(a.puts) for a in done)
    txns = sum(len(a.acked_txns) for a in done)
    sent = sum(len(a.sent_txns) for a in done)
    print(f"OK: {args.kills} kill -9 points (fsync {args.fsync}, seed {args.seed}), "
          f"{puts + txns} acknowledged commits ({puts} PUTs, "
          f"{txns} transactions of 3 keys; {sent} sent), "
          f"no acknowledged commit lost, no partial transaction; data folder {size} bytes; "
          f"{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
