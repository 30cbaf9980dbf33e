"""CPU cost of hostile request lines in the sans-IO core (no sockets): a 1 MiB line of
one-letter words to GET/DEL/START, and, for scale, a 1 MiB PUT value and a plain GET.

    python benchmarks/long_lines.py [--repeat 7]

Prints, per line, the median and the best of several timed runs (milliseconds per line).
A line of many words used to be split whole just to count them (~500k strings); the
commands now stop at the second word. The machine may be shared: compare medians of one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

# The checkout this script is in (or, with --code DIR, another one to compare with).
ROOT = Path(__file__).resolve().parent.parent


WORDS = 524_000  # " a" * WORDS is just under the 1 MiB line limit

LINES = [
    ("GET a a a ... (1 MiB)", b"GET" + b" a" * WORDS, 10),
    ("DEL a a a ... (1 MiB)", b"DEL" + b" a" * WORDS, 10),
    ("START a a a ... (1 MiB)", b"START" + b" a" * WORDS, 10),
    ("PUT big <1 MiB value>", b"PUT big" + b" v" * WORDS, 10),
    ("GET k (hot path, 1 line)", b"GET k", 20_000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per line")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="checkout whose kvloop package to measure (default: this one)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code))
    from kvloop.commands import CommandExecutor
    from kvloop.config import Settings

    executor = CommandExecutor(Settings())
    session = executor.open_session("bench")
    executor.execute(session, b"PUT k v")
    for name, line, number in LINES:
        runs = timeit.repeat(lambda line=line: executor.execute(session, line),
                             number=number, repeat=args.repeat)
        per_line = [run / number * 1e3 for run in runs]
        print(f"{name:26s} median {statistics.median(per_line):9.4f} ms   "
              f"best {min(per_line):9.4f} ms")


if __name__ == "__main__":
    main()
