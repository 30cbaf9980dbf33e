#!/usr/bin/env python3
"""Bank transfers, Jepsen style: money moves between accounts, the total must never change.

``ACCOUNTS`` accounts start with ``INITIAL_BALANCE`` each. Transfer clients (threads, each
with its own socket) move random amounts between two random accounts in transactions::

    START <level>, GET a, GET b, PUT a, PUT b, COMMIT

retrying on CONFLICT (a PUT conflict: ROLLBACK, then retry; a COMMIT conflict: the server
already rolled back, retry). Reader clients read every account in one transaction (GET all,
COMMIT). At snapshot and serializable every committed read-all and the final state sum to the
initial total (a read-all reads one snapshot and, since it writes nothing, always commits); at
read-committed they need not.

    python benchmarks/bank.py --clients 8 --seconds 5 --level serializable
    python benchmarks/bank.py --clients 8 --seconds 5 --level all

starts its own in-memory server on a free port (or uses ``--port`` of a running one, on
127.0.0.1) and prints throughput, abort rate and the invariants; ``--level all`` runs each
level in turn (each on a fresh server) and ends with a table of them. tests/test_bank.py runs
the same workload, bounded, and asserts the invariants.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import RawConn, ServerProcess

ACCOUNTS = 10
INITIAL_BALANCE = 100
LEVELS = ("read-committed", "snapshot", "serializable")
# Largest amount one transfer moves; small next to a balance, so most transfers are possible.
MAX_AMOUNT = 20


def account(number: int) -> str:
    """The key of account ``number``."""
    return f"acct{number}"


class UnexpectedReply(Exception):
    """The server answered something the workload has no rule for."""


@dataclass
class BankResult:
    """What one run did and what it saw; ``problems()`` lists every broken invariant."""

    level: str
    seconds: float = 0.0
    transfers: int = 0
    write_conflicts: int = 0
    commit_conflicts: int = 0
    reads: int = 0
    read_conflicts: int = 0
    # Totals of committed read-all transactions that were not the initial total.
    bad_read_totals: list[int] = field(default_factory=list)
    # Read-alls that saw a wrong total and then failed validation (what COMMIT protects from).
    torn_reads_refused: int = 0
    final: dict[str, int] = field(default_factory=dict)
    expected_total: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def transfer_attempts(self) -> int:
        """Transfers tried: committed ones plus every aborted try."""
        return self.transfers + self.write_conflicts + self.commit_conflicts

    @property
    def abort_rate(self) -> float:
        """The share of transfer attempts that ended in CONFLICT."""
        attempts = self.transfer_attempts
        return (attempts - self.transfers) / attempts if attempts else 0.0

    @property
    def read_abort_rate(self) -> float:
        """The share of read-all attempts whose COMMIT failed validation."""
        attempts = self.reads + self.read_conflicts
        return self.read_conflicts / attempts if attempts else 0.0

    def problems(self) -> list[str]:
        """Every broken invariant: wrong totals, negative balances, unexpected replies."""
        found = list(self.errors)
        if self.bad_read_totals:
            found.append(f"{len(self.bad_read_totals)} committed read-alls saw a total other "
                         f"than {self.expected_total}: {sorted(set(self.bad_read_totals))[:10]}")
        total = sum(self.final.values())
        if total != self.expected_total:
            found.append(f"final total is {total}, not {self.expected_total}")
        negative = {key: value for key, value in self.final.items() if value < 0}
        if negative:
            found.append(f"negative balances: {negative}")
        return found

    def summary(self) -> str:
        """A few lines for a person: throughput, abort rates, invariants."""
        secs = max(self.seconds, 1e-9)
        problems = self.problems()
        return "\n".join([
            f"level {self.level}: {self.seconds:.2f} s",
            f"  transfers: {self.transfers} committed, {self.transfers / secs:.0f}/s; abort "
            f"rate {self.abort_rate:.1%} ({self.write_conflicts} write conflicts, "
            f"{self.commit_conflicts} commit conflicts)",
            f"  read-alls: {self.reads} committed, {self.reads / secs:.0f}/s; abort rate "
            f"{self.read_abort_rate:.1%}; torn reads refused at COMMIT: "
            f"{self.torn_reads_refused}",
            f"  final total {sum(self.final.values())} (expected {self.expected_total})",
            "  invariants hold" if not problems else "  BROKEN: " + "; ".join(problems),
        ])


def setup_accounts(conn: RawConn, accounts: int = ACCOUNTS) -> None:
    """Give every account its initial balance (autocommit PUTs)."""
    for number in range(accounts):
        reply = conn.ask(f"PUT {account(number)} {INITIAL_BALANCE}")
        if reply != {"status": "Ok"}:
            raise UnexpectedReply(f"setting up {account(number)}: {reply}")


def read_balances(conn: RawConn, accounts: int = ACCOUNTS) -> dict[str, int]:
    """The committed balance of every account (autocommit GETs)."""
    return {account(n): _balance(conn.ask(f"GET {account(n)}")) for n in range(accounts)}


def _balance(reply: dict) -> int:
    if reply.get("status") != "Ok":
        raise UnexpectedReply(f"GET failed: {reply}")
    return int(reply["result"])


def _is_conflict(reply: dict) -> bool:
    return reply.get("status") == "Error" and reply.get("code") == "CONFLICT"


def _expect_ok(reply: dict, what: str) -> None:
    if reply.get("status") != "Ok":
        raise UnexpectedReply(f"{what}: {reply}")


class _Shared:
    """State the client threads share: counters under one lock, the deadline, the quota."""

    def __init__(self, result: BankResult, deadline: float, quota: int | None) -> None:
        self.result = result
        self.deadline = deadline
        self.quota = quota
        self.claimed = 0
        self.lock = threading.Lock()
        self.writers_done = threading.Event()

    def claim_transfer(self) -> bool:
        """Take one transfer from the quota; False when it is used up or time is over."""
        with self.lock:
            if self.quota is not None and self.claimed >= self.quota:
                return False
            if time.monotonic() >= self.deadline:
                return False
            self.claimed += 1
            return True

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the result's counter ``name``."""
        with self.lock:
            setattr(self.result, name, getattr(self.result, name) + amount)

    def fail(self, message: str) -> None:
        """Record an unexpected reply or error."""
        with self.lock:
            self.result.errors.append(message)


