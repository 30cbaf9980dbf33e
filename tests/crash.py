"""Crash testing: writers that record every acknowledgement, kill -9, and a recovery check.

Used by tests/test_crash.py (a few dozen kill points) and benchmarks/crash_stress.py (hundreds).

Each round, writer threads (one connection each) alternate numbered autocommit PUTs and
three-key transactions, pipelining each transaction's lines, and record each acknowledgement.
The server is killed with SIGKILL at a random moment. After a restart every acknowledged write
must be there, and every transaction ever sent must be there entirely or not at all. Keys are
unique per write (round, writer, number), so the check needs no ordering.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from support import RawConn, ServerProcess

TXN_KEYS = 3


@dataclass
class Acks:
    """What the writers were told, over every round so far."""

    puts: dict[str, str] = field(default_factory=dict)  # acknowledged autocommit PUTs
    acked_txns: list[list[str]] = field(default_factory=list)  # keys of committed txns
    sent_txns: list[list[str]] = field(default_factory=list)  # keys of every txn sent
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        """Acknowledged commits."""
        return len(self.puts) + len(self.acked_txns)


def value_of(key: str) -> str:
    """The value written under ``key`` (derived from it, so the check knows it)."""
    return f"v-{key}-{'x' * (len(key) % 7)}"


def _writer(port: int, prefix: str, acks: Acks, stop: threading.Event) -> None:
    try:
        conn = RawConn(port, timeout=10)
    except OSError:
        return
    try:
        number = 0
        while not stop.is_set():
            number += 1
            key = f"{prefix}:p{number}"
            conn.send(f"PUT {key} {value_of(key)}\n".encode())
            if conn.reply() == {"status": "Ok"}:
                with acks.lock:
                    acks.puts[key] = value_of(key)
            keys = [f"{prefix}:t{number}:{i}" for i in range(TXN_KEYS)]
            with acks.lock:
                acks.sent_txns.append(keys)
            lines = ["START", *(f"PUT {k} {value_of(k)}" for k in keys), "COMMIT"]
            conn.send(("\n".join(lines) + "\n").encode())
            replies = conn.replies(len(lines))
            if replies[-1].get("status") == "Ok":
                with acks.lock:
                    acks.acked_txns.append(keys)
    except (OSError, ValueError):
        pass  # the server was killed mid-conversation: expected
    finally:
        conn.close()


def write_then_kill(server: ServerProcess, acks: Acks, round_id: int, rng: random.Random,
                    writers: int = 4, max_delay: float = 0.3) -> None:
    """Run writers against ``server`` and SIGKILL it after a random delay."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(server.port, f"r{round_id}w{w}", acks, stop),
                         daemon=True)
        for w in range(writers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.02, max_delay))
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(10)


def check_recovered(server: ServerProcess, rounds: Iterable[Acks]) -> list[str]:
    """Problems found on a restarted server: lost acknowledged writes, partial transactions."""
    problems: list[str] = []
    for acks in rounds:
        keys = list(acks.puts)
        for txn in acks.sent_txns:
            keys.extend(txn)
        found = _get_all(server.port, keys)
        problems += [f"acknowledged PUT {k} lost (got {found[k]!r})"
                     for k, v in acks.puts.items() if found[k] != v]
        acked = {tuple(txn) for txn in acks.acked_txns}
        for txn in acks.sent_txns:
            present = [k for k in txn if found[k] == value_of(k)]
            if tuple(txn) in acked and len(present) != len(txn):
                problems.append(f"acknowledged transaction {txn} lost keys: has only {present}")
            elif present and len(present) != len(txn):
                problems.append(f"partial transaction {txn}: only {present} recovered")
    return problems


def _get_all(port: int, keys: Iterable[str], batch: int = 2000) -> dict[str, str | None]:
    keys = list(keys)
    found: dict[str, str | None] = {}
    conn = RawConn(port, timeout=30)
    try:
        for start in range(0, len(keys), batch):
            chunk = keys[start:start + batch]
            conn.send("".join(f"GET {k}\n" for k in chunk).encode())
            for key, reply in zip(chunk, conn.replies(len(chunk))):
                found[key] = reply.get("result") if reply.get("status") == "Ok" else None
    finally:
        conn.close()
    return found


def crash_rounds(start: Callable[[], ServerProcess], rounds: int, seed: int,
                 writers: int = 4, report: Callable[[str], None] | None = None,
                 full_check_every: int = 10) -> list[Acks]:
    """Kill -9 a server ``rounds`` times on one data folder, checking recovery after each.

    ``start()`` starts a server on that folder. After each kill the last two rounds' writes
    are checked, and every ``full_check_every`` kills (and at the end) every round's.
    Raises AssertionError on the first problem; returns what each round acknowledged.
    """
    rng = random.Random(seed)
    done: list[Acks] = []
    for round_id in range(rounds + 1):
        server = start()
        full = round_id % full_check_every == 0 or round_id == rounds
        problems = check_recovered(server, done if full else done[-2:])
        assert not problems, f"after kill {round_id}: {problems[:5]}"
        if round_id == rounds:
            server.stop()
            break
        acks = Acks()
        write_then_kill(server, acks, round_id, rng, writers)
        done.append(acks)
        if report is not None:
            total = sum(a.count() for a in done)
            report(f"kill {round_id + 1}/{rounds}: {total} commits acknowledged so far")
    return done


def data_folder_size(folder: Path) -> int:
    """Bytes of every file in ``folder``."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
