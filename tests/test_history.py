"""Serializability of recorded histories, and proof that the checker can fail.

Random serializable transactions from several connections, interleaved command by command
by a seeded scheduler, must form an acyclic dependency graph with every read allowed. The
checker is shown able to fail: on hand-made histories with each anomaly, and on the same
random workload at read-committed, which (deterministically, for a fixed seed) commits a
cycle.
"""

from __future__ import annotations

import pytest
from history import COMMITTED, DELETE, READ, WRITE, Edge, History, check, run_random_history

# -- hand-made histories -----------------------------------------------------------------------


def test_write_skew_is_a_cycle() -> None:
    """T1 and T2 both see x and y missing, then each creates one: two rw edges, a G2 cycle."""
    h = History()
    t1, t2 = h.begin(1), h.begin(2)
    t1.read("x", None).read("y", None)
    t2.read("x", None).read("y", None)
    t1.write("x", "t1-1")
    t2.write("y", "t2-1")
    t1.commit(1)
    t2.commit(2)
    result = check(h)
    assert result.errors == []
    assert set(result.cycle) == {Edge(1, 2, "rw", "y"), Edge(2, 1, "rw", "x")}
    assert result.cycle_kind() == "G2-item"
    assert not result.ok
    assert "cycle (G2-item)" in result.describe()


def test_lost_update_is_a_cycle() -> None:
    """Both read x=0; T1 writes and commits, then T2 writes from its stale read: T2 -rw-> T1
    and T1 -ww-> T2, a G-single cycle."""
    h = History({"x": "0"})
    t1, t2 = h.begin(1), h.begin(2)
    t1.read("x", "0")
    t2.read("x", "0")
    t1.write("x", "t1-1").commit(1)
    t2.write("x", "t2-1").commit(2)
    result = check(h)
    assert result.errors == []
    assert set(result.cycle) == {Edge(1, 2, "ww", "x"), Edge(2, 1, "rw", "x")}
    assert result.cycle_kind() == "G-single"


def test_snapshot_read_of_an_overwritten_version_is_an_anti_dependency() -> None:
    """T1 takes its snapshot (reads x=0), T2 overwrites x and commits, T1 reads y at its
    snapshot (the initial y, though T2 changed it too) and writes z: reading the versions T2
    replaced makes T1 -rw-> T2, and no cycle."""
    h = History({"x": "0", "y": "0"})
    t1 = h.begin(1, snapshot=True).read("x", "0")
    h.begin(2).write("x", "t2-1").write("y", "t2-2").commit(1)
    t1.read("y", "0").write("z", "t1-1").commit(2)
    result = check(h)
    assert result.ok, result.describe()
    assert Edge(1, 2, "rw", "y") in result.edges
    assert Edge(1, 2, "rw", "x") in result.edges


def test_snapshot_read_must_be_the_version_at_the_snapshot() -> None:
    """A snapshot transaction that reads a value committed after its first operation, or the
    latest value instead of its snapshot's, is reported; the same reads without a snapshot
    are fine."""
    for snapshot in (True, False):
        h = History({"x": "0"})
        t1 = h.begin(1, snapshot=snapshot).read("y", None)
        h.begin(2).write("x", "t2-1").commit(1)
        t1.read("x", "t2-1").commit(1)
        result = check(h)
        if snapshot:
            assert any("before T2 committed it at its snapshot" in e for e in result.errors), \
                result.describe()
        else:
            assert result.ok, result.describe()
    h = History({"x": "0"})
    t1 = h.begin(1, snapshot=True).read("y", None)
    h.begin(2).write("x", "t2-1").commit(1)
    t1.read("x", "0").commit(1)  # the right one: the version at its snapshot
    assert check(h).ok


def test_snapshot_write_skew_is_a_cycle() -> None:
    """Snapshot reads do not hide write skew: both read x and y at their snapshots, each
    writes one; the checker finds the two rw edges."""
    h = History({"x": "1", "y": "1"})
    t1, t2 = h.begin(1, snapshot=True), h.begin(2, snapshot=True)
    t1.read("x", "1").read("y", "1")
    t2.read("x", "1").read("y", "1")
    t1.write("x", "t1-1").commit(1)
    t2.write("y", "t2-1").commit(2)
    result = check(h)
    assert result.errors == []
    assert result.cycle_kind() == "G2-item"


def test_serial_history_with_deletes_is_clean() -> None:
    """A NOT_FOUND read after a DEL reads the delete's version: wr from the deleter, rw to the
    next writer; a serial history has no cycle and no error."""
    h = History()
    h.begin(1).write("x", "t1-1").commit(1)
    h.begin(2).read("x", "t1-1").delete("x").commit(2)
    h.begin(3).read("x", None).commit(2)  # read-only: the current seq
    h.begin(4).read("x", None).write("x", "t4-2").read("x", "t4-2").commit(3)
    result = check(h)
    assert result.ok, result.describe()
    assert Edge(2, 3, "wr", "x") in result.edges
    assert Edge(3, 4, "rw", "x") in result.edges
    assert Edge(1, 2, "wr", "x") in result.edges
    assert Edge(2, 4, "ww", "x") in result.edges


def test_failed_write_and_aborted_txn_do_not_count() -> None:
    """A PUT that got CONFLICT and an aborted transaction create no version."""
    h = History({"x": "0"})
    t1 = h.begin(1)
    t1.write("x", "t1-1", ok=False).read("x", "0").commit(0)
    h.begin(2).write("x", "t2-1").abort()
    h.begin(3).read("x", "0").commit(0)
    result = check(h)
    assert result.ok, result.describe()
    assert result.edges == []


