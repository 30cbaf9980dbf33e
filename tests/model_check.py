"""Model-based testing: random commands from several connections against a running server and
against a reference model written here, comparing every reply.

The model is the contract (SPEC §2-§4) at read-committed, the default level: autocommit
writes, one transaction per connection, write intents (CONFLICT on another's key, no effect),
reads of the committed value or one's own write, commit numbers, and the error codes of bad
requests. Commands come with odd whitespace, lower-case verbs, Unicode keys and values, and
invalid keys and arguments. The test suite runs a short round (tests/test_fuzz_model.py); a
long run by hand:

    python tests/model_check.py --steps 100000 --seed 1     # starts its own server
    python tests/model_check.py --port 9999 --steps 10000   # or check a running one

Exit status 0 if every reply matched, 1 (with the step and the history's tail) otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

KEYS = ["a", "b", "k1", "\u00e9t\u00e9", "\u65e5\u672c", "snow\u2603", "x/y:z", "\U0001f600"]
BAD_KEYS = ["a\u3000b", "\u200bk", "k\u202e", "line\u2028sep", "tab\x07"]
VALUE_PIECES = ["1", "v", "hello world", "  inner  ", "\u2603", "\u2028", "\u0085", "\"q\"",
                "\\", "{\"json\": [1, 2]}", "\t", "\u00e9", "0"]


class Mismatch(AssertionError):
    """The server's reply differs from the model's."""


class Model:
    """The expected behaviour: committed data, each connection's open transaction, intents."""

    def __init__(self) -> None:
        self.committed: dict[str, str] = {}
        self.seq = 0
        self.txns: dict[int, dict[str, str | None] | None] = {}
        self.owner: dict[str, int] = {}

    def put(self, conn: int, key: str, value: str | None) -> dict:
        holder = self.owner.get(key)
        if holder is not None and holder != conn:
            return {"code": "CONFLICT"}
        txn = self.txns.get(conn)
        if txn is None:
            if value is None:
                if key in self.committed:
                    del self.committed[key]
                    self.seq += 1
            else:
                self.committed[key] = value
                self.seq += 1
        else:
            txn[key] = value
            self.owner[key] = conn
        return {"status": "Ok"}

    def get(self, conn: int, key: str) -> dict:
        txn = self.txns.get(conn)
        value = txn[key] if txn is not None and key in txn else self.committed.get(key)
        return {"code": "NOT_FOUND"} if value is None else {"status": "Ok", "result": value}

    def start(self, conn: int) -> dict:
        if self.txns.get(conn) is not None:
            return {"code": "IN_TRANSACTION"}
        self.txns[conn] = {}
        return {"status": "Ok"}

    def end(self, conn: int, commit: bool) -> dict:
        txn = self.txns.get(conn)
        if txn is None:
            return {"code": "NO_TRANSACTION"}
        self.txns[conn] = None
        for key in txn:
            del self.owner[key]
        if not commit:
            return {"status": "Ok"}
        changed = False
        for key, value in txn.items():
            if value is None:
                changed |= self.committed.pop(key, None) is not None
            else:
                self.committed[key] = value
                changed = True
        if changed:
            self.seq += 1
        return {"status": "Ok", "result": {"seq": self.seq}}


def blank(rng: random.Random) -> str:
    """A run of spaces and tabs (the protocol's word separator)."""
    return "".join(rng.choice(" \t") for _ in range(rng.choice((1, 1, 1, 2, 3))))


def verb(rng: random.Random, name: str) -> str:
    """The verb in a random ASCII case, sometimes after leading blanks."""
    spelled = "".join(c.lower() if rng.random() < 0.3 else c for c in name)
    return (blank(rng) if rng.random() < 0.1 else "") + spelled


def value(rng: random.Random) -> str:
    """A PUT value: the rest of the line; it must not start with a blank or end with CR."""
    text = "".join(rng.choice(VALUE_PIECES) for _ in range(rng.randrange(1, 4)))
    text = text.lstrip(" \t")
    return text or "v"


