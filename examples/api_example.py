#!/usr/bin/env python3
"""A short tour of kvloop's Python API. Start a server first (``python server.py``), then:

    python examples/api_example.py [--port 9999]

It works from a checkout with nothing installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import kvloop  # noqa: F401  # installed, or on the path already
except ImportError:  # running from a checkout: the package is next to this folder
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kvloop import (  # after the sys.path fix above
    Client,
    CommitOutcomeUnknown,
    ConflictError,
    ConnectionLost,
    NotFoundError,
)


def transfer(db: Client, source: str, target: str, amount: int) -> int:
    """Move ``amount`` from one account to another; returns the source's new balance.

    Meant to run inside ``db.transaction(...)``: it may run more than once if it conflicts.
    """
    balance = int(db.get(source))
    if balance < amount:
        raise ValueError(f"{source} has {balance}, cannot move {amount}")
    db.put(source, str(balance - amount))
    db.put(target, str(int(db.get(target)) + amount))
    return balance - amount


def main() -> int:
    """Run the tour against the server at --host/--port; exit 1 if it cannot connect."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    args = parser.parse_args()

    try:
        db = Client(args.host, args.port)
    except ConnectionLost as exc:
        print(f"api_example: {exc}", file=sys.stderr)
        return 1

    with db:
        # Plain reads and writes; each write outside a transaction commits on its own.
        db.put("georgew", '{"first_name":"George", "last_name":"Washington"}')
        print("georgew =", db.get("georgew"))
        db.delete("nobody")
        try:
            db.get("nobody")
        except NotFoundError as exc:
            print("nobody:", exc.code, "-", exc.mesg)

        # A transaction as a with-block: commits at the end, rolls back if the block raises.
        with db.transaction(level="serializable"):
            db.put("alice", "100")
            db.put("bob", "50")
        print("opening balances committed as commit", db.last_commit_seq)

        try:
            with db.transaction():
                db.put("alice", "0")
                raise RuntimeError("changed my mind")
        except RuntimeError:
            print("rolled back: alice is still", db.get("alice"))

        # A transaction as a function: run again (up to 5 more times) on CONFLICT, when
        # nothing was applied. A COMMIT whose reply was lost is never retried blindly.
        try:
            left = db.transaction(lambda c: transfer(c, "alice", "bob", 30),
                                  level="serializable", retries=5)
            print(f"moved 30: alice has {left}, bob has {db.get('bob')}")
        except ConflictError as exc:
            print("still conflicting after 5 retries, nothing applied:", exc.mesg)
        except CommitOutcomeUnknown as exc:
            print("the connection dropped during COMMIT; check before retrying:", exc)
            return 1

        # Keys in order (fetched a page at a time as the loop asks for them); a prefix
        # narrows the listing, values=True gives (key, value) pairs.
        for i in range(3):
            db.put(f"order:{i:04d}", f"item {i}")
        for key, value in db.scan("order:", values=True):
            print(f"  {key} = {value}")
        print("every key:", ", ".join(db.scan()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
