"""Seeded random-bytes fuzzing of a running kvloop server over several connections.

Sends random bytes, mutated commands, over-long lines and the odd HTTP line, and checks
that every reply is exactly one valid JSON line of the protocol's shape and that the server
still answers PING at the end. The test suite runs a short round (tests/test_fuzz_model.py);
a long run by hand:

    python tests/wire_fuzz.py --bytes 10000000 --seed 1     # starts its own server
    python tests/wire_fuzz.py --port 9999 --bytes 1000000   # or fuzz a running one

Exit status 0 if every check held, 1 (with the first failure) otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support import RawConn, server_unless

from kvloop.errors import ALL_CODES

TEMPLATES = [
    "PUT k v", "PUT key some value with  spaces ", "GET k", "DEL k", "START", "COMMIT",
    "ROLLBACK", "PING", "PING hello", "STATS", "HELP", "AUTH pw", "START serializable",
    "START snapshot", "SCAN", "SCAN PREFIX k LIMIT 3 VALUES", "GET \u65e5\u672c",
    "PUT \u00e9 \u2603\u2028x", "get k", "  PUT\tk\t v", "PUT k", "GET a b c",
]
SPICE = ["\x00", "\r", "\t", " ", "\n", "\u3000", "\u200b", "\u202e", "\u2028", "\u0085",
         "\udcff", "\u017f", "\u0131", "\xff", "QUIT", "Host:", "POST", "HTTP/1.1", "%s", "\\"]


class Failure(AssertionError):
    """A reply or the server broke the protocol's promises."""


def check_reply(line: bytes) -> dict:
    """``line`` parsed, if it is one valid protocol reply; else Failure."""
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise Failure(f"reply is not JSON: {line[:200]!r} ({exc})") from None
    if not isinstance(reply, dict) or reply.get("status") not in ("Ok", "Error"):
        raise Failure(f"reply has no status: {line[:200]!r}")
    if reply["status"] == "Error":
        if reply.get("code") not in ALL_CODES or not isinstance(reply.get("mesg"), str):
            raise Failure(f"malformed error reply: {line[:200]!r}")
        if reply["code"] == "INTERNAL":
            raise Failure(f"the server hit an internal error: {line[:200]!r}")
    if len(line.decode("utf-8").splitlines()) != 1:
        raise Failure(f"reply splits into several lines: {line[:200]!r}")
    return reply


def mutate(rng: random.Random, text: str) -> bytes:
    """A command template, mutated a few times, as bytes (maybe invalid UTF-8)."""
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(rng.randrange(0, 4)):
        roll = rng.random()
        at = rng.randrange(len(data) + 1)
        if roll < 0.3:
            data[at:at] = rng.choice(SPICE).encode("utf-8", "surrogatepass")
        elif roll < 0.5 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif roll < 0.7:
            del data[at:at + rng.randrange(1, 4)]
        else:
            data[at:at] = data[:rng.randrange(1, 8)]
    return bytes(data) + b"\n"


