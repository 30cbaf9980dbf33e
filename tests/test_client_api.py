"""The Python client API (kvloop/client.py) against real server processes.

Every method, errors carrying the server's codes, transaction tracking from replies, both forms
of ``transaction()`` (with-block; function with retries on CONFLICT), pipelining, and the three
outcomes of COMMIT. The unknown outcome is produced for real: a small proxy between client and
server forwards COMMIT to the server and drops the client before passing the reply on.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Callable

import pytest
from support import error_code, ok

from kvloop.client import (
    Client,
    CommitOutcomeUnknown,
    ConflictError,
    ConnectionLost,
    KvloopError,
    NotFoundError,
    ServerError,
    server_error,
)

TIMEOUT = 5.0


@pytest.fixture
def connect(server):
    """``connect()`` opens a Client to the test's server; all are closed after the test."""
    clients: list[Client] = []

    def open_client(**kwargs) -> Client:
        client = Client("127.0.0.1", server.port, timeout=TIMEOUT, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def unused_port() -> socket.socket:
    """A socket bound to a port but not listening: connecting to that port is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


# -- a proxy that drops the client at a chosen command ------------------------------------

class DropProxy:
    """Forwards one client's commands to the server in lock step (one command, one reply),
    until a line matching ``trigger`` arrives. Then, by ``mode``:

    - ``"before"``: drop the client without forwarding the line (the server never sees it);
    - ``"swallow"``: forward it, wait for the server's reply (kept in ``reply``: proof the
      server ran it), and drop the client without passing the reply on;
    - ``"after"``: forward it, pass the reply on, then drop the client.

    ``dropped`` is set once the client's connection is closed.
    """

    def __init__(self, server_port: int, trigger: Callable[[bytes], bool], mode: str) -> None:
        assert mode in ("before", "swallow", "after")
        self.server_port = server_port
        self.trigger = trigger
        self.mode = mode
        self.reply: bytes | None = None
        self.dropped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        downstream, _ = self.listener.accept()
        downstream.settimeout(TIMEOUT)
        upstream = socket.create_connection(("127.0.0.1", self.server_port), timeout=TIMEOUT)
        from_client = downstream.makefile("rb")
        from_server = upstream.makefile("rb")
        try:
            for line in from_client:
                hit = self.trigger(line.rstrip(b"\r\n"))
                if hit and self.mode == "before":
                    break
                upstream.sendall(line)
                reply = from_server.readline()
                if hit:
                    self.reply = reply
                    if self.mode == "after":
                        downstream.sendall(reply)
                    break
                downstream.sendall(reply)
        finally:
            downstream.shutdown(socket.SHUT_RDWR)
            for closable in (from_client, from_server, downstream, upstream, self.listener):
                closable.close()
            self.dropped.set()

    def close(self) -> None:
        """Wait for the proxy thread to end."""
        self.thread.join(TIMEOUT)


@pytest.fixture
def drop_proxy(server):
    """``drop_proxy(trigger, mode)`` starts a DropProxy in front of the test's server."""
    proxies: list[DropProxy] = []

    def start(trigger: Callable[[bytes], bool], mode: str) -> DropProxy:
        proxy = DropProxy(server.port, trigger, mode)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def is_commit(line: bytes) -> bool:
    """The proxy trigger for COMMIT."""
    return line == b"COMMIT"


def is_put(line: bytes) -> bool:
    """The proxy trigger for any PUT."""
    return line.startswith(b"PUT ")


# -- plain commands -----------------------------------------------------------------------

def test_put_get_delete_round_trip_values_exactly(connect):
    db = connect()
    values = {
        "georgew": '{"first_name":"George", "last_name":"Washington", "role":"President"}',
        "spaces": "inner  spaces\tand a tab, trailing blanks  ",
        "unicode": "héllo wörld ✓ 日本",
        "crlf-inside": "a\rb",
    }
    for key, value in values.items():
        assert db.put(key, value) is None
    for key, value in values.items():
        assert db.get(key) == value
    db.put("georgew", "overwritten")
    assert db.get("georgew") == "overwritten"
    assert db.delete("georgew") is None
    with pytest.raises(NotFoundError):
        db.get("georgew")
    db.delete("never-existed")  # deleting a missing key is fine


