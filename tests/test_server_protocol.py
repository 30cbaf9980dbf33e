"""The wire protocol over real sockets against a real server process (SPEC §2, §6 limits).

Bytes are sent raw; replies are read as JSON lines. Each test starts its own server.
"""

from __future__ import annotations

import json
import random
import socket

import pytest
from support import RawConn, error_code, ok

GEORGE = '{"first_name":"George", "last_name":"Washington"}'


def lines_of(data: bytes) -> list[dict]:
    """Parse a run of reply bytes into replies; every reply must end in a newline."""
    assert data == b"" or data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


def stats(conn: RawConn) -> dict:
    """The server's STATS result."""
    reply = conn.ask("STATS")
    assert reply["status"] == "Ok", reply
    return reply["result"]


# -- values and text ------------------------------------------------------------------------

def test_json_value_with_inner_spaces_stored_byte_exact(server):
    c = server.connect()
    assert c.ask(f"PUT georgew {GEORGE}") == ok()
    c.send(b"GET georgew\n")
    raw = c.read_line()
    assert json.loads(raw) == ok(GEORGE)
    assert raw == b'{"status":"Ok","result":' + json.dumps(GEORGE).encode() + b"}"


def test_blanks_inside_and_at_the_end_of_a_value_are_kept(server):
    c = server.connect()
    c.send(b"PUT \t k \t  a  b\tc  \n")
    assert c.reply() == ok()
    assert c.ask("GET k") == ok("a  b\tc  ")


def test_non_ascii_keys_and_values(server):
    c = server.connect()
    assert c.ask("PUT ключ значение ✓ 日本語 🙂") == ok()
    c.send("GET ключ\n".encode())
    raw = c.read_line()
    assert "значение ✓ 日本語 🙂".encode() in raw  # UTF-8 on the wire, not \u escapes
    assert json.loads(raw) == ok("значение ✓ 日本語 🙂")


def test_control_characters_in_a_value_come_back_escaped_on_one_line(server):
    c = server.connect()
    c.send(b"PUT k a\rb\x01c\x1bd\tz\n")
    assert c.reply() == ok()
    c.send(b"GET k\n")
    raw = c.read_line()
    assert b"\r" not in raw and b"\x01" not in raw and b"\x1b" not in raw
    assert json.loads(raw) == ok("a\rb\x01c\x1bd\tz")


def test_case_insensitive_verbs(server):
    c = server.connect()
    assert c.ask("put a 1") == ok()
    assert c.ask("Get a") == ok("1")
    assert c.ask("dEl a") == ok()
    assert c.ask("ping") == ok("PONG")


def test_crlf_line_endings(server):
    c = server.connect()
    c.send(b"PUT a hello world\r\nGET a\r\nPING\r\n")
    assert c.replies(3) == [ok(), ok("hello world"), ok("PONG")]


def test_blank_lines_get_no_reply(server):
    c = server.connect()
    c.send(b"\n   \n\t\n\r\nPING one\n \t \r\n\nPING two\n")
    assert c.replies(2) == [ok("one"), ok("two")]
    c.send(b"\n\n")
    assert c.ask("PING three") == ok("three")  # nothing was queued before it


# -- pipelining, trickling, half-close -------------------------------------------------------

def test_thousand_command_pipeline_in_one_send(server):
    rng = random.Random(7)
    model: dict[str, str] = {}
    commands, expected = [], []
    for i in range(1000):
        key = f"k{rng.randrange(40)}"
        op = rng.choice(["PUT", "PUT", "GET", "GET", "DEL", "PING"])
        if op == "PUT":
            value = f"value {i} with  spaces"
            commands.append(f"PUT {key} {value}")
            model[key] = value
            expected.append(ok())
        elif op == "GET":
            commands.append(f"GET {key}")
            expected.append(ok(model[key]) if key in model else "NOT_FOUND")
        elif op == "DEL":
            commands.append(f"DEL {key}")
            model.pop(key, None)
            expected.append(ok())
        else:
            commands.append(f"PING {i}")
            expected.append(ok(str(i)))
    c = server.connect()
    c.send(("\n".join(commands) + "\n").encode())
    replies = c.replies(1000)
    for i, (reply, want) in enumerate(zip(replies, expected)):
        if want == "NOT_FOUND":
            assert error_code(reply) == "NOT_FOUND", (i, commands[i], reply)
        else:
            assert reply == want, (i, commands[i], reply)
    assert c.ask("PING end") == ok("end")