def make_chunk(rng: random.Random) -> bytes:
    """Some bytes to send: random, mutated commands, a long line, or (rarely) HTTP."""
    roll = rng.random()
    if roll < 0.5:
        return b"".join(mutate(rng, rng.choice(TEMPLATES)) for _ in range(rng.randrange(1, 30)))
    if roll < 0.97:
        size = rng.randrange(1, 3000)
        raw = bytearray(rng.randbytes(size))
        for _ in range(size // 40):  # newlines often enough to make many short lines
            raw[rng.randrange(size)] = 10
        return bytes(raw)
    if roll < 0.99:
        words = rng.randrange(1000, 600_000)
        verb = rng.choice([b"GET", b"DEL", b"START", b"PUT", b"PING", b"SCAN", b"AUTH"])
        return verb + b" a" * words + rng.choice([b"\n", b"\r\n", b""])
    return rng.choice([b"POST / HTTP/1.1\r\n", b"Host: x\r\n", b"GET / HTTP/1.1\r\n"])


class Conn:
    """A fuzzing connection: sends while reading, so neither side waits on the other."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setblocking(False)
        self.buf = b""
        self.replies = 0
        self.closed = False
        self.reset = False  # closed by a reset: a reply may have been cut by the kernel

    def pump(self, data: bytes, deadline: float) -> None:
        """Send ``data`` (reading replies meanwhile) unless the server closes first."""
        view = memoryview(data)
        while view and not self.closed:
            if time.monotonic() > deadline:
                raise Failure("the server stopped reading and answering")
            readable, writable, _ = select.select([self.sock], [self.sock], [], 1.0)
            if readable:
                self.receive()
            if writable and not self.closed:
                try:
                    sent = self.sock.send(view[:65536])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # reset after the server closed (HTTP line, QUIT)
                    self.closed = self.reset = True
                    return
                view = view[sent:]
        self.receive()

    def receive(self) -> None:
        """Read what has arrived and check each complete reply line."""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
                self.reset = True
            if not chunk:
                self.closed = True
                return
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            for line in lines:
                check_reply(line)
                self.replies += 1

    def finish(self, deadline: float) -> None:
        """Half-close and check every remaining reply until the server closes."""
        if not self.closed:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.closed = True
        while not self.closed:
            if time.monotonic() > deadline:
                raise Failure("the server did not finish answering after the client's EOF")
            select.select([self.sock], [], [], 1.0)
            self.receive()
        if self.buf and not self.reset:
            raise Failure(f"the server closed in the middle of a reply: {self.buf[:200]!r}")
        self.sock.close()


def ping(port: int) -> None:
    """Failure unless a fresh connection gets PONG."""
    conn = RawConn(port, timeout=10)
    try:
        conn.send(b"PING\n")
        data = conn.read_line()
    except ConnectionError:
        raise Failure("the server closed a fresh connection without answering PING") from None
    finally:
        conn.close()
    if json.loads(data) != {"status": "Ok", "result": "PONG"}:
        raise Failure(f"PING got {data!r}")


def fuzz(port: int, seed: int, total_bytes: int, connections: int = 4,
         time_limit: float = 600.0) -> dict:
    """Send at least ``total_bytes`` of fuzz over ``connections`` connections; return counts.

    Raises Failure on the first broken promise.
    """
    rng = random.Random(seed)
    deadline = time.monotonic() + time_limit
    conns = [Conn(port) for _ in range(connections)]
    sent = replies = reconnects = 0
    while sent < total_bytes:
        at = rng.randrange(connections)
        chunk = make_chunk(rng)
        conns[at].pump(chunk, deadline)
        sent += len(chunk)
        if conns[at].closed or rng.random() < 0.01:
            conns[at].finish(deadline)
            replies += conns[at].replies
            conns[at] = Conn(port)
            reconnects += 1
        if rng.random() < 0.02:
            ping(port)
    for conn in conns:
        conn.finish(deadline)
        replies += conn.replies
    ping(port)
    return {"bytes": sent, "replies": replies, "reconnects": reconnects}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="fuzz a server already on 127.0.0.1:PORT")
    parser.add_argument("--bytes", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds")
    args = parser.parse_args()
    with server_unless(args.port, "kvloop-fuzz-") as (port, server):
        started = time.monotonic()
        try:
            counts = fuzz(port, args.seed, args.bytes, args.connections, args.time_limit)
        except Failure as exc:
            print(f"FAILED (seed {args.seed}): {exc}")
            return 1
        finally:
            if server is not None and server.proc.poll() is not None:
                print(f"the server died:\n{server.log()[-3000:]}")
    print(f"ok: seed {args.seed}, {counts['bytes']:,} bytes over {args.connections} connections "
          f"({counts['reconnects']} reconnects), {counts['replies']:,} replies checked, "
          f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