def test_errors_carry_the_servers_code_and_message(connect):
    db = connect()
    with pytest.raises(NotFoundError) as info:
        db.get("missing")
    error = info.value
    assert isinstance(error, ServerError) and isinstance(error, KvloopError)
    assert (error.code, error.mesg) == ("NOT_FOUND", "Key not found")
    assert str(error) == "NOT_FOUND: Key not found"

    with pytest.raises(ServerError) as info:
        db.commit()
    assert info.value.code == "NO_TRANSACTION"
    assert type(info.value) is ServerError
    db.start()
    with pytest.raises(ServerError) as info:
        db.start()
    assert info.value.code == "IN_TRANSACTION"
    assert "COMMIT or ROLLBACK" in info.value.mesg


def test_server_error_factory_maps_codes_to_classes():
    assert type(server_error("NOT_FOUND", "m")) is NotFoundError
    assert type(server_error("CONFLICT", "m")) is ConflictError
    other = server_error("LIMIT", "too many")
    assert type(other) is ServerError
    assert (other.code, other.mesg) == ("LIMIT", "too many")


def test_ping_stats_help(connect):
    db = connect()
    assert db.ping() == "PONG"
    assert db.ping("hello there") == "hello there"
    db.put("a", "1")
    stats = db.stats()
    assert stats["keys"] == 1
    assert stats["commands"]["PUT"] == 1
    assert stats["clients"]["connected"] == 1
    commands = db.help()
    assert isinstance(commands, list)
    assert any(line.startswith("PUT key value") for line in commands)
    assert any(line.startswith("QUIT") for line in commands)


def test_commit_returns_the_commit_sequence(connect):
    db = connect()
    db.put("a", "1")  # autocommit: seq 1
    db.start("serializable")
    db.put("b", "2")
    assert db.commit() == 2
    assert db.last_commit_seq == 2
    db.start()
    db.put("c", "3")
    db.rollback()
    with pytest.raises(NotFoundError):
        db.get("c")
    db.start("read_committed")  # the server's spellings are accepted
    db.put("c", "3")
    assert db.commit() == 3


def test_auth(start_server):
    server = start_server(env={"KVLOOP_PASSWORD": "s3cret"})
    with Client(port=server.port, timeout=TIMEOUT, password="s3cret") as db:
        db.put("a", "1")
        assert db.get("a") == "1"
    with Client(port=server.port, timeout=TIMEOUT) as db:
        with pytest.raises(ServerError) as info:
            db.get("a")
        assert info.value.code == "AUTH_REQUIRED"
        with pytest.raises(ServerError) as info:
            db.auth("wrong")
        assert info.value.code == "AUTH_FAILED"
        db.auth("s3cret")
        assert db.get("a") == "1"
    with pytest.raises(ServerError) as info:
        Client(port=server.port, timeout=TIMEOUT, password="wrong")
    assert info.value.code == "AUTH_FAILED"


def test_auth_without_a_server_password(connect):
    with pytest.raises(ServerError) as info:
        connect().auth("anything")
    assert info.value.code == "BAD_REQUEST"


@pytest.mark.parametrize("call, message", [
    (lambda db: db.put("two words", "v"), "blank or control character"),
    (lambda db: db.put("", "v"), "must not be empty"),
    (lambda db: db.put("tab\tkey", "v"), "blank or control character"),
    (lambda db: db.get("new\nline"), "blank or control character"),
    (lambda db: db.delete("bell\x07"), "blank or control character"),
    (lambda db: db.put("k", ""), "value must not be empty"),
    (lambda db: db.put("k", "two\nlines"), "one line"),
    (lambda db: db.put("k", "ends with CR\r"), "must not end with"),
    (lambda db: db.put("k", " leading blank"), "must not start with a space"),
    (lambda db: db.start("repeatable-read"), "unknown isolation level"),
    (lambda db: db.ping("a\nb"), "one line"),
    (lambda db: db.execute("PING\nPING"), "one command per line"),
    (lambda db: db.execute("   "), "must not be blank"),
])
def test_bad_arguments_raise_value_error_before_sending(connect, call, message):
    db = connect()
    with pytest.raises(ValueError, match=message):
        call(db)
    # Nothing was sent, and the connection is still in step.
    assert db.ping() == "PONG"
    stats = db.stats()
    assert set(stats["commands"]) == {"PING", "STATS"}
    assert stats["errors"] == {}


