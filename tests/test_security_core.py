"""Sans-IO tests of the core's protections (issue 7): the HTTP guard, ASCII verbs, the key
rule, one-line replies, AUTH throttling, --txn-timeout, --max-txn-bytes, --max-data-bytes.
Time is a fake clock the tests move."""

from __future__ import annotations

import json
import logging

import pytest
from support import FakeClock

from kvloop import limits
from kvloop.commands import CommandExecutor
from kvloop.config import Settings
from kvloop.protocol import LineReader, LineTooLarge

PASSWORD = "correct horse battery staple"


class Conn:
    """One session on an executor: run request lines, get parsed replies."""

    def __init__(self, executor: CommandExecutor, peer: str = "127.0.0.1:5000") -> None:
        self.executor = executor
        self.session = executor.open_session(peer)

    def raw(self, line: str) -> bytes | None:
        return self.executor.execute(self.session, line.encode("utf-8"))

    def __call__(self, line: str) -> dict:
        reply = self.raw(line)
        assert reply is not None and reply.count(b"\n") == 1 and reply.endswith(b"\n"), reply
        return json.loads(reply)


def code(reply: dict) -> str | None:
    return reply.get("code")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **settings) -> CommandExecutor:
    return CommandExecutor(Settings(**settings), clock=clock)


# -- cross-protocol guard -------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "POST / HTTP/1.1",
    "POST /anything",
    "post",
    "Host: 127.0.0.1:9999",
    "host: example.com",
    "GET / HTTP/1.1",
    "GET /index.html HTTP/1.0",
    "PUT /path HTTP/1.1",
    "OPTIONS * HTTP/1.1",
    "DELETE /k HTTP/1.1",
    "GET http://127.0.0.1:9999/ HTTP/1.1",
])
def test_http_lines_close_the_session_without_a_reply(clock, line):
    db = make(clock)
    c = Conn(db)
    assert c.raw(line) is None
    assert c.session.closing
    assert db.stats.http_refused == 1


@pytest.mark.parametrize("line,status", [
    ("PUT k HTTP/1.1", "Ok"),           # a value that happens to be "HTTP/1.1"
    ("PUT posted value", "Ok"),
    ("GET host:", "Error"),             # a key named "host:" is fine (NOT_FOUND)
    ("PING POST / HTTP/1.1", "Ok"),
])
def test_kvloop_lines_that_mention_http_still_run(clock, line, status):
    c = Conn(make(clock))
    assert c(line)["status"] == status
    assert not c.session.closing