@pytest.mark.parametrize("name, build, expected", [
    ("G1a aborted read", lambda h: (
        h.begin(1).write("x", "t1-1"), h.begin(2).read("x", "t1-1").commit(0),
        h.txns[0].abort()), "written by aborted T1 (G1a)"),
    ("G1a failed write", lambda h: (
        h.begin(1).write("x", "t1-1", ok=False).commit(0),
        h.begin(2).read("x", "t1-1").commit(0)), "got CONFLICT (G1a)"),
    ("G1b intermediate read", lambda h: (
        h.begin(1).write("x", "t1-1"), h.begin(2).read("x", "t1-1"),
        h.txns[0].write("x", "t1-2").commit(1), h.txns[1].commit(1)),
     "intermediate value of T1 (G1b)"),
    ("dirty read of a later commit", lambda h: (
        h.begin(1).write("x", "t1-1"), h.begin(2).read("x", "t1-1").commit(0),
        h.txns[0].commit(1)), "before T1 committed it"),
    ("stale read", lambda h: (
        h.begin(1).write("x", "t1-1").commit(1), h.begin(2).write("x", "t2-1").commit(2),
        h.begin(3).read("x", "t1-1").commit(2)), "a stale value"),
    ("stale NOT_FOUND", lambda h: (
        h.begin(1).write("x", "t1-1").commit(1), h.begin(2).read("x", None).commit(1)),
     "had the committed value 't1-1'"),
    ("own write not seen", lambda h: (
        h.begin(1).write("x", "t1-1").read("x", None).commit(1),), "its own last write"),
    ("read-only commit seq", lambda h: (
        h.begin(1).write("x", "t1-1").commit(1), h.begin(2).read("x", "t1-1").commit(5)),
     "read-only T2 committed with seq 5"),
    ("seq going back", lambda h: (
        h.begin(1).write("x", "t1-1").commit(2), h.begin(2).write("y", "t2-1").commit(1)),
     "not above the previous commit's 2"),
])
def test_checker_reports_forbidden_reads(name: str, build, expected: str) -> None:
    """Each hand-made violation is reported as an error naming what went wrong."""
    h = History()
    build(h)
    result = check(h)
    assert not result.ok
    assert any(expected in error for error in result.errors), result.describe()


# -- recorded histories from a real server ------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_serializable_history_has_no_cycle(start_server, seed: int) -> None:
    """500 random serializable transactions (5 connections, 4 keys, GET/PUT/DEL): every read is
    allowed and the committed ones form no cycle."""
    server = start_server("--in-memory")
    history = run_random_history(server.connect, txns=500, clients=5, keys=4, seed=seed)
    result = check(history)
    print(f"\nseed {seed}: {result.describe()}")
    assert result.ok, result.describe()
    assert len(history.txns) == 500
    assert result.committed >= 100 and result.aborted >= 1
    # The run exercised what the checker is for: deletes, failed writes, NOT_FOUND reads.
    committed_ops = [op for t in history.txns if t.status == COMMITTED for op in t.ops]
    assert any(op.kind == DELETE and op.ok for op in committed_ops)
    assert any(op.kind == WRITE and not op.ok for op in committed_ops)
    assert any(op.kind == READ and op.value is None for op in committed_ops)
    assert {e.kind for e in result.edges} == {"ww", "wr", "rw"}


def test_snapshot_history_reads_are_allowed(start_server) -> None:
    """The random workload at snapshot: every read is the version at its snapshot (or its
    own write), checked read by read; any cycle has two or more rw edges (write skew),
    never fewer: snapshot isolation prevents G0, G1c and G-single."""
    server = start_server("--in-memory")
    history = run_random_history(server.connect, txns=400, clients=5, keys=4, seed=4,
                                 level="snapshot")
    result = check(history)
    print(f"\n{result.describe()}")
    assert result.errors == []
    assert result.cycle is None or result.cycle_kind() == "G2-item"


@pytest.mark.parametrize("level", ["snapshot", "serializable"])
def test_write_skew_workload(start_server, level: str) -> None:
    """Each transaction reads two keys and writes one of them, the shape of write skew: at
    snapshot the checker finds a G2-item cycle (so it is not vacuous on snapshot reads); at
    serializable the same workload commits none."""
    server = start_server("--in-memory")
    history = run_random_history(server.connect, txns=300, clients=5, keys=3, seed=5,
                                 level=level, workload="write-skew")
    result = check(history)
    print(f"\n{level}: {result.describe()}")
    assert result.errors == []
    assert result.committed >= 50
    if level == "snapshot":
        assert result.cycle_kind() == "G2-item"
        for before, after in zip(result.cycle, result.cycle[1:] + result.cycle[:1]):
            assert before.dst == after.src
    else:
        assert result.cycle is None


def test_same_seed_same_history(start_server) -> None:
    """The scheduler is seeded and the server deterministic: a run is reproducible."""
    runs = []
    for _ in range(2):
        server = start_server("--in-memory")
        history = run_random_history(server.connect, txns=100, seed=9)
        runs.append([str(txn) for txn in history.txns])
    assert runs[0] == runs[1]


def test_read_committed_history_has_a_cycle(start_server) -> None:
    """The same workload at read-committed: every read is still allowed (committed, latest),
    but with seed 1 it commits a dependency cycle, which the checker finds."""
    server = start_server("--in-memory")
    history = run_random_history(server.connect, txns=300, clients=5, keys=4, seed=1,
                                 level="read-committed")
    result = check(history)
    print(f"\n{result.describe()}")
    assert result.errors == []
    assert result.cycle is not None
    assert any(edge.kind == "rw" for edge in result.cycle)
    # The reported cycle really is one: each edge starts where the previous one ended.
    for before, after in zip(result.cycle, result.cycle[1:] + result.cycle[:1]):
        assert before.dst == after.src