def test_execute_returns_error_replies_instead_of_raising(connect):
    db = connect()
    assert db.execute("PUT k some value") == ok()
    assert db.execute("get k") == ok("some value")
    reply = db.execute("FROB k")
    assert error_code(reply) == "UNKNOWN_COMMAND"
    assert error_code(db.execute("GET nope")) == "NOT_FOUND"
    raw, reply = db.execute_raw("GET k")
    assert raw == b'{"status":"Ok","result":"some value"}'
    assert reply == ok("some value")


def test_pipeline_returns_replies_in_order(connect):
    db = connect()
    replies = db.pipeline(["PUT a 1", "GET a", "GET b", "BOGUS", "DEL a", "GET a", "PING x"])
    assert replies == [
        ok(), ok("1"), replies[2], replies[3], ok(), replies[5], ok("x"),
    ]
    assert [error_code(r) for r in replies] == [
        None, None, "NOT_FOUND", "UNKNOWN_COMMAND", None, "NOT_FOUND", None,
    ]
    assert db.ping() == "PONG"  # still in step


def test_pipeline_of_big_requests_and_replies_does_not_deadlock(connect):
    """Megabytes each way: a client that wrote everything before reading would stall
    against a server that pauses clients which do not read their replies."""
    db = connect()
    big = "x" * (256 * 1024)
    db.put("big", big)
    lines = []
    for i in range(64):
        lines.append("GET big")
        lines.append(f"PUT k{i} {i}{big}")
    replies = db.pipeline(lines)
    assert len(replies) == 128
    assert replies[0::2] == [ok(big)] * 64
    assert replies[1::2] == [ok()] * 64
    assert db.get("k63") == "63" + big


def test_pipeline_checks_every_line_first(connect):
    db = connect()
    with pytest.raises(ValueError, match="blank"):
        db.pipeline(["PUT a 1", ""])
    with pytest.raises(ValueError, match="QUIT"):
        db.pipeline(["PING", "QUIT", "PING"])
    with pytest.raises(NotFoundError):
        db.get("a")  # nothing of the rejected pipelines was sent
    assert db.pipeline(["PUT a 1", "QUIT"]) == [ok(), ok()]
    assert db.closed


# -- connection state ---------------------------------------------------------------------

def test_connect_refused_raises_connection_lost_with_a_clear_message():
    with unused_port() as sock:
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionLost) as info:
            Client(port=port, timeout=TIMEOUT)
    assert isinstance(info.value, ConnectionError)
    message = str(info.value)
    assert message.startswith(f"cannot connect to 127.0.0.1:{port}: ")
    assert "refused" in message
    assert "python server.py" in message


def test_no_reply_within_the_timeout_closes_the_connection():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        db = Client(port=silent.getsockname()[1], timeout=0.3)
        with pytest.raises(ConnectionLost, match=r"no reply from the server within 0\.3 s"):
            db.ping()
        assert db.closed


def test_context_manager_and_quit_close_the_client(connect, server):
    with Client(port=server.port, timeout=TIMEOUT) as db:
        assert db.ping() == "PONG"
        assert not db.closed
    assert db.closed
    with pytest.raises(ConnectionLost, match="is closed"):
        db.ping()
    db.close()  # idempotent

    db = connect()
    assert db.execute("QUIT") == ok()
    assert db.closed
    with pytest.raises(ConnectionLost):
        db.get("a")


def test_in_transaction_follows_the_replies(connect):
    db = connect()
    assert (db.in_transaction, db.transaction_level) == (False, None)
    assert db.execute("start SERIALIZABLE") == ok()
    assert (db.in_transaction, db.transaction_level) == (True, "serializable")
    assert error_code(db.execute("START read-committed")) == "IN_TRANSACTION"
    assert (db.in_transaction, db.transaction_level) == (True, "serializable")
    assert db.execute("COMMIT")["status"] == "Ok"
    assert (db.in_transaction, db.transaction_level) == (False, None)
    assert error_code(db.execute("ROLLBACK")) == "NO_TRANSACTION"
    assert not db.in_transaction

    db.start()  # the server's default level, which the reply does not name
    assert (db.in_transaction, db.transaction_level) == (True, None)
    db.rollback()
    assert not db.in_transaction
    assert db.default_isolation() == "read-committed"  # asked once, from STATS
    db.start()
    assert (db.in_transaction, db.transaction_level) == (True, "read-committed")
    db.rollback()

    db.pipeline(["START read_committed", "PUT a 1"])
    assert (db.in_transaction, db.transaction_level) == (True, "read-committed")
    assert repr(db).endswith("in a read-committed transaction>")
    db.rollback()
    db.start("serializable")
    db.close()
    assert (db.in_transaction, db.transaction_level) == (False, None)