def test_command_delivered_one_byte_per_send(server):
    c = server.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in b"PUT slow a value  with spaces\r\n":
        c.send(bytes([byte]))
    assert c.reply() == ok()
    for byte in "GET slow\nPING ü\n".encode():
        c.send(bytes([byte]))
    assert c.replies(2) == [ok("a value  with spaces"), ok("ü")]


def test_half_close_after_complete_commands(server):
    c = server.connect()
    c.send(b"PUT a 1\nGET a\nDEL a\nGET a\n")
    c.sock.shutdown(socket.SHUT_WR)
    replies = lines_of(c.read_until_closed())
    assert replies[:3] == [ok(), ok("1"), ok()]
    assert error_code(replies[3]) == "NOT_FOUND"
    assert len(replies) == 4


def test_half_close_with_unterminated_last_line(server):
    c = server.connect()
    c.send(b"PUT a 1\nPUT b two words\nGET b")
    c.sock.shutdown(socket.SHUT_WR)
    assert lines_of(c.read_until_closed()) == [ok(), ok(), ok("two words")]
    # The writes were autocommitted: another client sees them.
    assert server.connect().ask("GET a") == ok("1")


def test_half_close_with_nothing_sent(server):
    c = server.connect()
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_until_closed() == b""


def test_quit_replies_ok_then_closes(server):
    c = server.connect()
    c.send(b"PUT a 1\nQUIT\nPUT b 2\n")
    assert lines_of(c.read_until_closed()) == [ok(), ok()]
    other = server.connect()
    assert other.ask("GET a") == ok("1")
    assert error_code(other.ask("GET b")) == "NOT_FOUND"  # nothing after QUIT runs


def test_quit_closes_cleanly_even_with_more_pipelined_data(server):
    c = server.connect()
    c.send(b"PUT a 1\nQUIT\n" + b"PING ignored\n" * 20_000)  # ~260 KB after the QUIT
    data = b""
    try:
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pytest.fail(f"connection reset after receiving {data!r}")
    assert lines_of(data) == [ok(), ok()]


# -- limits and bad input --------------------------------------------------------------------

def test_over_long_line_in_one_send(start_server):
    server = start_server("--max-line-bytes", "1000")
    c = server.connect()
    c.send(b"PUT big " + b"x" * 2000 + b"\nPING after\n")
    reply = c.reply()
    assert error_code(reply) == "TOO_LARGE"
    assert "1000" in reply["mesg"]
    assert "--max-line-bytes" in reply["mesg"]
    assert c.reply() == ok("after")
    assert error_code(c.ask("GET big")) == "NOT_FOUND"
    # Just under the limit works on the same connection.
    line = b"PUT big " + b"y" * (1000 - len(b"PUT big "))
    assert len(line) == 1000
    c.send(line + b"\n")
    assert c.reply() == ok()


def test_over_long_line_in_several_chunks_is_discarded_to_its_end(start_server):
    server = start_server("--max-line-bytes", "1000")
    c = server.connect()
    c.send(b"PUT k " + b"a" * 600)
    c.send(b"b" * 600)
    # The line is known to be too long before its end arrives: the error comes at once.
    assert error_code(c.reply()) == "TOO_LARGE"
    # The rest of that line, whatever it looks like, is discarded, not run as a command.
    c.send(b"c" * 600)
    c.send(b" PING not-a-command\xff\nPING next\n")
    assert c.reply() == ok("next")
    assert error_code(c.ask("GET k")) == "NOT_FOUND"
    assert c.ask("PUT k fine") == ok()


def test_over_long_unterminated_line_then_half_close(start_server):
    server = start_server("--max-line-bytes", "1000")
    c = server.connect()
    c.send(b"PING first\n" + b"z" * 5000)
    c.sock.shutdown(socket.SHUT_WR)
    replies = lines_of(c.read_until_closed())
    assert replies[0] == ok("first")
    assert [error_code(r) for r in replies[1:]] == ["TOO_LARGE"]


