"""Bank transfers, Jepsen style: money moves between accounts, the total never changes.

The concurrent workload lives in benchmarks/bank.py (which runs it for longer); here it runs
bounded, at serializable, and the test asserts only invariants, never speed. A fixed
interleaving of two transfers then shows what read-committed allows and serializable refuses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import ok

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from bank import (
    ACCOUNTS,
    INITIAL_BALANCE,
    read_balances,
    run_bank,
    setup_accounts,
)

TOTAL = ACCOUNTS * INITIAL_BALANCE


def test_serializable_transfers_keep_the_total(start_server) -> None:
    """8 transfer clients and 4 read-all clients, 1000 committed transfers: every committed
    read-all and the final state sum to 1000, and no balance goes negative."""
    server = start_server("--in-memory")
    result = run_bank(server.port, level="serializable", clients=8, readers=4,
                      transfers=1000, seconds=40.0, seed=7)
    print("\n" + result.summary())
    assert result.errors == []
    assert result.transfers == 1000, "the deadline passed before every transfer committed"
    assert result.bad_read_totals == []
    assert sum(result.final.values()) == TOTAL
    assert min(result.final.values()) >= 0
    assert result.problems() == []
    # Readers must have committed something for their invariant to mean anything.
    assert result.reads >= 1


def test_serializable_bank_agrees_with_a_fresh_read(start_server) -> None:
    """The final balances the workload reports are what a new client reads."""
    server = start_server("--in-memory")
    result = run_bank(server.port, level="serializable", clients=8, readers=1,
                      transfers=100, seconds=20.0, seed=3)
    assert result.problems() == []
    conn = server.connect()
    assert read_balances(conn) == result.final


@pytest.mark.parametrize("level", ["read-committed", "snapshot", "serializable"])
def test_two_transfers_interleaved(server, level: str) -> None:
    """Both transfers read account 0; T1 moves 10 to account 1 and commits; T2 then writes
    account 0 from its stale read (moving 20 to account 2). Read-committed commits T2 and the
    total becomes 1010; snapshot and serializable refuse T2's write of account 0 (T1
    committed it after T2's snapshot: first committer wins), and T2's retry keeps 1000."""
    admin, t1, t2 = server.connect(), server.connect(), server.connect()
    setup_accounts(admin)
    seq = ACCOUNTS  # one autocommit PUT per account
    steps = [
        (t1, f"START {level}", ok()),
        (t1, "GET acct0", ok("100")),
        (t1, "GET acct1", ok("100")),
        (t2, f"START {level}", ok()),
        (t2, "GET acct0", ok("100")),
        (t2, "GET acct2", ok("100")),
        (t1, "PUT acct0 90", ok()),
        (t1, "PUT acct1 110", ok()),
        (t1, "COMMIT", ok({"seq": seq + 1})),
    ]
    for number, (conn, command, expected) in enumerate(steps, 1):
        assert conn.ask(command) == expected, f"step {number}: {command}"
    reply = t2.ask("PUT acct0 80")  # 100 - 20, from the stale read
    if level == "read-committed":
        assert reply == ok()
        assert t2.ask("PUT acct2 120") == ok()
        assert t2.ask("COMMIT") == ok({"seq": seq + 2})
        balances = read_balances(admin)
        assert (balances["acct0"], balances["acct1"], balances["acct2"]) == (80, 110, 120)
        assert sum(balances.values()) == TOTAL + 10  # T1's debit of account 0 is lost
        return
    assert reply["status"] == "Error" and reply["code"] == "CONFLICT"
    assert "'acct0'" in reply["mesg"] and "first committer wins" in reply["mesg"]
    assert t2.ask("GET acct0") == ok("100")  # still open, still its snapshot
    assert t2.ask("ROLLBACK") == ok()
    assert sum(read_balances(admin).values()) == TOTAL
    retry = [
        (t2, f"START {level}", ok()),
        (t2, "GET acct0", ok("90")),
        (t2, "GET acct2", ok("100")),
        (t2, "PUT acct0 70", ok()),
        (t2, "PUT acct2 120", ok()),
        (t2, "COMMIT", ok({"seq": seq + 2})),
    ]
    for number, (conn, command, expected) in enumerate(retry, 1):
        assert conn.ask(command) == expected, f"retry step {number}: {command}"
    balances = read_balances(admin)
    assert (balances["acct0"], balances["acct1"], balances["acct2"]) == (70, 110, 120)
    assert sum(balances.values()) == TOTAL