def _transfer_client(port: int, level: str, seed: int, accounts: int, shared: _Shared) -> None:
    rng = random.Random(seed)
    conn = RawConn(port)
    try:
        while shared.claim_transfer():
            src, dst = rng.sample(range(accounts), 2)
            amount = rng.randint(1, MAX_AMOUNT)
            while time.monotonic() < shared.deadline:
                outcome = _try_transfer(conn, level, account(src), account(dst), amount)
                shared.count(outcome)
                if outcome == "transfers":
                    break
    except (UnexpectedReply, OSError) as exc:
        shared.fail(f"transfer client {seed}: {exc}")
    finally:
        conn.close()


def _try_transfer(conn: RawConn, level: str, src: str, dst: str, amount: int) -> str:
    """One attempt; the name of the counter it adds to (``transfers`` if it committed)."""
    _expect_ok(conn.ask(f"START {level}"), "START")
    balance_src = _balance(conn.ask(f"GET {src}"))
    balance_dst = _balance(conn.ask(f"GET {dst}"))
    amount = min(amount, balance_src)  # never overdraw
    for key, value in ((src, balance_src - amount), (dst, balance_dst + amount)):
        reply = conn.ask(f"PUT {key} {value}")
        if _is_conflict(reply):
            _expect_ok(conn.ask("ROLLBACK"), "ROLLBACK after a write conflict")
            return "write_conflicts"
        _expect_ok(reply, f"PUT {key}")
    reply = conn.ask("COMMIT")
    if _is_conflict(reply):
        return "commit_conflicts"  # the server has rolled the transaction back
    _expect_ok(reply, "COMMIT")
    return "transfers"


