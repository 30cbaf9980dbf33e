"""The floor: the least a Python ``selectors`` server can do per request, for comparison.

It speaks just enough of kvloop's protocol for the load generator (``PUT key value`` and
``GET key``, one JSON line per reply) and nothing else: no validation, escaping, limits,
transactions, durability, fairness, output buffering or error handling. Every ready socket is
read once per loop turn (64 KiB), its whole lines answered, and the replies sent with one
``send``. What kvloop costs beyond this is the price of its features; what this costs is the
price of Python and the syscalls. ``benchmarks/compare_redis.py --floor`` runs it beside
kvloop and redis-server. Not a server to use: it trusts its input.

    python benchmarks/floor_server.py --port 9998
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket

OK = b'{"status":"Ok"}\n'
NOT_FOUND = b'{"status":"Error","code":"NOT_FOUND","mesg":"Key not found"}\n'


def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` (0: any free one, printed) until SIGTERM or SIGINT."""
    selector = selectors.DefaultSelector()
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    replies: dict[bytes, bytes] = {}  # key -> its GET reply, made when it was PUT
    partial: dict[socket.socket, bytes] = {}
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    while not stopping:
        for key, _ in selector.select(0.5):
            sock = key.fileobj
            if sock is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn, selectors.EVENT_READ)
                partial[conn] = b""
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()
                del partial[sock]
                continue
            lines = (partial[sock] + data).split(b"\n")
            partial[sock] = lines.pop()
            out = []
            for line in lines:
                if line[:4] == b"GET ":
                    out.append(replies.get(line[4:], NOT_FOUND))
                else:
                    _, name, value = line.split(b" ", 2)
                    replies[name] = b'{"status":"Ok","result":"' + value + b'"}\n'
                    out.append(OK)
            sock.send(b"".join(out))  # replies are small: a full socket buffer is not handled


def main() -> None:
    """Parse ``--port`` and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
