"""The core's protections (issue 7) against the real server process: the HTTP guard, AUTH
throttling, --txn-timeout, --max-data-bytes, --max-txn-bytes, STATS over open intents, and
the small protocol rules (ASCII verbs, printable keys, one-line replies, the final CR)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support import error_code, ok

from kvloop import limits

FAST_AUTH_SERVER = Path(__file__).parent / "fast_auth_server.py"
PASSWORD = "s3cret-Pa55word-for-tests"


def browser_post(port: int, body: str) -> bytes:
    """What a web page's ``fetch("http://127.0.0.1:PORT/", {method: "POST", body})`` sends."""
    data = body.encode()
    return (
        "POST / HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: Mozilla/5.0\r\n"
        "Content-Type: text/plain;charset=UTF-8\r\n"
        f"Content-Length: {len(data)}\r\n"
        "Origin: http://evil.example\r\n"
        "\r\n"
    ).encode() + data


# -- cross-protocol guard -------------------------------------------------------------------

def test_a_browsers_post_runs_nothing_and_gets_no_reply(start_server):
    server = start_server("--in-memory")
    owner = server.connect()
    assert owner.ask("PUT victim precious") == ok()
    for _ in range(3):
        attacker = server.connect()
        attacker.send(browser_post(server.port, "PUT k v\r\nDEL victim\r\n"))
        assert attacker.read_until_closed() == b""
        attacker.close()
    assert owner.ask("GET victim") == ok("precious")
    assert error_code(owner.ask("GET k")) == "NOT_FOUND"
    assert owner.ask("STATS")["result"]["security"]["http_refused"] == 3
    assert server.log().count("HTTP request") == 1  # logged at most once a minute


@pytest.mark.parametrize("first", [b"GET / HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n",
                                   b"OPTIONS * HTTP/1.1\r\n"])
def test_http_shaped_lines_close_before_later_lines_run(server, first):
    conn = server.connect()
    conn.send(b"PING before\r\n" + first + b"PUT after 1\r\n")
    assert conn.read_until_closed() == b'{"status":"Ok","result":"before"}\n'
    assert error_code(server.connect().ask("GET after")) == "NOT_FOUND"


# -- small protocol rules --------------------------------------------------------------------

def test_verbs_use_ascii_case_rules_only(server):
    conn = server.connect()
    assert error_code(conn.ask("\u017ftats")) == "UNKNOWN_COMMAND"
    assert error_code(conn.ask("qu\u0131t")) == "UNKNOWN_COMMAND"
    assert conn.ask("ping") == ok("PONG")  # still open


@pytest.mark.parametrize("char", ["\u3000", "\u200b", "\u202e", "\u2028"])
def test_keys_with_invisible_characters_are_refused(server, char):
    conn = server.connect()
    reply = conn.ask(f"PUT a{char}b v")
    assert error_code(reply) == "BAD_REQUEST"
    assert f"U+{ord(char):04X}" in reply["mesg"] and "printable" in reply["mesg"]


def test_replies_escape_unicode_line_breaks(server):
    conn = server.connect()
    value = "one\u2028two\u2029three\u0085four"
    assert conn.ask(f"PUT k {value}") == ok()
    conn.send(b"GET k\n")
    raw = conn.read_line() + b"\n"
    assert b"\xe2\x80\xa8" not in raw and b"\xe2\x80\xa9" not in raw and b"\xc2\x85" not in raw
    assert len(raw.decode().splitlines()) == 1
    assert json.loads(raw)["result"] == value


def test_a_final_cr_does_not_count_toward_the_line_limit(start_server):
    server = start_server("--in-memory", "--max-line-bytes", "64")
    conn = server.connect()
    line = "PUT k " + "v" * 58  # exactly 64 bytes
    conn.send(line.encode() + b"\r\n")
    assert conn.reply() == ok()
    conn.send(line.encode() + b"v\r\n")
    assert error_code(conn.reply()) == "TOO_LARGE"
    assert conn.ask("GET k") == ok("v" * 58)


def test_stats_counts_committed_keys_only_while_another_client_holds_many(server):
    writer, reader = server.connect(), server.connect()
    writer.send(b"PUT a 1\nSTART\n" + b"".join(b"PUT k%d v\n" % n for n in range(20_000)))
    assert writer.replies(20_002) == [ok()] * 20_002
    stats = reader.ask("STATS")["result"]
    assert (stats["keys"], stats["data_bytes"]) == (1, 2)
    assert writer.ask("COMMIT")["status"] == "Ok"
    stats = reader.ask("STATS")["result"]
    assert stats["keys"] == 20_001


# -- limits ------------------------------------------------------------------------------------

def test_max_data_bytes_refuses_puts_but_reads_and_deletes_work(start_server):
    server = start_server("--in-memory", "--max-data-bytes", "100")
    conn = server.connect()
    for n in range(10):
        assert conn.ask(f"PUT key{n} 123456") == ok()  # 10 bytes each
    reply = conn.ask("PUT one-more x")
    assert error_code(reply) == "LIMIT" and "--max-data-bytes" in reply["mesg"]
    assert conn.ask("GET key3") == ok("123456")
    assert conn.ask("DEL key3") == ok()
    assert conn.ask("PUT key3 54321") == ok()