def _reader_client(port: int, level: str, accounts: int, shared: _Shared) -> None:
    conn = RawConn(port)
    expected = shared.result.expected_total
    try:
        while not shared.writers_done.is_set() and time.monotonic() < shared.deadline:
            _expect_ok(conn.ask(f"START {level}"), "START")
            total = sum(_balance(conn.ask(f"GET {account(n)}")) for n in range(accounts))
            reply = conn.ask("COMMIT")
            if _is_conflict(reply):
                shared.count("read_conflicts")
                if total != expected:
                    shared.count("torn_reads_refused")
                continue
            _expect_ok(reply, "COMMIT of a read-all")
            with shared.lock:
                shared.result.reads += 1
                if total != expected:
                    shared.result.bad_read_totals.append(total)
    except (UnexpectedReply, OSError) as exc:
        shared.fail(f"reader client: {exc}")
    finally:
        conn.close()


def run_bank(port: int, *, level: str = "serializable", clients: int = 8, readers: int = 2,
             transfers: int | None = None, seconds: float = 10.0, seed: int = 0,
             accounts: int = ACCOUNTS) -> BankResult:
    """Set up the accounts, run the workload until ``transfers`` have committed (if given)
    or ``seconds`` have passed, and return what happened, final balances included.

    ``result.transfers`` says how many committed: fewer than ``transfers`` means time ran out.
    """
    result = BankResult(level=level, expected_total=accounts * INITIAL_BALANCE)
    admin = RawConn(port)
    setup_accounts(admin, accounts)
    started = time.monotonic()
    shared = _Shared(result, started + seconds, transfers)
    writers = [threading.Thread(target=_transfer_client,
                                args=(port, level, seed * 1000 + n, accounts, shared))
               for n in range(clients)]
    reading = [threading.Thread(target=_reader_client, args=(port, level, accounts, shared))
               for _ in range(readers)]
    for thread in writers + reading:
        thread.start()
    for thread in writers:
        thread.join()
    shared.writers_done.set()
    for thread in reading:
        thread.join()
    result.seconds = time.monotonic() - started
    result.final = read_balances(admin, accounts)
    admin.close()
    return result


def with_server(port: int | None, run: Callable[[int], object]) -> object:
    """``run(port)`` against ``port``, or against a new in-memory server on a free port that
    is stopped (by its PID) afterwards."""
    if port is not None:
        return run(port)
    with tempfile.TemporaryDirectory(prefix="kvloop-bench-") as tmp:
        server = ServerProcess(Path(tmp), "--in-memory")
        try:
            return run(server.port)
        finally:
            server.stop()


def table(results: list[BankResult]) -> str:
    """A Markdown table of runs: throughput and abort rates of transfers and read-alls, and
    whether the totals held."""
    lines = ["| level | transfers/s | transfer aborts | read-alls/s | read-all aborts | "
             "read-alls with a wrong total | final total |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        secs = max(r.seconds, 1e-9)
        lines.append(f"| {r.level} | {r.transfers / secs:.0f} | {r.abort_rate:.1%} | "
                     f"{r.reads / secs:.0f} | {r.read_abort_rate:.1%} | "
                     f"{len(r.bad_read_totals)} of {r.reads} | {sum(r.final.values())} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the bank workload from the command line; exit 1 if an invariant broke (at
    read-committed, where breaking them is expected, only on an unexpected reply)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="transfer clients (default 8)")
    p.add_argument("--readers", type=int, default=2, help="read-all clients (default 2)")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to run (default 5)")
    p.add_argument("--transfers", type=int, default=1_000_000,
                   help="stop after this many committed transfers (default 1000000)")
    p.add_argument("--level", choices=(*LEVELS, "all"), default="serializable",
                   help="isolation level, or all of them in turn (default serializable)")
    p.add_argument("--accounts", type=int, default=ACCOUNTS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, help="use a running server on 127.0.0.1:PORT")
    args = p.parse_args(argv)
    print(f"bank: {args.clients} transfer clients, {args.readers} readers, "
          f"{args.accounts} accounts")
    results = []
    for level in LEVELS if args.level == "all" else (args.level,):
        result = with_server(args.port, lambda port, level=level: run_bank(
            port, level=level, clients=args.clients, readers=args.readers,
            transfers=args.transfers, seconds=args.seconds, seed=args.seed,
            accounts=args.accounts))
        print(result.summary())
        results.append(result)
    if len(results) > 1:
        print(table(results))
    broken = [r for r in results if r.errors or (r.level != "read-committed" and r.problems())]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
