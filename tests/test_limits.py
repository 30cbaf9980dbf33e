"""Connection limits against the real server: --max-clients, --idle-timeout, TCP keepalive,
--client-buffer-budget, the per-turn share of a pipelining client, and the loop's side of an
AUTH delay (a timer, not a sleep)."""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import error_code, ok

HOLD_SERVER = Path(__file__).parent / "hold_server.py"


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_max_clients_extra_client_gets_one_limit_line_then_is_closed(start_server):
    server = start_server("--in-memory", "--max-clients", "3")
    clients = [server.connect() for _ in range(3)]
    for c in clients:
        assert c.ask("PING") == ok("PONG")
    extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    lines = read_all(extra).splitlines()
    assert len(lines) == 1
    reply = json.loads(lines[0])
    assert error_code(reply) == "LIMIT"
    assert "--max-clients" in reply["mesg"] and "3" in reply["mesg"]
    extra.close()
    # The others are unaffected, and a place freed is a place taken.
    assert clients[0].ask("PING") == ok("PONG")
    clients[0].close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the close on its next loop turn
        reply = server.connect().ask("PING")
        if reply == ok("PONG"):
            break
        assert error_code(reply) == "LIMIT"
        assert time.monotonic() < deadline, "the freed place was not given back"
        time.sleep(0.05)
    assert "refusing client" in server.log()


def test_idle_timeout_closes_idle_connections_and_frees_their_keys(start_server):
    server = start_server("--in-memory", "--idle-timeout", "0.5")
    idle, busy, other = server.connect(), server.connect(), server.connect()
    assert idle.ask("START") == ok()
    assert idle.ask("PUT hot 1") == ok()
    assert error_code(other.ask("PUT hot 2")) == "CONFLICT"
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # busy stays active; other too
        assert busy.ask("PING") == ok("PONG")
        assert other.ask("PING") == ok("PONG")
        time.sleep(0.1)
    reply = idle.reply()  # sent unasked, just before the close
    assert error_code(reply) == "LIMIT"
    assert "--idle-timeout" in reply["mesg"]
    assert idle.read_until_closed() == b""
    assert other.ask("PUT hot 2") == ok()  # the abandoned transaction was rolled back
    assert busy.ask("GET hot") == ok("2")


def _keepalive_timers(port: int) -> list[str]:
    """``ss`` lines of the server's accepted sockets on ``port`` (their timers shown)."""
    result = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                            capture_output=True, text=True, timeout=10, check=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs the ss command (iproute2)")
@pytest.mark.parametrize("flag, expected", [(None, True), ("0", False)])
def test_tcp_keepalive_is_on_for_accepted_sockets(start_server, flag, expected):
    server = start_server("--in-memory", *(("--tcp-keepalive", flag) if flag else ()))
    c = server.connect()
    assert c.ask("PING") == ok("PONG")
    lines = _keepalive_timers(server.port)
    assert len(lines) == 1, lines
    assert ("keepalive" in lines[0]) is expected, lines[0]


def test_client_buffer_budget_disconnects_the_biggest_clients(start_server):
    budget = 4 * 1024 * 1024
    server = start_server("--in-memory", "--client-buffer-budget", str(budget))
    small = server.connect()
    small.send(b"PUT small ")  # a partial line of a few bytes
    hogs = []
    for _ in range(8):  # 8 x 900 KiB partial lines: about 7 MiB held
        hog = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        hog.sendall(b"PUT big " + b"x" * (900 * 1024))
        hogs.append(hog)
    time.sleep(0.5)
    closed = []
    for hog in hogs:
        hog.settimeout(0.2)
        try:
            data = hog.recv(65536)
        except socket.timeout:
            continue
        closed.append(data)
    # Enough of the biggest were closed to get back under the budget, each told why.
    assert 4 <= len(closed) <= 5, closed
    for data in closed:
        reply = json.loads(data.splitlines()[0])
        assert error_code(reply) == "LIMIT" and "--client-buffer-budget" in reply["mesg"]
    # The small client and a new one are served; the survivors' lines still complete.
    small.send(b"1\n")
    assert small.reply() == ok()
    assert server.connect().ask("PING") == ok("PONG")
    for hog in hogs:
        hog.settimeout(10)
        try:
            hog.sendall(b"\n")
            line = hog.recv(65536)
        except OSError:
            continue
        if line and b"LIMIT" not in line:
            assert json.loads(line) == ok()
        hog.close()


def test_a_client_pipelining_without_reading_does_not_hold_up_others(server):
    hog = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    hog.setblocking(False)
    count = 200_000  # 6.4 MB of replies: more than the kernel's socket buffers hold
    burst = b"PING\n" * count
    sent = 0
    other = server.connect(timeout=5)
    while sent < len(burst):  # the hog reads nothing; the server pauses it (replies pile up)
        try:
            sent += hog.send(burst[sent:sent + 65536])
        except BlockingIOError:
            break  # its socket is full
        assert other.ask("PING") == ok("PONG")
    assert other.ask("PING") == ok("PONG")
    received = b""
    while received.count(b"\n") < count:  # once it reads, everything is answered in order
        readable, writable, _ = select.select([hog], [hog] if sent < len(burst) else [], [], 10)
        assert readable or writable, "stalled"
        if writable:
            sent += hog.send(burst[sent:sent + 65536])
        if readable:
            received += hog.recv(1 << 20)
    assert received == b'{"status":"Ok","result":"PONG"}\n' * count
    hog.close()


def test_an_auth_style_hold_delays_only_that_client(start_server):
    server = start_server("--in-memory", script=HOLD_SERVER)
    held, other = server.connect(), server.connect()
    held.send(b"PING hold\nPING after\n")
    started = time.monotonic()
    assert held.reply() == ok("hold")
    for _ in range(5):  # served at once while the held client waits
        assert other.ask("PING") == ok("PONG")
    assert time.monotonic() - started < 0.4
    assert held.reply() == ok("after")
    assert time.monotonic() - started >= 0.45  # its next line waited for the hold
    assert held.ask("PING") == ok("PONG")  # and the connection goes on afterwards


def test_the_loop_wakes_at_a_transaction_deadline_by_itself(start_server):
    """The loop's side of --txn-timeout: select() wakes at the executor's next deadline, so an
    abandoned transaction is rolled back on time even when no client sends anything."""
    server = start_server("--in-memory", "--txn-timeout", "0.3")
    holder, writer = server.connect(), server.connect()
    assert holder.ask("START") == ok()
    assert holder.ask("PUT hot 1") == ok()
    time.sleep(1.0)  # nobody sends anything meanwhile
    # One write, no retries: had the loop waited for an event to notice the deadline, this
    # PUT would run in that turn before the expiry and get CONFLICT.
    assert writer.ask("PUT hot 2") == ok()
    reply = holder.ask("GET hot")
    assert error_code(reply) == "LIMIT" and "--txn-timeout" in reply["mesg"]