def test_max_txn_bytes_refuses_the_write_and_the_transaction_stays_open(start_server):
    server = start_server("--in-memory", "--max-txn-bytes", "1000")
    conn, other = server.connect(), server.connect()
    assert conn.ask("START") == ok()
    value = "x" * 300
    assert conn.ask(f"PUT a {value}") == ok()
    assert conn.ask(f"PUT b {value}") == ok()
    reply = conn.ask(f"PUT c {value}")
    assert error_code(reply) == "LIMIT" and "--max-txn-bytes" in reply["mesg"]
    assert error_code(conn.ask("GET c")) == "NOT_FOUND"
    assert conn.ask("COMMIT")["status"] == "Ok"
    assert other.ask("GET b") == ok(value)
    assert error_code(other.ask("GET c")) == "NOT_FOUND"


def test_an_abandoned_transaction_is_rolled_back_and_told_why(start_server):
    server = start_server("--in-memory", "--txn-timeout", "0.5")
    holder, writer = server.connect(), server.connect()
    assert holder.ask("START") == ok()
    assert holder.ask("PUT hot 1") == ok()
    assert error_code(writer.ask("PUT hot 2")) == "CONFLICT"
    deadline = time.monotonic() + 5
    while error_code(writer.ask("PUT hot 2")) == "CONFLICT":  # freed by the loop's timer
        assert time.monotonic() < deadline, "the idle transaction was never rolled back"
        time.sleep(0.05)
    reply = holder.ask("PUT hot 3")
    assert error_code(reply) == "LIMIT" and "--txn-timeout" in reply["mesg"]
    assert holder.ask("GET hot") == ok("2")  # the PUT was not run; the next command is
    assert writer.ask("STATS")["result"]["security"]["txn_timeouts"] == 1


def test_an_active_transaction_is_not_rolled_back(start_server):
    server = start_server("--in-memory", "--txn-timeout", "0.6")
    conn = server.connect()
    assert conn.ask("START") == ok()
    for n in range(6):
        assert conn.ask(f"PUT k{n} v") == ok()
        time.sleep(0.2)
    assert conn.ask("COMMIT")["status"] == "Ok"


# -- AUTH -------------------------------------------------------------------------------------

def test_repeated_failed_auths_slow_a_guesser_without_blocking_others(start_server):
    server = start_server("--in-memory", env={"KVLOOP_PASSWORD": PASSWORD})
    guesser, other = server.connect(timeout=10), server.connect()
    assert other.ask(f"AUTH {PASSWORD}") == ok()
    guesses = limits.AUTH_FREE_FAILURES + 3
    started = time.monotonic()
    guesser.send(b"".join(b"AUTH guess%d\n" % n for n in range(guesses)))
    assert [error_code(guesser.reply()) for _ in range(limits.AUTH_FREE_FAILURES)] == \
        ["AUTH_FAILED"] * limits.AUTH_FREE_FAILURES
    for _ in range(5):
        assert other.ask("PING") == ok("PONG")  # the loop is not blocked
    assert time.monotonic() - started < 0.4
    replies = [guesser.reply() for _ in range(3)]
    elapsed = time.monotonic() - started
    assert [error_code(r) for r in replies] == ["AUTH_FAILED"] * 3
    # the 5th and 6th guesses waited for the 4th's and the 5th's delays
    assert elapsed >= limits.auth_delay(guesses - 2) + limits.auth_delay(guesses - 3) - 0.05
    assert guesser.ask(f"AUTH {PASSWORD}") == ok()  # the right password still works


def test_the_connection_is_closed_after_the_failure_limit(start_server):
    server = start_server("--in-memory", script=FAST_AUTH_SERVER,
                          env={"KVLOOP_PASSWORD": PASSWORD})
    conn = server.connect()
    conn.send(b"".join(b"AUTH wrong%d\n" % n for n in range(limits.AUTH_MAX_FAILURES + 2)))
    replies = [json.loads(line) for line in conn.read_until_closed().splitlines()]
    assert len(replies) == limits.AUTH_MAX_FAILURES  # nothing after the closing reply
    assert all(error_code(r) == "AUTH_FAILED" for r in replies)
    assert "closed" in replies[-1]["mesg"]
    log = server.log()
    assert "failed AUTHs" in log
    assert PASSWORD not in log and "wrong1" not in log


def test_a_failed_auth_keeps_the_session_authenticated(start_server):
    server = start_server("--in-memory", "--log-level", "debug",
                          env={"KVLOOP_PASSWORD": PASSWORD})
    conn = server.connect()
    assert conn.ask(f"AUTH {PASSWORD}") == ok()
    assert error_code(conn.ask(f"AUTH {PASSWORD}-typo")) == "AUTH_FAILED"
    assert conn.ask("PUT k v") == ok()
    stats = conn.ask("STATS")
    assert PASSWORD not in json.dumps(stats)
    assert PASSWORD not in server.log()