def step(rng: random.Random, model: Model, conn: int) -> tuple[str, dict]:
    """One random command line for connection ``conn`` and the reply the model expects."""
    roll = rng.random()
    key = rng.choice(KEYS)
    if roll < 0.30:
        text = value(rng)
        return f"{verb(rng, 'PUT')}{blank(rng)}{key}{blank(rng)}{text}", model.put(conn, key, text)
    if roll < 0.50:
        trailing = blank(rng) if rng.random() < 0.2 else ""
        return f"{verb(rng, 'GET')}{blank(rng)}{key}{trailing}", model.get(conn, key)
    if roll < 0.60:
        return f"{verb(rng, 'DEL')}{blank(rng)}{key}", model.put(conn, key, None)
    if roll < 0.70:
        return verb(rng, "START"), model.start(conn)
    if roll < 0.78:
        return verb(rng, "COMMIT"), model.end(conn, commit=True)
    if roll < 0.84:
        return verb(rng, "ROLLBACK"), model.end(conn, commit=False)
    bad = rng.choice([
        (f"PUT {rng.choice(BAD_KEYS)} v", "BAD_REQUEST"),
        (f"GET {rng.choice(BAD_KEYS)}", "BAD_REQUEST"),
        (f"PUT {key}", "BAD_REQUEST"),
        (f"GET {key} {key}", "BAD_REQUEST"),
        ("DEL", "BAD_REQUEST"),
        ("COMMIT now", "BAD_REQUEST"),
        ("\u017ftats", "UNKNOWN_COMMAND"),
        ("FROB x", "UNKNOWN_COMMAND"),
        ("START sometimes", "BAD_REQUEST"),
    ])
    return bad[0], {"code": bad[1]}


def matches(reply: dict, expected: dict) -> bool:
    """An error matches on its code; a success on the whole reply."""
    if "code" in expected:
        return reply.get("status") == "Error" and reply.get("code") == expected["code"]
    return reply == expected


class Conn:
    """A blocking connection that sends one line and reads its one reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def ask(self, line: str) -> bytes:
        self.sock.sendall(line.encode("utf-8") + b"\n")
        reply = self.file.readline()
        if not reply.endswith(b"\n"):
            raise Mismatch(f"connection closed after {line!r}")
        return reply


def check(port: int, seed: int, steps: int, connections: int = 4) -> dict:
    """Run ``steps`` random commands; Mismatch at the first reply the model did not expect."""
    rng = random.Random(seed)
    model = Model()
    conns = [Conn(port) for _ in range(connections)]
    history: deque[str] = deque(maxlen=30)
    errors = conflicts = 0
    for number in range(steps):
        at = rng.randrange(connections)
        line, expected = step(rng, model, at)
        raw = conns[at].ask(line)
        history.append(f"[{at}] {line!r} -> {raw.decode('utf-8', 'replace').strip()}")
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = {"unparsable": raw.decode("utf-8", "replace")}
        if not matches(reply, expected) or len(raw.decode().splitlines()) != 1:
            tail = "\n  ".join(history)
            raise Mismatch(f"step {number}: {line!r} expected {expected}, got {reply}\n"
                           f"history (last {len(history)}):\n  {tail}")
        errors += "code" in expected
        conflicts += expected.get("code") == "CONFLICT"
    for conn in conns:
        conn.sock.close()
    return {"steps": steps, "errors": errors, "conflicts": conflicts, "seq": model.seq}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="check a server already on 127.0.0.1:PORT "
                        "(it must start empty, at read-committed)")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    from support import server_unless
    with server_unless(args.port, "kvloop-model-") as (port, _):
        started = time.monotonic()
        try:
            counts = check(port, args.seed, args.steps, args.connections)
        except Mismatch as exc:
            print(f"FAILED (seed {args.seed}): {exc}")
            return 1
    print(f"ok: seed {args.seed}, {counts['steps']:,} steps over {args.connections} "
          f"connections, every reply as the model expected ({counts['errors']:,} errors, "
          f"{counts['conflicts']:,} conflicts, final seq {counts['seq']:,}), "
          f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
