"""An unexpected exception in a command (SPEC §2 INTERNAL): the command gets INTERNAL with a
helpful message, the traceback goes to the log, and the server and connections keep working.

The fault is injected by tests/fault_server.py, which patches kvloop's command table so that
PUT/GET/DEL on the key ``boom`` raise RuntimeError.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import error_code, ok

FAULT_SERVER = Path(__file__).parent / "fault_server.py"


@pytest.fixture
def server(start_server):
    """A server whose PUT/GET/DEL of the key ``boom`` raise RuntimeError."""
    return start_server(script=FAULT_SERVER)


def assert_internal(reply: dict) -> None:
    """``reply`` is INTERNAL with a message that tells the client what happened."""
    assert error_code(reply) == "INTERNAL", reply
    mesg = reply["mesg"]
    assert "unexpected error" in mesg
    assert "no effect" in mesg
    assert "logged" in mesg
    assert "still usable" in mesg


@pytest.mark.parametrize("command", ["GET boom", "PUT boom secret-value-42", "DEL boom"])
def test_fault_gets_internal_and_traceback_is_logged(server, command):
    c = server.connect()
    assert_internal(c.ask(command))
    log = server.log()
    assert "Traceback (most recent call last)" in log
    verb = command.split()[0]
    assert f"RuntimeError: injected fault in {verb}" in log
    assert "unexpected error in a command of client 127.0.0.1:" in log
    assert "secret-value-42" not in log  # values never go to the log
    # The same connection and another one keep working.
    assert c.ask("PUT a 1") == ok()
    assert c.ask("GET a") == ok("1")
    other = server.connect()
    assert other.ask("GET a") == ok("1")
    assert other.ask("PING") == ok("PONG")
    assert server.proc.poll() is None


def test_faulting_command_has_no_effect(server):
    c = server.connect()
    assert_internal(c.ask("PUT boom x"))
    assert_internal(c.ask("GET boom"))
    stats = c.ask("STATS")["result"]
    assert stats["keys"] == 0
    assert stats["commit_seq"] == 0
    assert stats["errors"]["INTERNAL"] == 2


def test_fault_in_a_pipeline_keeps_the_order(server):
    c = server.connect()
    c.send(b"PUT a 1\nGET boom\nGET a\nDEL boom\nPING\n")
    first, second, third, fourth, fifth = c.replies(5)
    assert first == ok()
    assert_internal(second)
    assert third == ok("1")
    assert_internal(fourth)
    assert fifth == ok("PONG")


def test_transaction_survives_a_fault(server):
    c, other = server.connect(), server.connect()
    assert c.ask("PUT kept old") == ok()
    assert c.ask("START") == ok()
    assert c.ask("PUT kept new") == ok()
    assert_internal(c.ask("PUT boom x"))
    assert_internal(c.ask("GET boom"))
    # Still the same open transaction: its writes are there, its keys still held.
    assert error_code(c.ask("START")) == "IN_TRANSACTION"
    assert c.ask("GET kept") == ok("new")
    assert error_code(other.ask("PUT kept theirs")) == "CONFLICT"
    assert other.ask("GET kept") == ok("old")
    assert c.ask("PUT more 2") == ok()
    reply = c.ask("COMMIT")
    assert reply["status"] == "Ok" and "seq" in reply["result"]
    assert other.ask("GET kept") == ok("new")
    assert other.ask("GET more") == ok("2")


def test_many_faults_do_not_wear_the_server_down(server):
    c = server.connect()
    c.send(b"GET boom\n" * 200 + b"PING\n")
    replies = c.replies(201)
    assert all(error_code(r) == "INTERNAL" for r in replies[:200])
    assert replies[200] == ok("PONG")
    assert server.log().count("RuntimeError: injected fault in GET") == 200


def test_fault_in_the_network_layer_closes_only_that_connection(server):
    """A bug below the commands (here in the line framing) costs the one connection: it is
    closed and its transaction rolled back; the server and every other client go on."""
    victim, other = server.connect(), server.connect()
    assert victim.ask("START") == ok()
    assert victim.ask("PUT held uncommitted") == ok()
    assert error_code(other.ask("PUT held mine")) == "CONFLICT"
    victim.send(b"PING CRASH-CONNECTION\n")
    assert victim.read_until_closed() == b""  # no reply: the connection is closed
    assert "unexpected error serving client" in server.log()
    assert "Traceback (most recent call last)" in server.log()
    # The victim's transaction was rolled back and its key freed.
    assert error_code(other.ask("GET held")) == "NOT_FOUND"
    assert other.ask("PUT held mine") == ok()
    assert server.connect().ask("GET held") == ok("mine")


def test_a_failing_session_close_still_closes_the_socket(server):
    """If closing the session raises, the error is logged and the socket is closed anyway:
    twenty such clients leave the server with no more descriptors open than before."""
    fd_dir = Path(f"/proc/{server.proc.pid}/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc to count the server's descriptors")
    assert server.connect().ask("PING") == ok("PONG")  # warmed up
    before = len(list(fd_dir.iterdir()))
    for _ in range(20):
        c = server.connect()
        assert c.ask("PING FAIL-ON-CLOSE") == ok("FAIL-ON-CLOSE")
        assert c.ask("QUIT") == ok()
        assert c.read_until_closed() == b""
        c.close()
    assert server.connect().ask("PING") == ok("PONG")
    assert server.log().count("RuntimeError: injected fault in close_session") == 20
    deadline = time.monotonic() + 5  # lingering sockets close within LINGER_SECONDS
    while len(list(fd_dir.iterdir())) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(fd_dir.iterdir())) <= before