def test_invalid_utf8_then_connection_still_works(server):
    c = server.connect()
    c.send(b"PUT k \xff\xfe value\nGET \xc3\n")
    first, second = c.replies(2)
    assert error_code(first) == "BAD_REQUEST"
    assert "UTF-8" in first["mesg"]
    assert error_code(second) == "BAD_REQUEST"
    assert error_code(c.ask("GET k")) == "NOT_FOUND"
    assert c.ask("PING") == ok("PONG")


def test_unknown_verb(server):
    c = server.connect()
    reply = c.ask("FLY me to the moon")
    assert error_code(reply) == "UNKNOWN_COMMAND"
    assert "FLY" in reply["mesg"]
    assert c.ask("PING") == ok("PONG")


def test_max_key_bytes_flag(start_server):
    server = start_server("--max-key-bytes", "8")
    c = server.connect()
    assert c.ask("PUT 12345678 v") == ok()
    reply = c.ask("PUT 123456789 v")
    assert error_code(reply) == "TOO_LARGE"
    assert "8" in reply["mesg"] and "--max-key-bytes" in reply["mesg"]
    assert error_code(c.ask("GET 123456789")) == "TOO_LARGE"
    assert c.ask("GET 12345678") == ok("v")


def test_garbage_bytes_never_kill_the_server(server):
    rng = random.Random(1234)
    garbage = bytes(rng.randrange(256) for _ in range(200_000))
    c = server.connect()
    c.send(garbage)
    c.sock.shutdown(socket.SHUT_WR)
    replies = lines_of(c.read_until_closed())
    assert replies, "garbage lines get error replies"
    assert all(r["status"] in ("Ok", "Error") for r in replies)
    # Random binary without newlines, closed abruptly mid-line.
    d = server.connect()
    d.send(bytes(rng.randrange(14, 256) for _ in range(50_000)))
    d.close()
    assert server.connect().ask("PING") == ok("PONG")
    assert server.proc.poll() is None


# -- a client that does not read its replies -------------------------------------------------

def test_client_not_reading_is_paused_and_others_are_served(server):
    value_size = 64 * 1024
    keys = 8
    gets = 600  # ~38 MiB of replies: far more than socket buffers plus the server's cap
    setup = server.connect()
    for i in range(keys):
        assert setup.ask(f"PUT big{i} {chr(ord('a') + i) * value_size}") == ok()

    slow = server.connect(timeout=30)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    requests = "".join(f"GET big{i % keys}\n" for i in range(gets)).encode()
    assert len(requests) < 64 * 1024  # fits the socket buffers: this send cannot block
    slow.send(requests)

    other = server.connect()
    # Wait until the server has started on the slow client's GETs (a reply is awaited per
    # poll, so this is not a sleep), then check the others are still served.
    for _ in range(10_000):
        if stats(other)["commands"].get("GET", 0) > 0:
            break
    else:
        pytest.fail("the server never started on the slow client's GETs")
    assert other.ask("PUT x 1") == ok()
    assert other.ask("GET x") == ok("1")
    assert server.connect().ask("PING") == ok("PONG")
    # The server ran only as many GETs as fit its output cap and the socket buffers: it
    # paused the slow client instead of buffering 38 MiB of replies for it.
    ran_while_paused = stats(other)["commands"]["GET"] - 1
    assert ran_while_paused < gets / 2, ran_while_paused

    # When the slow client reads, every reply arrives, in order.
    for i in range(gets):
        reply = slow.reply()
        assert reply["status"] == "Ok", (i, reply)
        assert reply["result"] == chr(ord("a") + i % keys) * value_size, i
    assert slow.ask("PING done") == ok("done")


def test_paused_client_that_half_closes_gets_every_reply(server):
    value = "w" * (64 * 1024)
    gets = 200
    c = server.connect()
    assert c.ask(f"PUT big {value}") == ok()
    c.send(b"GET big\n" * gets + b"PING last")
    c.sock.shutdown(socket.SHUT_WR)
    for i in range(gets):
        assert c.reply() == ok(value), i
    assert c.reply() == ok("last")
    assert c.read_until_closed() == b""
