"""The command-line client, ``python client.py``, run as a process against real servers.

Script mode (files or stdin): one reply per command in order, text and json output, --echo,
comments and blank lines, a long pipelined script, exit statuses 0/1/2 with one-line reasons.
Interactive mode: driven through a pseudo-terminal, as a person at a terminal would.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import ROOT, error_code, ok

try:
    import pty
except ImportError:  # not on Windows
    pty = None
needs_pty = pytest.mark.skipif(pty is None, reason="needs the pty module (POSIX)")

CLIENT = ROOT / "client.py"
EXAMPLES = ROOT / "examples"
TIMEOUT = 20.0


def run_client(port: int, *args: str, stdin: bytes = b"",
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python client.py --port PORT ARGS`` with ``stdin`` piped in; text output."""
    return subprocess.run(
        [sys.executable, str(CLIENT), "--port", str(port), *args],
        input=stdin, capture_output=True, timeout=TIMEOUT, cwd=str(ROOT),
        env={**os.environ, **(env or {})},
    )


def out(result: subprocess.CompletedProcess) -> str:
    """The client's stdout as text."""
    return result.stdout.decode("utf-8")


def err(result: subprocess.CompletedProcess) -> str:
    """The client's stderr as text."""
    return result.stderr.decode("utf-8")


# -- script mode ----------------------------------------------------------------------------

def test_leaders_example_prints_each_reply_and_exits_1(server):
    result = run_client(server.port, str(EXAMPLES / "leaders.txt"))
    assert out(result) == (
        "OK\n"
        "(error) NOT_FOUND: Key not found\n"
        "OK\n"
        "OK\n"
        '{"seq": 1}\n'
    )
    assert err(result) == ""
    assert result.returncode == 1  # the GET failed
    direct = server.connect()
    assert direct.ask("GET georgew") == ok(
        '{"first_name":"George", "last_name":"Washington", "role":"President"}')
    assert direct.ask("GET abel") == ok(
        '{"first_name":"Abraham", "last_name":"Lincoln", "role":"President"}')


def test_bank_transfer_example_succeeds(server):
    result = run_client(server.port, "--echo", str(EXAMPLES / "bank_transfer.txt"))
    assert result.returncode == 0, err(result)
    assert err(result) == ""
    lines = out(result).splitlines()
    assert lines[:4] == ["> PUT alice 100", "OK", "> PUT bob 50", "OK"]
    assert lines[-4:] == ["> GET alice", "70", "> GET bob", "80"]
    assert "(error)" not in out(result)


def test_commands_on_stdin(server):
    result = run_client(server.port, stdin=b"PUT a 1\nGET a\nDEL a\nPING\n")
    assert (result.returncode, out(result), err(result)) == (0, "OK\n1\nOK\nPONG\n", "")


