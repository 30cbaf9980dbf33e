"""Read-committed isolation across several real connections to one server (SPEC §4).

No dirty reads, no dirty writes (CONFLICT at once, no waiting), rollback and disconnect
restore before-images, COMMIT is atomic and numbered.
"""

from __future__ import annotations

import socket

import pytest
from support import error_code, ok


def commit_seq(reply: dict) -> int:
    """The seq of a successful COMMIT reply."""
    assert reply["status"] == "Ok", reply
    assert set(reply["result"]) == {"seq"}, reply
    return reply["result"]["seq"]


def test_no_dirty_reads(server):
    writer, reader = server.connect(), server.connect()
    assert writer.ask("PUT over before") == ok()
    assert writer.ask("PUT del still-here") == ok()
    assert writer.ask("START") == ok()
    assert writer.ask("PUT over after") == ok()
    assert writer.ask("DEL del") == ok()
    assert writer.ask("PUT new created") == ok()
    # Others see the before-image, or nothing for a key the transaction created.
    assert reader.ask("GET over") == ok("before")
    assert reader.ask("GET del") == ok("still-here")
    assert error_code(reader.ask("GET new")) == "NOT_FOUND"
    # Inside a transaction of its own, too.
    assert reader.ask("START") == ok()
    assert reader.ask("GET over") == ok("before")
    assert error_code(reader.ask("GET new")) == "NOT_FOUND"
    assert reader.ask("COMMIT")["status"] == "Ok"


def test_read_your_own_writes(server):
    c = server.connect()
    c.ask("PUT k old")
    c.ask("START")
    c.ask("PUT k new value")
    assert c.ask("GET k") == ok("new value")
    c.ask("DEL k")
    assert error_code(c.ask("GET k")) == "NOT_FOUND"
    c.ask("PUT k again")
    assert c.ask("GET k") == ok("again")


def test_read_committed_sees_commits_made_during_the_transaction(server):
    a, b = server.connect(), server.connect()
    a.ask("PUT k 1")
    b.ask("START read-committed")
    assert b.ask("GET k") == ok("1")
    a.ask("PUT k 2")
    assert b.ask("GET k") == ok("2")  # latest committed value, not a snapshot
    assert b.ask("COMMIT")["status"] == "Ok"


@pytest.mark.parametrize("second_in_txn", [True, False], ids=["transactional", "autocommit"])
def test_second_writer_gets_conflict_at_once_with_no_effect(server, second_in_txn):
    first, second, observer = server.connect(), server.connect(), server.connect()
    first.ask("PUT k committed")
    first.ask("START")
    assert first.ask("PUT k first") == ok()
    if second_in_txn:
        assert second.ask("START") == ok()
        assert second.ask("PUT mine 1") == ok()
    for command in ("PUT k second", "DEL k"):
        reply = second.ask(command)
        assert error_code(reply) == "CONFLICT", reply
        assert "'k'" in reply["mesg"]
    # The failed statements had no effect.
    assert first.ask("GET k") == ok("first")
    assert observer.ask("GET k") == ok("committed")
    if second_in_txn:
        # The conflicting client's transaction is still open and can still commit.
        assert error_code(second.ask("START")) == "IN_TRANSACTION"
        assert second.ask("GET k") == ok("committed")
        assert second.ask("PUT mine 2") == ok()
        commit_seq(second.ask("COMMIT"))
        assert observer.ask("GET mine") == ok("2")
    commit_seq(first.ask("COMMIT"))
    assert observer.ask("GET k") == ok("first")
    # Once the first writer is done the key is free.
    assert second.ask("PUT k second") == ok()
    assert observer.ask("GET k") == ok("second")


def test_rollback_restores_overwritten_deleted_and_created_keys(server):
    c, other = server.connect(), server.connect()
    c.ask("PUT over o1")
    c.ask("PUT del d1")
    c.ask("START")
    c.ask("PUT over o2")
    c.ask("PUT over o3")
    c.ask("DEL del")
    c.ask("PUT new n1")
    assert c.ask("ROLLBACK") == ok()
    for conn in (c, other):
        assert conn.ask("GET over") == ok("o1")
        assert conn.ask("GET del") == ok("d1")
        assert error_code(conn.ask("GET new")) == "NOT_FOUND"
    # The keys are free again.
    assert other.ask("PUT over x") == ok()
    assert other.ask("PUT new y") == ok()


