"""Sans-IO tests of every command through CommandExecutor: reply shapes, error codes and
messages (SPEC §2-§3, STATS from §6), with Sessions and no sockets."""

from __future__ import annotations

import json

import pytest

from kvloop.commands import COMMANDS, CommandExecutor
from kvloop.config import Settings
from kvloop.protocol import LineTooLarge
from kvloop.session import Session


class Client:
    """One session on an executor, speaking request lines and getting parsed replies."""

    def __init__(self, executor: CommandExecutor) -> None:
        self.executor = executor
        self.session = executor.open_session("test-peer")

    def raw(self, line: bytes) -> bytes | None:
        """The reply bytes for one request line (``None`` for a blank line)."""
        reply = self.executor.execute(self.session, line)
        if reply is not None:
            assert reply.endswith(b"\n")
            assert reply.count(b"\n") == 1
        return reply

    def __call__(self, line: str) -> dict:
        """Run ``line`` and return the parsed reply."""
        reply = self.raw(line.encode("utf-8"))
        assert reply is not None, f"no reply to {line!r}"
        return json.loads(reply)


def ok(result: object = None) -> dict:
    """A success reply."""
    return {"status": "Ok"} if result is None else {"status": "Ok", "result": result}


def err(reply: dict, code: str, *words: str) -> None:
    """Assert ``reply`` is the error ``code`` with a mesg naming each of ``words``."""
    assert reply["status"] == "Error", reply
    assert reply["code"] == code, reply
    assert set(reply) == {"status", "code", "mesg"}, reply
    mesg = reply["mesg"]
    assert isinstance(mesg, str) and mesg, reply
    for word in words:
        assert word.lower() in mesg.lower(), f"{word!r} not in {mesg!r}"


@pytest.fixture
def executor() -> CommandExecutor:
    """An executor with default settings."""
    return CommandExecutor(Settings())


@pytest.fixture
def c(executor) -> Client:
    """A client session on ``executor``."""
    return Client(executor)


# -- PUT / GET / DEL ----------------------------------------------------------------------

class TestData:
    """PUT, GET, DEL and the errors any command can get."""

    def test_put_get_del(self, c):
        assert c("PUT a 1") == ok()
        assert c("GET a") == ok("1")
        assert c("DEL a") == ok()
        err(c("GET a"), "NOT_FOUND")
        assert c("GET a")["mesg"] == "Key not found"

    def test_put_overwrites(self, c):
        c("PUT a 1")
        assert c("PUT a 2") == ok()
        assert c("GET a") == ok("2")

    def test_del_missing_is_ok(self, c):
        assert c("DEL nothing") == ok()

    def test_value_is_rest_of_line(self, c):
        value = '{"first_name":"George", "last_name":"Washington"}'
        assert c(f"PUT georgew {value}") == ok()
        assert c("GET georgew") == ok(value)
        c("PUT k  a  b\tc  ")
        assert c("GET k") == ok("a  b\tc  ")

    def test_non_ascii_keys_and_values(self, c):
        c("PUT clé välue ✓ 日本")
        assert c("GET clé") == ok("välue ✓ 日本")

    def test_crlf_and_case_insensitive_verbs(self, c):
        assert json.loads(c.raw(b"pUt a hello\r")) == ok()
        assert json.loads(c.raw(b"get a\r")) == ok("hello")

    @pytest.mark.parametrize("line", [b"", b"   ", b"\t \t", b"\r"])
    def test_blank_line_gets_no_reply(self, c, line):
        assert c.raw(line) is None

    @pytest.mark.parametrize("line,words", [
        ("PUT", ["PUT key value"]),
        ("PUT k", ["value", "PUT key value"]),
        ("PUT k   ", ["value", "empty"]),
        ("GET", ["0 words", "GET key"]),
        ("GET a b", ["2 words", "GET key"]),
        ("DEL", ["0 words", "DEL key"]),
        ("DEL a b c", ["3 words", "DEL key"]),
    ])
    def test_wrong_argument_counts(self, c, line, words):
        err(c(line), "BAD_REQUEST", *words)

    def test_key_too_long(self):
        c = Client(CommandExecutor(Settings(max_key_bytes=8)))
        assert c("PUT 12345678 v") == ok()
        for line in ("PUT 123456789 v", "GET 123456789", "DEL 123456789"):
            err(c(line), "TOO_LARGE", "9 bytes", "limit is 8", "--max-key-bytes")
        # The limit is in UTF-8 bytes, not characters: 3 x 3 bytes = 9.
        err(c("PUT €€€ v"), "TOO_LARGE", "9 bytes")
        assert c("PUT €€ v") == ok()

    def test_default_key_limit_is_1024_bytes(self, c):
        assert c("PUT " + "k" * 1024 + " v") == ok()
        err(c("GET " + "k" * 1025), "TOO_LARGE", "1025", "1024")

    @pytest.mark.parametrize("key,code_point", [("a\x01b", 1), ("\x7f", 0x7F), ("a\x85", 0x85),
                                                ("x\x1b[0m", 0x1B)])
    def test_key_with_control_character(self, c, key, code_point):
        for line in (f"PUT {key} v", f"GET {key}", f"DEL {key}"):
            err(c(line), "BAD_REQUEST", "control character", f"code {code_point}")

    def test_invalid_utf8(self, c):
        reply = json.loads(c.raw(b"PUT k \xff\xfe"))
        err(reply, "BAD_REQUEST", "UTF-8")
        err(c("GET k"), "NOT_FOUND")

    def test_line_too_large_marker(self, c):
        reply = json.loads(c.raw(LineTooLarge(1000)))
        err(reply, "TOO_LARGE", "1000 bytes", "--max-line-bytes")

    def test_unknown_verb(self, c):
        reply = c("FROB a b")
        err(reply, "UNKNOWN_COMMAND", "FROB", "HELP")
        for verb in COMMANDS:
            assert verb in reply["mesg"]

    def test_unknown_verb_quoted_briefly(self, c):
        reply = c("X" * 500)
        err(reply, "UNKNOWN_COMMAND")
        assert len(reply["mesg"]) < 300