def test_several_files_and_stdin_run_in_order(server, tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("PUT a 1\n")
    second.write_text("GET a\n")
    result = run_client(server.port, str(first), "-", str(second), stdin=b"PUT a 2\n")
    assert (result.returncode, out(result)) == (0, "OK\nOK\n2\n")


def test_json_output_is_the_servers_reply_lines_as_received(server):
    script = "PUT k some  value\nGET k\nGET nope\nSTART\nCOMMIT\n"
    result = run_client(server.port, "--output", "json", stdin=script.encode())
    assert result.returncode == 1
    assert out(result) == (
        '{"status":"Ok"}\n'
        '{"status":"Ok","result":"some  value"}\n'
        '{"status":"Error","code":"NOT_FOUND","mesg":"Key not found"}\n'
        '{"status":"Ok"}\n'
        '{"status":"Ok","result":{"seq":1}}\n'
    )
    direct = server.connect()
    direct.send(b"GET k\nGET nope\n")
    assert out(result).splitlines()[1:3] == [
        direct.read_line().decode(), direct.read_line().decode()]


def test_text_output_of_every_kind_of_reply(server):
    script = b"PING\nPUT k v\nHELP\nSTATS\nBOGUS\nQUIT\n"
    result = run_client(server.port, stdin=script)
    text = out(result)
    assert text.startswith("PONG\nOK\nPUT key value ")
    assert "\nQUIT " in text  # HELP: one command per line
    assert '\n  "uptime_seconds": ' in text  # STATS: indented JSON
    assert "\n(error) UNKNOWN_COMMAND: unknown command 'BOGUS'" in text
    assert text.endswith("\nOK\n")  # QUIT
    assert result.returncode == 1


def test_echo_prints_each_command_before_its_reply(server):
    result = run_client(server.port, "--echo", stdin=b"PUT x 1\nGET x\nGET y\n")
    assert out(result) == (
        "> PUT x 1\nOK\n> GET x\n1\n> GET y\n(error) NOT_FOUND: Key not found\n")
    assert result.returncode == 1


def test_comments_and_blank_lines_are_not_sent(server, tmp_path):
    script = tmp_path / "script.txt"
    script.write_bytes(b"# a comment\n\n   \n\t\n  # an indented comment\r\n"
                       b"PING\r\n\nPING hello # not a comment here\n# the end")
    result = run_client(server.port, "--echo", str(script))
    assert out(result) == (
        "> PING\nPONG\n> PING hello # not a comment here\nhello # not a comment here\n")
    assert result.returncode == 0
    stats = server.connect().ask("STATS")["result"]
    assert stats["commands"]["PING"] == 2
    assert stats["errors"] == {}


def test_values_with_spaces_round_trip_exactly(server):
    value = 'a  b\tc {"k": "v w"} héllo ✓  '
    script = f"PUT k {value}\nGET k\n".encode()
    result = run_client(server.port, stdin=script)
    assert out(result) == f"OK\n{value}\n"
    assert server.connect().ask("GET k") == ok(value)
    result = run_client(server.port, "--output", "json", stdin=b"GET k\n")
    direct = server.connect()
    direct.send(b"GET k\n")
    assert result.stdout == direct.read_line() + b"\n"


def test_a_long_script_is_pipelined_and_answered_in_order(server, tmp_path):
    script = tmp_path / "long.txt"
    lines, expected = [], []
    for i in range(2500):
        lines += [f"PUT key{i} value number {i}", f"GET key{i}"]
        expected += ["OK", f"value number {i}"]
    script.write_text("\n".join(lines) + "\n")
    result = run_client(server.port, str(script))
    assert result.returncode == 0, err(result)
    assert out(result) == "\n".join(expected) + "\n"
    stats = server.connect().ask("STATS")["result"]
    assert stats["commands"] == {"PUT": 2500, "GET": 2500, "STATS": 1}


def test_quit_stops_the_script_with_a_warning(server):
    result = run_client(server.port, stdin=b"PUT a 1\nQUIT\nPUT b 2\n\nPUT c 3\n")
    assert out(result) == "OK\nOK\n"
    assert result.returncode == 0
    assert err(result) == ("client.py: warning: QUIT at stdin line 2 closed the connection; "
                           "the commands after it were not sent\n")
    direct = server.connect()
    assert error_code(direct.ask("GET b")) == "NOT_FOUND"


def test_a_quit_that_fails_does_not_stop_the_script(server):
    result = run_client(server.port, stdin=b"QUIT now\nPING\n")
    assert out(result).splitlines()[1:] == ["PONG"]
    assert out(result).startswith("(error) BAD_REQUEST: QUIT takes no arguments")
    assert (result.returncode, err(result)) == (1, "")


def test_commands_from_a_pipe_are_answered_as_they_arrive(server):
    """A program that writes a command and waits for its reply before writing the next:
    each reply must come out (flushed) while stdin is still open."""
    proc = subprocess.Popen(
        [sys.executable, str(CLIENT), "--port", str(server.port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT),
    )
    received = b""

    def next_line() -> str:
        nonlocal received
        deadline = time.monotonic() + TIMEOUT
        while b"\n" not in received:
            remaining = max(0.0, deadline - time.monotonic())
            if not select.select([proc.stdout], [], [], remaining)[0]:
                pytest.fail(f"no reply within {TIMEOUT} s; got {received!r}")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                pytest.fail(f"the client closed its output; got {received!r}")
            received += chunk
        line, received = received.split(b"\n", 1)
        return line.decode("utf-8")

    try:
        for command, reply in [("PUT a 1", "OK"), ("# comment", None), ("GET a", "1"),
                               ("GET b", "(error) NOT_FOUND: Key not found"), ("PING", "PONG")]:
            proc.stdin.write(command.encode("utf-8") + b"\n")
            proc.stdin.flush()
            if reply is not None:
                assert next_line() == reply
        proc.stdin.close()
        assert proc.wait(TIMEOUT) == 1  # the GET b failed
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()


def test_nothing_listening_exits_2_with_one_clear_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        result = run_client(port, str(EXAMPLES / "leaders.txt"))
    assert result.returncode == 2
    assert out(result) == ""
    message = err(result)
    assert message.count("\n") == 1
    assert message.startswith(f"client.py: cannot connect to 127.0.0.1:{port}: ")
    assert "refused" in message
    assert message.endswith("(is the server running? start it with: python server.py)\n")


def test_missing_file_exits_2(server, tmp_path):
    missing = tmp_path / "missing.txt"
    result = run_client(server.port, str(EXAMPLES / "leaders.txt"), str(missing))
    assert result.returncode == 2
    assert out(result) == ""
    assert err(result) == f"client.py: cannot read {missing}: No such file or directory\n"
    assert server.connect().ask("STATS")["result"]["clients"]["total"] == 1  # never connected


def test_bad_usage_exits_2(server):
    result = run_client(server.port, "--output", "yaml")
    assert result.returncode == 2
    assert "invalid choice: 'yaml'" in err(result)


def test_connection_dropped_before_all_replies_exits_2():
    """A server that answers one command and closes: the first reply is printed, then the
    reason, and the exit status says the script was not completed."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def answer_once() -> None:
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as reader:
                reader.readline()
                conn.sendall(b'{"status":"Ok","result":"PONG"}\n')
                conn.shutdown(socket.SHUT_WR)  # close our side; read until the client goes
                reader.read()

        thread = threading.Thread(target=answer_once, daemon=True)
        thread.start()
        result = run_client(listener.getsockname()[1], stdin=b"PING\nPING\nPING\n")
        thread.join(TIMEOUT)
    assert out(result) == "PONG\n"
    assert result.returncode == 2
    message = err(result)
    assert message.count("\n") == 1
    assert ("the server closed the connection after 1 reply, "
            "with 2 sent commands unanswered") in message


def test_password_env(start_server):
    server = start_server(env={"KVLOOP_PASSWORD": "s3cret"})
    result = run_client(server.port, "--password-env", "MY_PW", stdin=b"PUT a 1\nGET a\n",
                        env={"MY_PW": "s3cret"})
    assert (result.returncode, out(result)) == (0, "OK\n1\n")
    result = run_client(server.port, "--password-env", "MY_PW", stdin=b"GET a\n",
                        env={"MY_PW": "wrong"})
    assert result.returncode == 2
    assert "AUTH_FAILED" in err(result)
    result = run_client(server.port, stdin=b"GET a\n")
    assert result.returncode == 1
    assert out(result).startswith("(error) AUTH_REQUIRED: ")


# -- interactive mode -----------------------------------------------------------------------

class Terminal:
    """``python client.py`` running with a pseudo-terminal as stdin, stdout and stderr."""

    def __init__(self, port: int, home: Path) -> None:
        self.master, slave = pty.openpty()
        env = {**os.environ, "HOME": str(home), "TERM": "dumb"}
        self.proc = subprocess.Popen(
            [sys.executable, str(CLIENT), "--port", str(port)],
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(ROOT),
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, expected: str) -> str:
        """Everything printed up to and including ``expected``; fails after TIMEOUT."""
        wanted = expected.encode("utf-8")
        deadline = time.monotonic() + TIMEOUT
        while wanted not in self.seen:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self.master], [], [], max(0.0, remaining))
            if not readable:
                pytest.fail(f"no {expected!r} within {TIMEOUT} s; got {self.seen!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the client has exited and closed the terminal
                chunk = b""
            if not chunk:
                pytest.fail(f"terminal closed before {expected!r}; got {self.seen!r}")
            self.seen += chunk
        head, _, self.seen = self.seen.partition(wanted)
        return (head + wanted).decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        os.write(self.master, line.encode("utf-8") + b"\n")

    def ask(self, line: str, next_prompt: str) -> str:
        """Type a line; what is printed until ``next_prompt`` appears."""
        self.type(line)
        return self.read_until(next_prompt)

    def wait(self) -> int:
        """The client's exit status, once it has exited."""
        status = self.proc.wait(TIMEOUT)
        with_rest = self.seen
        try:
            while select.select([self.master], [], [], 0)[0]:
                chunk = os.read(self.master, 4096)
                if not chunk:
                    break
                with_rest += chunk
        except OSError:
            pass
        self.seen = with_rest
        return status

    def close(self) -> None:
        """Stop the client if it still runs, and close the terminal."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path):
    """``terminal(port)`` starts an interactive client; it is stopped after the test."""
    started: list[Terminal] = []

    def start(port: int) -> Terminal:
        term = Terminal(port, tmp_path)
        started.append(term)
        return term

    yield start
    for term in started:
        term.close()


@needs_pty
def test_interactive_prompt_shows_address_and_transaction_level(server, terminal, tmp_path):
    term = terminal(server.port)
    prompt = f"127.0.0.1:{server.port}> "
    banner = term.read_until(prompt)
    assert f"connected to kvloop at 127.0.0.1:{server.port}" in banner
    assert "OK\n" in term.ask("PUT greeting hello  world", prompt)
    assert "hello  world\n" in term.ask("GET greeting", prompt)
    assert "(error) NOT_FOUND: Key not found\n" in term.ask("GET nobody", prompt)

    in_txn = f"127.0.0.1:{server.port} (serializable)> "
    assert "OK\n" in term.ask("start serializable", in_txn)
    assert "OK\n" in term.ask("PUT greeting bonjour", in_txn)
    assert '{"seq": 2}\n' in term.ask("COMMIT", prompt)
    # A plain START gets the server's default level, which the prompt looks up.
    assert "OK\n" in term.ask("START", f"127.0.0.1:{server.port} (read-committed)> ")
    assert "OK\n" in term.ask("ROLLBACK", prompt)
    assert "OK\n" in term.ask("START snapshot", f"127.0.0.1:{server.port} (snapshot)> ")
    assert "OK\n" in term.ask("ROLLBACK", prompt)

    stats = term.ask("STATS", prompt)
    assert '\n  "uptime_seconds": ' in stats  # pretty JSON
    assert "BAD_REQUEST" in term.ask("AUTH not-a-secret", prompt)
    term.ask("# a comment is not sent", prompt)
    term.type("exit")
    assert term.wait() == 0
    assert server.connect().ask("GET greeting") == ok("bonjour")

    history = tmp_path / ".kvloop_history"
    try:
        import readline  # noqa: F401
    except ImportError:
        return
    text = history.read_text()
    assert "GET greeting" in text
    assert "AUTH" not in text  # a password never goes to the history file


@needs_pty
def test_interactive_ctrl_d_leaves_and_an_open_transaction_is_rolled_back(server, terminal):
    term = terminal(server.port)
    prompt = f"127.0.0.1:{server.port}> "
    term.read_until(prompt)
    term.ask("START read-committed", f"127.0.0.1:{server.port} (read-committed)> ")
    term.ask("PUT k v", f"127.0.0.1:{server.port} (read-committed)> ")
    os.write(term.master, b"\x04")  # Ctrl-D
    assert term.wait() == 0
    assert b"rolled back" in term.seen
    assert error_code(server.connect().ask("GET k")) == "NOT_FOUND"


@needs_pty
def test_interactive_says_so_when_the_server_closes_the_connection(server, terminal):
    term = terminal(server.port)
    prompt = f"127.0.0.1:{server.port}> "
    term.read_until(prompt)
    assert server.stop() == 0
    term.type("PING")
    assert term.wait() == 2
    assert f"client.py: connection to 127.0.0.1:{server.port} lost: " in term.seen.decode()
