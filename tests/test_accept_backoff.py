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
from support import RawConn, ok

pytest.importorskip("resource")  # POSIX only

NOFILE = 32
WAITING = 5


def test_accept_pauses_when_out_of_descriptors_and_recovers(start_server):
    server = start_server(script=Path(__file__).parent / "few_fds_server.py",
                          env={"KVLOOP_TEST_NOFILE": str(NOFILE)})
    assert f"the descriptor limit (ulimit -n) is {NOFILE}, below --max-clients" in server.log()
    served: list[RawConn] = []
    # Fill every free descriptor: the next connections wait in the kernel's backlog.
    while True:
        conn = RawConn(server.port, timeout=1.0)
        try:
            conn.send(b"PING\n")
            assert conn.read_line() == b'{"status":"Ok","result":"PONG"}'
        except socket.timeout:
            conn.close()
            break
        served.append(conn)
        assert len(served) < NOFILE, "the descriptor limit did not apply"
    waiting = [RawConn(server.port, timeout=5.0) for _ in range(WAITING)]
    for conn in waiting:
        conn.send(b"PING\n")
    time.sleep(0.5)  # at the limit: the server must idle, not spin on accept()
    # Logged once per episode, not at each 0.1 s retry.
    assert server.log().count("accept failed") == 1

    for conn in served[: WAITING + 1]:
        conn.close()
    for conn in waiting:  # each gets its PONG once a descriptor is free again
        assert conn.read_line() == b'{"status":"Ok","result":"PONG"}'
    assert server.connect().ask("PING") == ok("PONG")
    assert "accepting connections again" in server.log()
    for conn in served[WAITING + 1:] + waiting:
        conn.close()
