"""Out of file descriptors: the server pauses accepting instead of spinning, and recovers.

When accept() fails with EMFILE the listening socket stays readable, so a loop that just
retries would burn a core and flood the log. The server stops watching the listener for a
moment instead, and picks up the waiting connections once descriptors free up.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from support import ok

pytest.importorskip("resource")  # POSIX only

NOFILE = 32
WAITING = 5


def _ping(sock: socket.socket) -> bytes:
    sock.sendall(b"PING\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_accept_pauses_when_out_of_descriptors_and_recovers(start_server):
    server = start_server(script=Path(__file__).parent / "few_fds_server.py",
                          env={"KVLOOP_TEST_NOFILE": str(NOFILE)})
    assert f"the descriptor limit (ulimit -n) is {NOFILE}, below --max-clients" in server.log()
    served: list[socket.socket] = []
    # Fill every free descriptor: the next connections wait in the kernel's backlog.
    while True:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=1.0)
        try:
            assert _ping(sock) == b'{"status":"Ok","result":"PONG"}\n'
        except socket.timeout:
            sock.close()
            break
        served.append(sock)
        assert len(served) < NOFILE, "the descriptor limit did not apply"
    waiting = [socket.create_connection(("127.0.0.1", server.port), timeout=5.0)
               for _ in range(WAITING)]
    for sock in waiting:
        sock.sendall(b"PING\n")
    time.sleep(0.5)  # at the limit: the server must idle, not spin on accept()
    # Logged once per episode, not at each 0.1 s retry.
    assert server.log().count("accept failed") == 1

    for sock in served[: WAITING + 1]:
        sock.close()
    for sock in waiting:  # each gets its PONG once a descriptor is free again
        data = b""
        while not data.endswith(b"\n"):
            data += sock.recv(4096)
        assert data == b'{"status":"Ok","result":"PONG"}\n'
    assert server.connect().ask("PING") == ok("PONG")
    assert "accepting connections again" in server.log()
    for sock in served[WAITING + 1:] + waiting:
        sock.close()