# -- transactions ---------------------------------------------------------------------------

class TestTransactions:
    """START, COMMIT, ROLLBACK, isolation between sessions and CONFLICT."""

    def test_start_commit(self, c):
        assert c("START") == ok()
        assert c("PUT a 1") == ok()
        assert c("GET a") == ok("1")
        reply = c("COMMIT")
        assert reply == ok({"seq": 1})
        assert c("GET a") == ok("1")

    @pytest.mark.parametrize("word,level", [
        ("read-committed", "read-committed"),
        ("READ-COMMITTED", "read-committed"),
        ("read_committed", "read-committed"),
        ("serializable", "serializable"),
        ("Serializable", "serializable"),
        ("snapshot", "snapshot"),
        ("SNAPSHOT", "snapshot"),
    ])
    def test_start_levels(self, c, word, level):
        assert c(f"START {word}") == ok()
        assert c.session.txn.level == level

    def test_start_default_level_comes_from_settings(self):
        c = Client(CommandExecutor(Settings(isolation="serializable")))
        c("START")
        assert c.session.txn.level == "serializable"
        d = Client(CommandExecutor(Settings()))
        d("START")
        assert d.session.txn.level == "read-committed"

    def test_start_bad_level(self, c):
        err(c("START repeatable-read"), "BAD_REQUEST", "repeatable-read", "read-committed",
            "snapshot", "serializable")
        assert c.session.txn is None
        err(c("START serializable extra"), "BAD_REQUEST", "usage")

    def test_start_twice(self, c):
        c("START serializable")
        err(c("START"), "IN_TRANSACTION", "serializable", "COMMIT", "ROLLBACK")
        assert c.session.txn.level == "serializable"  # still the first one

    @pytest.mark.parametrize("verb", ["COMMIT", "ROLLBACK"])
    def test_no_transaction(self, c, verb):
        err(c(verb), "NO_TRANSACTION", verb, "START")

    @pytest.mark.parametrize("verb", ["COMMIT", "ROLLBACK", "STATS", "QUIT"])
    def test_no_arguments_allowed(self, c, verb):
        c("START")
        err(c(f"{verb} now"), "BAD_REQUEST", verb, "no arguments")
        assert c.session.txn is not None
        assert not c.session.closing

    def test_commit_seq_counts_every_commit(self, executor):
        a, b = Client(executor), Client(executor)
        a("PUT x 1")  # seq 1
        b("START")
        b("PUT y 1")
        a("PUT x 2")  # seq 2
        assert b("COMMIT") == ok({"seq": 3})
        b("START")
        b("GET x")
        assert b("COMMIT") == ok({"seq": 3})  # read-only: current seq, no bump

    def test_rollback(self, c):
        c("PUT over o1")
        c("PUT del d1")
        c("START")
        c("PUT over o2")
        c("DEL del")
        c("PUT new n")
        assert c("ROLLBACK") == ok()
        assert c("GET over") == ok("o1")
        assert c("GET del") == ok("d1")
        err(c("GET new"), "NOT_FOUND")
        err(c("ROLLBACK"), "NO_TRANSACTION")

    def test_isolation_between_sessions(self, executor):
        a, b = Client(executor), Client(executor)
        a("PUT k before")
        a("START")
        a("PUT k after")
        a("PUT fresh x")
        assert a("GET k") == ok("after")
        assert b("GET k") == ok("before")
        err(b("GET fresh"), "NOT_FOUND")
        a("COMMIT")
        assert b("GET k") == ok("after")
        assert b("GET fresh") == ok("x")

    @pytest.mark.parametrize("in_txn", [True, False])
    def test_conflict(self, executor, in_txn):
        a, b = Client(executor), Client(executor)
        a("START")
        a("PUT k mine")
        if in_txn:
            b("START")
            b("PUT other 1")
        err(b("PUT k theirs"), "CONFLICT", "'k'", "another open transaction")
        err(b("DEL k"), "CONFLICT", "'k'")
        assert b.session.txn is not None if in_txn else b.session.txn is None
        assert a("GET k") == ok("mine")
        if in_txn:
            assert b("COMMIT")["status"] == "Ok"
            assert b("GET other") == ok("1")
        a("COMMIT")
        assert b("GET k") == ok("mine")

    def test_serializable_validation_conflict(self, executor):
        a, b = Client(executor), Client(executor)
        a("PUT x 1")
        b("START serializable")
        b("GET x")
        b("PUT y 2")
        a("PUT x 9")
        err(b("COMMIT"), "CONFLICT", "'x'", "rolled back")
        assert b.session.txn is None
        err(b("GET y"), "NOT_FOUND")
        err(b("COMMIT"), "NO_TRANSACTION")

    def test_close_session_rolls_back_and_frees_keys(self, executor):
        a, b = Client(executor), Client(executor)
        a("PUT k old")
        a("START")
        a("PUT k new")
        a("PUT n created")
        executor.close_session(a.session)
        assert b("GET k") == ok("old")
        err(b("GET n"), "NOT_FOUND")
        assert b("PUT k b") == ok()
        assert executor.store.open_intents() == 0

    def test_close_session_without_transaction(self, executor):
        a = Client(executor)
        a("PUT k v")
        executor.close_session(a.session)
        assert executor.stats.clients_connected == 0