def test_in_transaction_ends_when_the_server_ends_it(start_server, tmp_path):
    """The server rolled the transaction back (--txn-timeout; a COMMIT refused READONLY):
    the client no longer claims one is open, so a prompt shows no level and START works."""
    import time

    from support import ROOT

    server = start_server("--in-memory", "--txn-timeout", "0.3")
    with Client("127.0.0.1", server.port, timeout=TIMEOUT) as db:
        db.start("serializable")
        db.put("a", "1")
        time.sleep(1.0)  # the server's loop rolls it back meanwhile
        with pytest.raises(ServerError) as refused:
            db.get("a")
        assert refused.value.code == "LIMIT" and "--txn-timeout" in refused.value.mesg
        assert (db.in_transaction, db.transaction_level) == (False, None)
        db.start()
        assert db.in_transaction

    trigger = tmp_path / "disk-is-broken"
    faulty = start_server(script=ROOT / "tests" / "disk_fault_server.py",
                          env={"KVLOOP_DISK_FAULT": str(trigger)})
    with Client("127.0.0.1", faulty.port, timeout=TIMEOUT) as db:
        db.start()
        db.put("b", "1")
        trigger.touch()
        with pytest.raises(ServerError) as refused:
            db.commit()
        assert refused.value.code == "READONLY"
        assert not db.in_transaction

def test_snapshot_level_through_the_api(connect, start_server):
    """level="snapshot": reads see the snapshot, a write of a key committed after it raises
    ConflictError and leaves the transaction open; the function form retries it; a server
    started with --isolation snapshot gives a plain START that level."""
    db, other = connect(), connect()
    db.put("x", "1")
    with db.transaction(level="snapshot") as tx:
        assert tx.transaction_level == "snapshot"
        assert tx.get("x") == "1"
        other.put("x", "2")
        assert tx.get("x") == "1"
        with pytest.raises(ConflictError) as info:
            tx.put("x", "3")
        assert "first committer wins" in str(info.value)
        assert tx.in_transaction
        tx.put("y", "1")
    assert db.get("y") == "1" and db.get("x") == "2"
    attempts = []

    def bump(c):
        value = int(c.get("x"))
        if not attempts:
            other.put("x", str(value + 100))  # a commit after this attempt's snapshot
        attempts.append(value)
        c.put("x", str(value + 1))
        return value + 1

    assert db.transaction(bump, level="snapshot", retries=2) == 103
    assert attempts == [2, 102]
    assert db.stats()["transactions"]["by_level"]["snapshot"] == {
        "started": 3, "committed": 2, "rolled_back": 1}
    server = start_server("--isolation", "snapshot")
    with Client("127.0.0.1", server.port, timeout=TIMEOUT) as db2:
        assert db2.default_isolation() == "snapshot"
        db2.start()
        assert db2.transaction_level == "snapshot"
        assert any("snapshot" in line for line in db2.help() if line.startswith("START"))


def test_default_isolation_comes_from_the_server(start_server):
    server = start_server("--isolation", "serializable", env={"KVLOOP_PASSWORD": "pw"})
    with Client("127.0.0.1", server.port, timeout=TIMEOUT) as db:
        assert db.default_isolation() is None  # STATS needs AUTH first: not known yet
        db.auth("pw")
        assert db.default_isolation() == "serializable"
        db.start()
        assert db.transaction_level == "serializable"


def test_write_conflict_leaves_the_transaction_open(connect):
    db, other = connect(), connect()
    other.start()
    other.put("k", "theirs")
    db.start("serializable")
    with pytest.raises(ConflictError) as info:
        db.put("k", "mine")
    assert info.value.code == "CONFLICT"
    assert db.in_transaction  # the failed statement had no effect; the transaction goes on
    db.put("j", "mine")
    other.commit()
    db.commit()
    assert (db.get("k"), db.get("j")) == ("theirs", "mine")


def test_validation_conflict_at_commit_closes_the_transaction(connect):
    db, other = connect(), connect()
    db.put("x", "1")
    db.start("serializable")
    assert db.get("x") == "1"
    other.put("x", "2")  # commits after db read x
    db.put("y", "from-db")
    with pytest.raises(ConflictError) as info:
        db.commit()
    assert "rolled back" in info.value.mesg
    assert not db.in_transaction
    with pytest.raises(NotFoundError):
        other.get("y")  # nothing of db's transaction was applied