@pytest.mark.parametrize("how", ["close", "half-close", "quit"])
def test_disconnect_mid_transaction_rolls_back_and_frees_keys(server, how):
    c, other = server.connect(), server.connect()
    c.ask("PUT over o1")
    c.ask("START")
    c.ask("PUT over o2")
    c.ask("PUT new n")
    c.ask("DEL over2")
    assert error_code(other.ask("PUT over blocked")) == "CONFLICT"
    if how == "close":
        c.close()
    elif how == "half-close":
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_until_closed() == b""
    else:
        c.send(b"QUIT\n")
        assert c.read_until_closed() == b'{"status":"Ok"}\n'
    # The server notices the disconnect in its own time; poll by awaiting replies.
    for _ in range(10_000):
        reply = other.ask("PUT over mine")
        if error_code(reply) != "CONFLICT":
            break
    assert reply == ok()
    assert error_code(other.ask("GET new")) == "NOT_FOUND"
    assert other.ask("PUT new free") == ok()
    assert other.ask("GET over") == ok("mine")


def test_commit_makes_all_writes_visible_at_once(server):
    writer, reader = server.connect(), server.connect()
    keys = [f"k{i}" for i in range(20)]
    writer.ask("START")
    for key in keys:
        assert writer.ask(f"PUT {key} v-{key}") == ok()
    # Before COMMIT: none of them.
    reader.send("".join(f"GET {key}\n" for key in keys).encode())
    assert [error_code(r) for r in reader.replies(len(keys))] == ["NOT_FOUND"] * len(keys)
    commit_seq(writer.ask("COMMIT"))
    # After COMMIT: all of them.
    reader.send("".join(f"GET {key}\n" for key in keys).encode())
    assert reader.replies(len(keys)) == [ok(f"v-{key}") for key in keys]


def test_commit_seq_increases_across_connections(server):
    conns = [server.connect() for _ in range(4)]
    seqs = []
    for round_ in range(3):
        for i, c in enumerate(conns):
            c.ask("START")
            c.ask(f"PUT c{i} {round_}")
            seqs.append(commit_seq(c.ask("COMMIT")))
        conns[0].ask("PUT auto x")  # autocommits take a number too
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    # Each commit (autocommit included) takes exactly the next number.
    assert seqs[4] - seqs[3] == 2
    assert seqs[1] - seqs[0] == 1
    # A read-only commit gets the current number without taking a new one.
    c = conns[1]
    c.ask("START")
    c.ask("GET c0")
    current = commit_seq(c.ask("COMMIT"))
    c.ask("START")
    c.ask("PUT fresh 1")
    assert commit_seq(c.ask("COMMIT")) == current + 1


def test_serializable_commit_fails_when_a_read_key_changed(server):
    a, b = server.connect(), server.connect()
    a.ask("PUT x 1")
    assert b.ask("START serializable") == ok()
    assert b.ask("GET x") == ok("1")
    assert b.ask("PUT y from-b") == ok()
    a.ask("PUT x 2")
    reply = b.ask("COMMIT")
    assert error_code(reply) == "CONFLICT"
    assert "'x'" in reply["mesg"] and "rolled back" in reply["mesg"]
    assert error_code(a.ask("GET y")) == "NOT_FOUND"
    assert error_code(b.ask("ROLLBACK")) == "NO_TRANSACTION"  # already rolled back
    assert a.ask("PUT y free") == ok()


def test_isolation_flag_sets_the_default_level(start_server):
    server = start_server("--isolation", "serializable")
    a, b = server.connect(), server.connect()
    a.ask("PUT x 1")
    b.ask("START")
    b.ask("GET x")
    b.ask("PUT y 1")
    a.ask("PUT x 2")
    assert error_code(b.ask("COMMIT")) == "CONFLICT"
    b.ask("START read_committed")
    b.ask("GET x")
    b.ask("PUT y 1")
    a.ask("PUT x 3")
    commit_seq(b.ask("COMMIT"))