# -- PING, HELP, QUIT, STATS ----------------------------------------------------------------

class TestMisc:
    """PING, HELP, QUIT and STATS."""

    def test_ping(self, c):
        assert c("PING") == ok("PONG")
        assert c("ping") == ok("PONG")
        assert c("PING hello") == ok("hello")
        assert c("PING hello  there") == ok("hello  there")

    def test_help_lists_every_command(self, c):
        reply = c("HELP")
        assert reply["status"] == "Ok"
        assert isinstance(reply["result"], list)
        text = "\n".join(reply["result"])
        for verb in COMMANDS:
            assert verb in text

    def test_quit(self, c):
        c("START")
        assert c("QUIT") == ok()
        assert c.session.closing

    def test_stats_fields(self, executor):
        a, b = Client(executor), Client(executor)
        a("PUT k1 v1")
        a("PUT k2 é")
        a("GET k1")
        a("GET missing")
        a("START")
        a("PUT k3 x")
        a("COMMIT")
        a("START serializable")
        a("ROLLBACK")
        b("START")
        b("PUT held 1")
        a("PUT held 2")  # conflict (write intent)
        a("START serializable")
        a("GET k1")
        a("PUT z 1")
        b("PUT k1 changed")
        b("COMMIT")
        a("COMMIT")  # conflict (validation)
        b("START")
        b("PUT gone 1")
        executor.close_session(b.session)  # rolls b's transaction back
        a("START snapshot")
        a("GET k1")
        c = Client(executor)
        c("PUT k1 again")
        a("PUT k1 mine")  # conflict (first committer wins)
        assert a("GET k1") == ok("changed")  # a's snapshot
        mid = a("STATS")["result"]["transactions"]["versions"]
        assert mid == {"open_snapshots": 1, "tracked_keys": 1, "old_values": 1}
        a("COMMIT")
        executor.close_session(c.session)
        stats = a("STATS")["result"]
        assert isinstance(stats["uptime_seconds"], (int, float))
        assert stats["uptime_seconds"] >= 0
        assert stats["clients"] == {"connected": 1, "total": 3}
        assert stats["commands"]["PUT"] == 10
        assert stats["commands"]["GET"] == 5
        assert stats["commands"]["START"] == 6
        assert stats["commands"]["COMMIT"] == 4
        assert stats["commands"]["ROLLBACK"] == 1
        assert stats["commands"]["STATS"] == 2
        assert stats["keys"] == 4  # k1, k2, k3, held
        assert stats["data_bytes"] == sum(
            len(k.encode()) + len(v.encode()) for k, v in executor.store.committed_items())
        assert stats["data_bytes"] == (
            len("k1again") + len("k2é".encode()) + len("k3x") + len("held1"))
        txns = stats["transactions"]
        assert txns["started"] == 6
        assert txns["committed"] == 3
        assert txns["rolled_back"] == 3  # ROLLBACK, failed validation, closed session
        assert txns["open"] == 0
        assert txns["conflicts"] == 3
        assert txns["conflicts_by_cause"] == {"write_intent": 1, "validation": 1,
                                              "first_committer": 1}
        assert txns["by_level"]["serializable"] == {
            "started": 2, "committed": 0, "rolled_back": 2}
        assert txns["by_level"]["snapshot"] == {
            "started": 1, "committed": 1, "rolled_back": 0}
        assert txns["by_level"]["read-committed"] == {
            "started": 3, "committed": 2, "rolled_back": 1}
        assert txns["versions"] == {"open_snapshots": 0, "tracked_keys": 0, "old_values": 0}
        assert stats["log_bytes"] == 0
        assert stats["fsyncs"] == 0
        assert stats["errors"]["NOT_FOUND"] == 1
        assert stats["errors"]["CONFLICT"] == 3
        assert stats["commit_seq"] == executor.store.seq
        assert stats["isolation_default"] == "read-committed"

    def test_stats_empty(self, c):
        stats = c("STATS")["result"]
        assert stats["keys"] == 0
        assert stats["data_bytes"] == 0
        assert stats["transactions"]["started"] == 0