# -- transaction(): the with-block form -----------------------------------------------------

def test_with_transaction_commits_on_success(connect):
    db, other = connect(), connect()
    with db.transaction(level="serializable") as tx:
        assert tx is db
        assert (db.in_transaction, db.transaction_level) == (True, "serializable")
        db.put("a", "1")
        db.put("b", "2")
        with pytest.raises(NotFoundError):
            other.get("a")  # not visible before COMMIT
    assert not db.in_transaction
    assert db.last_commit_seq == 1
    assert (other.get("a"), other.get("b")) == ("1", "2")


def test_with_transaction_rolls_back_on_exception(connect):
    db, other = connect(), connect()
    db.put("a", "before")
    with pytest.raises(RuntimeError, match="changed my mind"), db.transaction():
        db.put("a", "after")
        db.put("b", "new")
        raise RuntimeError("changed my mind")
    assert not db.in_transaction
    assert other.get("a") == "before"
    with pytest.raises(NotFoundError):
        other.get("b")
    assert db.ping() == "PONG"


def test_with_transaction_rolls_back_after_a_write_conflict(connect):
    db, other = connect(), connect()
    other.start()
    other.put("k", "theirs")
    with pytest.raises(ConflictError), db.transaction():
        db.put("mine", "1")
        db.put("k", "mine")  # CONFLICT: the transaction is still open, then rolled back
    assert not db.in_transaction
    other.commit()
    with pytest.raises(NotFoundError):
        other.get("mine")
    assert other.get("k") == "theirs"


def test_with_transaction_ended_by_the_block_itself(connect):
    db = connect()
    with db.transaction():
        db.put("a", "1")
        db.rollback()
    with pytest.raises(NotFoundError):
        db.get("a")
    with db.transaction():
        db.put("a", "2")
        assert db.commit() == 1
    assert db.get("a") == "2"


def test_with_transaction_refuses_retries(connect):
    db = connect()
    with pytest.raises(ValueError, match="function form"):
        db.transaction(retries=2)
    assert not db.in_transaction


# -- transaction(fn, retries=N) -------------------------------------------------------------

def test_transaction_fn_retries_a_validation_conflict(connect):
    db, other = connect(), connect()
    db.put("counter", "10")
    seen = []

    def bump(tx: Client) -> int:
        value = int(tx.get("counter"))
        seen.append(value)
        if len(seen) == 1:
            other.put("counter", "20")  # a commit after our read: our COMMIT must fail
        tx.put("counter", str(value + 1))
        return value + 1

    assert db.transaction(bump, level="serializable", retries=3) == 21
    assert seen == [10, 20]
    assert not db.in_transaction
    assert other.get("counter") == "21"
    stats = db.stats()["transactions"]
    assert stats["conflicts"] == 1
    assert stats["by_level"]["serializable"] == {"started": 2, "committed": 1, "rolled_back": 1}


def test_transaction_fn_without_retries_raises_the_conflict(connect):
    db, other = connect(), connect()
    db.put("counter", "10")

    def bump(tx: Client) -> None:
        value = int(tx.get("counter"))
        other.put("counter", "20")
        tx.put("counter", str(value + 1))

    with pytest.raises(ConflictError):
        db.transaction(bump, level="serializable")
    assert not db.in_transaction
    assert other.get("counter") == "20"  # nothing of ours was applied


def test_transaction_fn_retries_a_write_conflict(connect):
    db, other = connect(), connect()
    other.start()
    other.put("k", "theirs")
    calls = []

    def write(tx: Client) -> str:
        calls.append(1)
        tx.put("side", str(len(calls)))
        try:
            tx.put("k", "mine")
        finally:
            if len(calls) == 1:
                other.rollback()  # releases k for the retry
        return "done"

    assert db.transaction(write, retries=1) == "done"
    assert len(calls) == 2
    assert (other.get("k"), other.get("side")) == ("mine", "2")


def test_transaction_fn_rolls_back_and_reraises_other_errors(connect):
    db, other = connect(), connect()
    calls = []

    def fail(tx: Client) -> None:
        calls.append(1)
        tx.put("a", "1")
        raise KeyError("not a conflict")

    with pytest.raises(KeyError):
        db.transaction(fail, retries=5)
    assert len(calls) == 1
    assert not db.in_transaction
    with pytest.raises(NotFoundError):
        other.get("a")


