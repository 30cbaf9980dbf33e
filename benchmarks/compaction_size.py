#!/usr/bin/env python3
"""How big the data folder gets: 100,000 overwrites of 100 keys with 1 KiB values.

    python benchmarks/compaction_size.py [--count 100000] [--fsync always]

Starts a persistent server on a free loopback port in a temporary folder, sends the
overwrites pipelined (500 per batch) on one connection, and prints the largest folder size
seen between batches, the final size, how many compactions ran, and the time taken. The
target (issue 6) is a folder under 4 MiB. Exits 1 if it was not met.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import ServerProcess
from test_compaction import folder_size, overwrite

LIMIT = 4 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    """Run the overwrites and report the folder's size."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=100_000, help="overwrites (default 100000)")
    p.add_argument("--fsync", choices=("always", "everysec", "no"), default="always")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kvloop-size-") as tmp:
        folder = Path(tmp) / "data"
        server = ServerProcess(Path(tmp), "--fsync", args.fsync)
        try:
            started = time.monotonic()
            largest = overwrite(server.connect(timeout=30), folder, args.count)
            elapsed = time.monotonic() - started
            final = folder_size(folder)
            compactions = server.log().count("compaction: snapshot")
        finally:
            server.stop()
    verdict = "OK" if largest < LIMIT else "OVER"
    print(f"{verdict}: {args.count} overwrites of 100 keys (1 KiB values, fsync {args.fsync}) "
          f"in {elapsed:.1f} s: largest folder {largest} bytes ({largest / 2**20:.2f} MiB), "
          f"final {final} bytes, {compactions} compactions")
    return 0 if largest < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