def test_http_guard_logs_at_most_once_a_minute(clock, caplog):
    db = make(clock)
    with caplog.at_level(logging.WARNING, logger="kvloop.commands"):
        for _ in range(5):
            Conn(db).raw("POST / HTTP/1.1")
            clock.now += 20  # t = 0, 20, 40, 60, 80: logged at 0 and 60
    lines = [r.getMessage() for r in caplog.records if "HTTP" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "2 more since the last" in lines[1]
    assert db.stats.http_refused == 5


def test_stats_count_refused_http(clock):
    db = make(clock)
    Conn(db).raw("Host: x")
    assert Conn(db)("STATS")["result"]["security"]["http_refused"] == 1


# -- verbs, keys, replies ---------------------------------------------------------------------

@pytest.mark.parametrize("line", ["\u017ftats", "qu\u0131t", "\u0131nfo", "HELP\u00a0"])
def test_verbs_are_upper_cased_by_ascii_rules_only(clock, line):
    c = Conn(make(clock))
    assert code(c(line)) == "UNKNOWN_COMMAND"
    assert not c.session.closing


def test_verbs_are_case_insensitive_in_ascii(clock):
    c = Conn(make(clock))
    assert c("pInG")["result"] == "PONG"


@pytest.mark.parametrize("char", [
    "\u3000", "\u200b", "\u202e", "\u2028", "\u2029", "\u00a0", "\u0085", "\ufeff",
    "\ue000",  # private use
    "\u0378",  # unassigned
    "\x00", "\x7f",
])
def test_keys_refuse_blank_format_control_and_unassigned_characters(clock, char):
    c = Conn(make(clock))
    for line in (f"PUT a{char}b v", f"GET a{char}b", f"DEL a{char}b"):
        reply = c(line)
        assert code(reply) == "BAD_REQUEST", (line, reply)
        assert f"U+{ord(char):04X}" in reply["mesg"]
        assert "position 1" in reply["mesg"]
        assert "printable" in reply["mesg"]


@pytest.mark.parametrize("key", ["日本語", "é", "snow☃man", "emoji😀", "ÅÄÖ-_.:/"])
def test_keys_may_hold_printable_unicode(clock, key):
    c = Conn(make(clock))
    assert c(f"PUT {key} v")["status"] == "Ok"
    assert c(f"GET {key}")["result"] == "v"


@pytest.mark.parametrize("value", ["a\u2028b", "\u2029", "x\u0085y", "mixed\u2028é\u0085\u2029"])
def test_replies_never_carry_raw_line_separators(clock, value):
    c = Conn(make(clock))
    assert c(f"PUT k {value}")["status"] == "Ok"
    reply = c.raw("GET k")
    text = reply.decode("utf-8")
    assert len(text.splitlines()) == 1, text
    assert not any(ch in text for ch in "\u2028\u2029\u0085")
    assert json.loads(text)["result"] == value
    # the same in other replies: PING's result and an error quoting the client's text
    assert len(c.raw(f"PING {value}").decode().splitlines()) == 1
    error = c.raw(f"NOPE{value}").decode()
    assert len(error.splitlines()) == 1 and "UNKNOWN_COMMAND" in error


def test_a_trailing_cr_does_not_count_toward_the_line_limit():
    reader = LineReader(10)
    reader.feed(b"0123456789\r\n")
    assert reader.next_line() == b"0123456789\r"
    reader.feed(b"0123456789X\r\n")
    assert isinstance(reader.next_line(), LineTooLarge)
    # the same when the line arrives in pieces (the \r waits in the partial line)
    reader.feed(b"0123456789")
    reader.feed(b"\r")
    reader.feed(b"\n")
    assert reader.next_line() == b"0123456789\r"
    reader.feed(b"0123456789\r")
    reader.feed(b"\r")  # now 12 bytes: too long, whatever comes next
    reader.feed(b"\nPING\n")
    assert isinstance(reader.next_line(), LineTooLarge)
    assert reader.next_line() == b"PING"


def test_wrong_word_counts_are_reported_without_splitting_a_long_line(clock):
    c = Conn(make(clock))
    assert "3 words" in c("GET a b c")["mesg"]
    long_line = "GET" + " a" * 100_000
    reply = c(long_line)
    assert code(reply) == "BAD_REQUEST"
    assert "many words" in reply["mesg"] and "GET key" in reply["mesg"]
    assert code(c("START" + " a" * 100_000)) == "BAD_REQUEST"
    assert code(c("DEL" + " a" * 100_000)) == "BAD_REQUEST"


# -- AUTH throttling -----------------------------------------------------------------------

def test_auth_delay_grows_after_the_free_failures():
    delays = [limits.auth_delay(n) for n in range(1, limits.AUTH_MAX_FAILURES)]
    free = limits.AUTH_FREE_FAILURES
    assert delays[:free] == [0.0] * free
    assert delays[free:] == sorted(delays[free:])
    assert delays[free] == limits.AUTH_FIRST_DELAY_SECONDS
    assert delays[free + 1] == 2 * limits.AUTH_FIRST_DELAY_SECONDS
    assert max(delays) == limits.AUTH_MAX_DELAY_SECONDS


def test_failed_auths_hold_the_connection_then_close_it(clock, caplog):
    db = make(clock, password=PASSWORD)
    c = Conn(db)
    with caplog.at_level(logging.DEBUG):
        for failure in range(1, limits.AUTH_MAX_FAILURES):
            reply = c(f"AUTH guess{failure}")
            assert code(reply) == "AUTH_FAILED"
            expected = limits.auth_delay(failure)
            if expected:
                assert c.session.hold_until == pytest.approx(clock.now + expected)
                assert "waits" in reply["mesg"]
            else:
                assert c.session.hold_until is None
            assert not c.session.closing
            clock.now += 100  # the server's loop would have waited out the hold
            c.session.hold_until = None
        reply = c("AUTH last-guess")
    assert code(reply) == "AUTH_FAILED"
    assert "closed" in reply["mesg"]
    assert c.session.closing
    admin = Conn(db, "10.0.0.9:1")
    admin(f"AUTH {PASSWORD}")
    security = admin("STATS")["result"]["security"]
    assert security["auth_failures"] == limits.AUTH_MAX_FAILURES
    assert security["auth_closed"] == 1
    assert "guess" not in caplog.text and PASSWORD not in caplog.text


def test_reconnecting_does_not_reset_the_hosts_failures(clock):
    db = make(clock, password=PASSWORD)
    for _ in range(limits.AUTH_FREE_FAILURES):
        Conn(db, "192.0.2.7:1000")("AUTH wrong")
    fresh = Conn(db, "192.0.2.7:1001")
    fresh("AUTH wrong")
    assert fresh.session.hold_until is not None  # its first failure already waits
    other_host = Conn(db, "[2001:db8::1]:1002")
    other_host("AUTH wrong")
    assert other_host.session.hold_until is None
    # a host that stops failing is forgotten after a while
    clock.now += limits.AUTH_HOST_MEMORY_SECONDS + 1
    later = Conn(db, "192.0.2.7:1003")
    later("AUTH wrong")
    assert later.session.hold_until is None


def test_a_correct_password_never_waits(clock):
    db = make(clock, password=PASSWORD)
    for _ in range(6):
        Conn(db, "192.0.2.7:1000")("AUTH wrong")
    c = Conn(db, "192.0.2.7:2000")
    assert c(f"AUTH {PASSWORD}") == {"status": "Ok"}
    assert c.session.hold_until is None


def test_a_failed_auth_keeps_an_authenticated_session_authenticated(clock):
    c = Conn(make(clock, password=PASSWORD))
    assert code(c("PUT k v")) == "AUTH_REQUIRED"
    assert c(f"AUTH {PASSWORD}")["status"] == "Ok"
    reply = c("AUTH not-it")
    assert code(reply) == "AUTH_FAILED" and "stays authenticated" in reply["mesg"]
    assert c("PUT k v")["status"] == "Ok"


def test_the_password_is_in_no_reply_stats_or_log(clock, caplog):
    db = make(clock, password=PASSWORD)
    c = Conn(db)
    with caplog.at_level(logging.DEBUG):
        replies = [c.raw(line) for line in (
            f"AUTH {PASSWORD}x", f"AUTH {PASSWORD}", "STATS", "HELP", f"AUTH {PASSWORD[:-1]}")]
    for reply in replies:
        assert PASSWORD[:10].encode() not in reply
    assert PASSWORD[:10] not in caplog.text
    assert PASSWORD[:10] not in repr(db.settings) and PASSWORD[:10] not in db.settings.describe()


# -- --txn-timeout -----------------------------------------------------------------------------

def test_idle_transaction_is_rolled_back_and_its_next_command_told_why(clock):
    db = make(clock, txn_timeout=60)
    a, b = Conn(db), Conn(db)
    assert db.next_deadline() is None
    a("START")
    a("PUT hot 1")
    assert db.next_deadline() == clock.now + 60
    clock.now += 30
    a("GET hot")  # activity moves the deadline
    assert db.next_deadline() == clock.now + 60
    clock.now += 59.9
    db.expire(clock.now)
    assert code(b("PUT hot 2")) == "CONFLICT"
    clock.now += 0.1
    db.expire(clock.now)
    assert db.next_deadline() is None
    assert b("PUT hot 2")["status"] == "Ok"  # the key is free
    reply = a("PUT hot 3")  # not run: it would have been an autocommit
    assert code(reply) == "LIMIT"
    assert "--txn-timeout" in reply["mesg"] and "rolled back" in reply["mesg"]
    assert b("GET hot")["result"] == "2"
    assert code(a("COMMIT")) == "NO_TRANSACTION"  # told once; later commands run as usual
    stats = b("STATS")["result"]
    assert stats["security"]["txn_timeouts"] == 1
    assert stats["transactions"]["open"] == 0


def test_the_longest_idle_transaction_expires_first(clock):
    db = make(clock, txn_timeout=10)
    first, second = Conn(db), Conn(db)
    first("START")
    clock.now += 5
    second("START")
    assert db.next_deadline() == clock.now + 5
    clock.now += 5
    db.expire(clock.now)
    assert first.session.txn is None and second.session.txn is not None
    assert db.next_deadline() == clock.now + 5


def test_finished_transactions_have_no_deadline(clock):
    db = make(clock, txn_timeout=10)
    c = Conn(db)
    for end in ("COMMIT", "ROLLBACK"):
        c("START")
        c("PUT k v")
        c(end)
        assert db.next_deadline() is None
    c("START")
    db.close_session(c.session)
    assert db.next_deadline() is None


def test_txn_timeout_zero_never_expires(clock):
    db = make(clock, txn_timeout=0)
    c = Conn(db)
    c("START")
    assert db.next_deadline() is None
    clock.now += 10**6
    db.expire(clock.now)
    assert c("COMMIT")["status"] == "Ok"


def test_quit_after_a_timeout_just_quits(clock):
    db = make(clock, txn_timeout=1)
    c = Conn(db)
    c("START")
    clock.now += 2
    db.expire(clock.now)
    assert c("QUIT") == {"status": "Ok"}


# -- --max-txn-bytes and --max-data-bytes -------------------------------------------------------

def test_max_txn_bytes_refuses_the_write_and_keeps_the_transaction(clock):
    per_write = limits.write_cost("k1", "v")
    db = make(clock, max_txn_bytes=3 * per_write)
    c = Conn(db)
    c("START")
    for n in range(1, 4):
        assert c(f"PUT k{n} v")["status"] == "Ok"
    reply = c("PUT k4 v")
    assert code(reply) == "LIMIT" and "--max-txn-bytes" in reply["mesg"]
    assert code(c("DEL k1")) == "LIMIT"
    assert c.session.txn is not None
    assert c("GET k4")["code"] == "NOT_FOUND"
    assert c("COMMIT")["status"] == "Ok"
    assert c("GET k3")["result"] == "v"
    assert c("PUT k4 v")["status"] == "Ok"  # autocommit writes are not a transaction's
    c("START")
    assert c("PUT k5 v")["status"] == "Ok"  # a new transaction starts from zero


def test_max_data_bytes_refuses_puts_but_not_reads_or_deletes(clock):
    db = make(clock, max_data_bytes=20)
    c = Conn(db)
    assert c("PUT aaaa 123456")["status"] == "Ok"   # 10 bytes
    assert c("PUT bbbb 123456")["status"] == "Ok"   # 20 bytes
    reply = c("PUT c 1")
    assert code(reply) == "LIMIT" and "--max-data-bytes" in reply["mesg"]
    assert c("GET aaaa")["result"] == "123456"
    assert c("DEL aaaa")["status"] == "Ok"
    assert c("PUT c 1")["status"] == "Ok"
    assert db.store.data_bytes == 12


def test_max_data_bytes_counts_open_transactions(clock):
    db = make(clock, max_data_bytes=250)
    a, b = Conn(db), Conn(db)
    a("START")
    assert a("PUT k 1")["status"] == "Ok"  # 2 bytes + the write's overhead
    assert code(b("PUT x " + "y" * 200)) == "LIMIT"
    a("ROLLBACK")
    assert db.open_txn_bytes == 0
    assert b("PUT x " + "y" * 200)["status"] == "Ok"


def test_max_data_bytes_charges_an_overwrite_only_what_it_adds(clock):
    """Overwriting a key replaces its value: a same-size or smaller PUT never passes the
    budget, and over the budget (a lower limit after a restart) shrinking a value still works."""
    db = make(clock, max_data_bytes=1000)
    c = Conn(db)
    assert c("PUT k " + "x" * 600)["status"] == "Ok"  # 601 bytes: over half the budget
    assert c("PUT k " + "y" * 600)["status"] == "Ok"
    assert c("GET k")["result"] == "y" * 600
    assert code(c("PUT k " + "y" * 1000)) == "LIMIT"  # 1,001 bytes would pass it
    db.settings.max_data_bytes = 300  # as a restart with a lower limit leaves it
    assert c("PUT k " + "z" * 500)["status"] == "Ok"  # over, but smaller than before
    assert code(c("PUT k " + "z" * 501)) == "LIMIT"  # over and growing
    assert code(c("PUT other 1")) == "LIMIT"
    assert db.store.data_bytes == 501

def test_limits_show_in_stats(clock):
    db = make(clock, max_data_bytes=1000, max_txn_bytes=500, txn_timeout=7)
    c = Conn(db)
    c("START")
    c("PUT k v")
    result = c("STATS")["result"]
    assert result["limits"] == {"max_data_bytes": 1000, "max_txn_bytes": 500,
                                "txn_timeout_seconds": 7,
                                "open_txn_bytes": limits.write_cost("k", "v")}
