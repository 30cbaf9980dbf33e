"""Starting and stopping the server process (SPEC §5 signals, §6 logging).

The startup line, clean stops on SIGTERM and SIGINT with clients connected, and a clear
failure when the port is taken.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import pytest
from support import ROOT, ok

STARTUP = re.compile(r"listening on 127\.0\.0\.1:(\d+) \((.*)\)")


def wait_exit(server, sig: int) -> int:
    """Send ``sig`` to the server and return its exit status."""
    server.proc.send_signal(sig)
    return server.proc.wait(timeout=10)


def test_startup_line_names_address_settings_and_persistence(server):
    log = server.log()
    match = STARTUP.search(log)
    assert match, log
    assert int(match.group(1)) == server.port
    settings = match.group(2)
    assert "isolation=read-committed" in settings
    assert "max_line_bytes=1048576" in settings
    assert "max_key_bytes=1024" in settings
    assert "password=none" in settings
    assert f"data: {server.workdir / 'data'} fsync=always" in settings
    assert "compact_min_bytes=1048576 compact_ratio=2" in settings


def test_startup_line_shows_flags_and_no_secret(start_server, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("hunter2-very-secret\n", encoding="utf-8")
    server = start_server("--max-line-bytes", "1000", "--max-key-bytes", "8",
                          "--isolation", "serializable", "--password-file", str(secret),
                          "--in-memory")
    settings = STARTUP.search(server.log()).group(2)
    assert "isolation=serializable" in settings
    assert "max_line_bytes=1000" in settings
    assert "max_key_bytes=8" in settings
    assert "password=set" in settings
    assert "memory only" in settings
    assert "hunter2" not in server.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_clients_connected_stops_cleanly(server, sig):
    idle, busy, other = server.connect(), server.connect(), server.connect()
    assert idle.ask("PING") == ok("PONG")
    assert busy.ask("PUT k committed") == ok()
    assert busy.ask("START") == ok()
    assert busy.ask("PUT k uncommitted") == ok()
    assert other.ask("GET k") == ok("committed")
    assert wait_exit(server, sig) == 0
    log = server.log()
    assert "rolling back the open transaction of client 127.0.0.1:" in log
    assert log.rstrip().endswith("stopped"), log
    assert "Traceback" not in log
    assert "KeyboardInterrupt" not in log
    # Every client sees its connection closed, with nothing unexpected sent.
    for conn in (idle, busy, other):
        assert conn.read_until_closed() == b""


def test_sigterm_with_no_clients(server):
    assert wait_exit(server, signal.SIGTERM) == 0
    assert server.log().rstrip().endswith("stopped")


def test_sigterm_stops_accepting(server):
    port = server.port
    assert wait_exit(server, signal.SIGTERM) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_sigterm_answers_lines_already_received(server):
    """A paused client's queued commands are still answered when it reads after SIGTERM."""
    value_size = 64 * 1024
    gets = 100  # ~6.4 MiB of replies: more than the server buffers for an unread client
    setup = server.connect()
    assert setup.ask(f"PUT big {'v' * value_size}") == ok()
    slow = server.connect(timeout=10)
    slow.send(b"GET big\n" * gets)
    # Wait (by awaiting replies, not sleeping) until the server has read those lines.
    for _ in range(10_000):
        stats = setup.ask("STATS")["result"]
        if stats["commands"].get("GET", 0) > 0:
            break
    else:
        pytest.fail("the server never started on the slow client's GETs")
    assert stats["commands"]["GET"] < gets  # paused with lines still queued
    server.proc.send_signal(signal.SIGTERM)
    for i in range(gets):
        assert slow.reply() == ok("v" * value_size), i
    assert slow.read_until_closed() == b""
    assert server.proc.wait(timeout=10) == 0


def test_second_server_on_the_same_port_fails_clearly(server, tmp_path):
    port = server.port
    result = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--port", str(port),
         "--data-dir", str(tmp_path / "second")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=10,
    )
    assert result.returncode == 1, result
    output = result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "in use" in output.lower()
    assert "Traceback" not in output
    # The first server is unharmed.
    assert server.connect().ask("PING") == ok("PONG")