# -- AUTH -----------------------------------------------------------------------------------

class TestAuth:
    """AUTH and what a session may do before it."""

    @pytest.fixture
    def locked(self) -> Client:
        """A client on a server with a password, not yet authenticated."""
        return Client(CommandExecutor(Settings(password="s3cret pass")))

    @pytest.mark.parametrize("line", ["PUT a 1", "GET a", "DEL a", "START", "COMMIT",
                                      "ROLLBACK", "STATS"])
    def test_auth_required(self, locked, line):
        err(locked(line), "AUTH_REQUIRED", line.split()[0], "AUTH")

    def test_open_verbs_work_before_auth(self, locked):
        assert locked("PING") == ok("PONG")
        assert locked("HELP")["status"] == "Ok"
        assert locked("QUIT") == ok()

    def test_auth_required_has_no_effect(self, locked):
        locked("PUT a 1")
        assert locked.executor.store.committed_items() == []

    def test_auth_failed_then_ok(self, locked):
        err(locked("AUTH wrong"), "AUTH_FAILED", "password")
        err(locked("GET a"), "AUTH_REQUIRED")
        assert locked("AUTH s3cret pass") == ok()  # the password is the rest of the line
        assert locked("PUT a 1") == ok()
        assert locked("GET a") == ok("1")

    def test_auth_ignores_blanks_around_the_password(self, locked):
        assert locked("AUTH   s3cret pass \t ") == ok()
        assert locked("GET a")["code"] == "NOT_FOUND"

    def test_auth_without_password_argument(self, locked):
        err(locked("AUTH"), "BAD_REQUEST", "AUTH password")

    def test_each_session_authenticates(self, locked):
        locked("AUTH s3cret pass")
        other = Client(locked.executor)
        err(other("GET a"), "AUTH_REQUIRED")

    def test_auth_when_no_password_set(self, c):
        err(c("AUTH anything"), "BAD_REQUEST", "no password")
        assert c("PUT a 1") == ok()

    def test_session_flag(self):
        executor = CommandExecutor(Settings(password="x"))
        assert not executor.open_session().authenticated
        assert CommandExecutor(Settings()).open_session().authenticated
        assert isinstance(executor.open_session(), Session)


# -- COMMIT hitting an unexpected error ------------------------------------------------------

class TestCommitFailure:
    """COMMIT ends the transaction whatever happens, and its INTERNAL reply says how."""

    def test_failure_before_anything_is_applied_rolls_back(self, executor, c, monkeypatch):
        c("PUT k before")
        c("START")
        c("PUT k during")

        def broken_commit(txn):
            raise RuntimeError("injected")

        monkeypatch.setattr(executor.store, "commit", broken_commit)
        err(c("COMMIT"), "INTERNAL", "rolled back", "none of its writes")
        monkeypatch.undo()
        err(c("ROLLBACK"), "NO_TRANSACTION")  # the transaction is over
        other = Client(executor)
        assert other("GET k") == ok("before")
        assert other("PUT k free") == ok()  # the key's intent was released
        assert executor.stats.rolled_back["read-committed"] == 1

    def test_failure_in_the_log_hook_rolls_back(self, executor, c):
        """The log is written before the commit takes effect: a failing hook undoes it."""
        def broken_hook(seq, writes):
            raise RuntimeError("injected")

        c("START")
        c("PUT k during")
        executor.store.on_commit = broken_hook
        err(c("COMMIT"), "INTERNAL", "rolled back", "none of its writes")
        executor.store.on_commit = None
        err(c("ROLLBACK"), "NO_TRANSACTION")
        other = Client(executor)
        err(other("GET k"), "NOT_FOUND")
        assert other("PUT k free") == ok()
        assert executor.store.seq == 1  # the failed commit's number was not used