# -- the outcomes of COMMIT when the connection drops ---------------------------------------

def test_drop_after_commit_was_sent_is_commit_outcome_unknown(server, drop_proxy):
    proxy = drop_proxy(is_commit, "swallow")
    db = Client(port=proxy.port, timeout=TIMEOUT)
    db.start()
    db.put("k", "v")
    with pytest.raises(CommitOutcomeUnknown) as info:
        db.commit()
    error = info.value
    assert isinstance(error, ConnectionLost) and isinstance(error, ConnectionError)
    assert "may or may not have been committed" in str(error)
    assert db.closed and not db.in_transaction
    # The outcome really was unknown to the client: the server did commit.
    assert proxy.reply == b'{"status":"Ok","result":{"seq":1}}\n'
    assert server.connect().ask("GET k") == ok("v")


def test_drop_before_commit_is_plain_connection_lost(server, drop_proxy):
    proxy = drop_proxy(is_put, "before")
    db = Client(port=proxy.port, timeout=TIMEOUT)
    db.start()
    with pytest.raises(ConnectionLost) as info:
        db.put("k", "v")
    assert type(info.value) is ConnectionLost
    assert "rolled back" in str(info.value)
    with pytest.raises(ConnectionLost) as info:
        db.commit()
    assert type(info.value) is ConnectionLost  # COMMIT was never sent
    assert error_code(server.connect().ask("GET k")) == "NOT_FOUND"


def test_connection_closed_before_commit_is_sent_is_plain_connection_lost(server, drop_proxy):
    proxy = drop_proxy(is_put, "after")
    db = Client(port=proxy.port, timeout=TIMEOUT)
    db.start()
    db.put("k", "v")  # answered; then the proxy closes the connection
    assert proxy.dropped.wait(TIMEOUT)
    # Wait for the close to reach the client's socket (it is readable at end of stream).
    assert select.select([db._sock], [], [], TIMEOUT)[0]
    with pytest.raises(ConnectionLost) as info:
        db.commit()
    assert type(info.value) is ConnectionLost
    assert "the server closed the connection" in str(info.value)
    assert error_code(server.connect().ask("GET k")) == "NOT_FOUND"


def test_any_other_command_notices_the_close_when_it_reads_the_reply(server, drop_proxy):
    proxy = drop_proxy(is_put, "after")
    db = Client(port=proxy.port, timeout=TIMEOUT)
    db.put("k", "v")  # answered; then the proxy closes the connection
    assert proxy.dropped.wait(TIMEOUT)
    assert select.select([db._sock], [], [], TIMEOUT)[0]
    with pytest.raises(ConnectionLost) as info:
        db.get("k")  # no probe before sending: the reply read meets the end of the stream
    assert type(info.value) is ConnectionLost
    assert db.closed
    with pytest.raises(ConnectionLost, match="is closed"):
        db.get("k")


def test_transaction_fn_never_retries_commit_outcome_unknown(server, drop_proxy):
    proxy = drop_proxy(is_commit, "swallow")
    db = Client(port=proxy.port, timeout=TIMEOUT)
    direct = server.connect()
    assert direct.ask("PUT counter 0") == ok()
    calls = []

    def bump(tx: Client) -> None:
        calls.append(1)
        tx.put("counter", str(int(tx.get("counter")) + 1))

    with pytest.raises(CommitOutcomeUnknown):
        db.transaction(bump, level="serializable", retries=3)
    assert len(calls) == 1
    assert direct.ask("GET counter") == ok("1")  # applied exactly once


def test_with_transaction_passes_commit_outcome_unknown_on(server, drop_proxy):
    proxy = drop_proxy(is_commit, "swallow")
    db = Client(port=proxy.port, timeout=TIMEOUT)
    with pytest.raises(CommitOutcomeUnknown), db.transaction():
        db.put("k", "v")
    assert server.connect().ask("GET k") == ok("v")


def test_pipeline_with_an_unanswered_commit_is_commit_outcome_unknown(server, drop_proxy):
    proxy = drop_proxy(is_commit, "swallow")
    db = Client(port=proxy.port, timeout=TIMEOUT)
    db.start()  # the proxy works in lock step, so send COMMIT on its own
    db.put("k", "v")
    with pytest.raises(CommitOutcomeUnknown, match="after 0 replies"):
        db.pipeline(["COMMIT"])
    assert server.connect().ask("GET k") == ok("v")
