"""The isolation matrix, Hermitage style: each anomaly as a fixed interleaving of real clients.

Every cell is a table of steps ``(client, command, expected reply)`` run over real
connections to a real server, once per isolation level. Each client (T1, T2, T3) first sends
``START <level>`` (in order of first appearance, before the first step), then the steps run
one at a time: a command is sent and its reply awaited and compared exactly (status, code,
result) before the next step. The initial committed state is x=10, y=20 (autocommit PUTs, so
commit seq 1 and 2); keys a, b and k start missing. After the steps a fresh client reads the
committed state and compares it with the cell's ``final`` state.

Anomalies follow Adya's and Hermitage's names (G0, G1a, G1b, G1c, OTV, P4, G-single,
G2-item), plus the same with DEL, where a key is deleted or created. "Prevented" is shown
concretely: a write gets CONFLICT at once, a COMMIT fails validation, or the other client
reads the before-image. "Allowed" is shown by the anomalous state being reached (the COMMIT
that serializable refuses succeeds under read-committed).

``python tests/test_anomalies.py`` prints the matrix that docs/isolation.md holds; a test
checks that the document still matches these tables.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import pytest
from support import RawConn, ok

RC = "read-committed"
SI = "snapshot"
SER = "serializable"
LEVELS = (RC, SI, SER)
SHORT = {RC: "RC", SI: "SI", SER: "SER"}
INITIAL = (("x", "10"), ("y", "20"))
INITIAL_SEQ = len(INITIAL)
DOC = Path(__file__).resolve().parent.parent / "docs" / "isolation.md"


# -- expected replies ----------------------------------------------------------------------

BUSY, FIRST_COMMITTER, VALIDATION = "busy", "first committer", "validation"
# What each kind of CONFLICT's mesg says, besides the key.
CONFLICT_WORDS = {
    BUSY: "being written by another open transaction",
    FIRST_COMMITTER: "first committer wins",
    VALIDATION: "rolled back",
}


@dataclass(frozen=True)
class Conflict:
    """A CONFLICT reply naming ``key``, of one ``kind``: a write hitting another's intent
    (``busy``), a write of a key committed after the writer's snapshot (``first committer``;
    both leave the writer's transaction open), or a COMMIT that failed validation, so the
    server rolled the transaction back (``validation``)."""

    key: str
    kind: str

    def matches(self, reply: dict) -> bool:
        """True if ``reply`` is exactly this error: status, code, a mesg naming the key and
        the kind, and saying "rolled back" only for a failed validation."""
        if set(reply) != {"status", "code", "mesg"}:
            return False
        mesg = reply["mesg"]
        return (reply["status"] == "Error" and reply["code"] == "CONFLICT"
                and f"'{self.key}'" in mesg and CONFLICT_WORDS[self.kind] in mesg
                and ("rolled back" in mesg) == (self.kind == VALIDATION))


@dataclass(frozen=True)
class By:
    """An expectation that depends on the isolation level."""

    rc: object
    si: object
    ser: object

    def at(self, level: str) -> object:
        """The expectation at ``level``."""
        return {RC: self.rc, SI: self.si, SER: self.ser}[level]


def rc_else(rc: object, snap: object) -> By:
    """``rc`` at read-committed, ``snap`` at both snapshot levels."""
    return By(rc, snap, snap)


Expect = Union[dict, Conflict, By]
Step = tuple[str, str, Expect]
State = dict[str, Optional[str]]

OK = ok()
NOT_FOUND = {"status": "Error", "code": "NOT_FOUND", "mesg": "Key not found"}


def val(value: str) -> dict:
    """GET's reply for ``value``."""
    return ok(value)


def seq(number: int) -> dict:
    """COMMIT's reply with commit sequence number ``number``."""
    return ok({"seq": number})


def scan(keys: list[str], values: list[str] | None = None) -> dict:
    """SCAN's reply listing ``keys`` (and their ``values``, with VALUES), no more after them."""
    result: dict = {"keys": keys, "more": False}
    if values is not None:
        result["values"] = values
    return ok(result)


def busy(key: str) -> Conflict:
    """The immediate CONFLICT of a write to ``key``, held by another open transaction."""
    return Conflict(key, BUSY)


def first(key: str) -> Conflict:
    """The CONFLICT of a write to ``key``, committed by another after the writer's snapshot."""
    return Conflict(key, FIRST_COMMITTER)


def aborted(key: str) -> Conflict:
    """COMMIT's CONFLICT: ``key`` changed after it was read; the transaction was rolled back."""
    return Conflict(key, VALIDATION)


def matches(expected: object, reply: dict) -> bool:
    """True if ``reply`` is exactly the ``expected`` reply."""
    if isinstance(expected, Conflict):
        return expected.matches(reply)
    return reply == expected


# -- the cells -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One anomaly: its steps, the final committed state, the levels that allow it, and
    what each level shows (``outcomes``: read-committed, snapshot, serializable)."""

    anomaly: str
    title: str
    steps: Sequence[Step]
    final: State | By
    allowed_at: frozenset[str]
    outcomes: tuple[str, str, str]

    def clients(self) -> list[str]:
        """The clients in order of first appearance (each STARTs in this order)."""
        seen: list[str] = []
        for client, _, _ in self.steps:
            if client not in seen:
                seen.append(client)
        return seen

    def final_at(self, level: str) -> State:
        """The committed state expected after the steps at ``level``."""
        return self.final.at(level) if isinstance(self.final, By) else self.final

    def outcome_at(self, level: str) -> str:
        """What ``level`` shows, in words."""
        return self.outcomes[LEVELS.index(level)]


S = INITIAL_SEQ  # the commit seq before the first step
NONE: frozenset[str] = frozenset()
AT_RC = frozenset({RC})
AT_RC_SI = frozenset({RC, SI})
SAME = "same as read-committed"

CELLS: list[Cell] = [
    Cell("G0", "dirty write", [
        ("T1", "PUT x 11", OK),
        ("T2", "PUT y 22", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T1", "PUT y 21", busy("y")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "PUT x 12", rc_else(OK, first("x"))),
        ("T2", "COMMIT", seq(S + 2)),
    ], rc_else({"x": "12", "y": "22"}, {"x": "11", "y": "22"}), NONE, (
        "both crossing writes get CONFLICT at once and have no effect; x is T1 then T2, "
        "y is T2 only: no write cycle",
        "the crossing writes get CONFLICT as in read-committed; T2's retry of x is refused "
        "too (T1 committed x after T2's snapshot): x is T1's, y is T2's",
        "same as snapshot")),
    Cell("G1a", "aborted read", [
        ("T1", "PUT x 101", OK),
        ("T2", "GET x", val("10")),
        ("T1", "ROLLBACK", OK),
        ("T2", "GET x", val("10")),
        ("T2", "COMMIT", seq(S)),
    ], {"x": "10"}, NONE, (
        "T2 reads the before-image 10, never the aborted 101", SAME, SAME)),
    Cell("G1b", "intermediate read", [
        ("T1", "PUT x 101", OK),
        ("T2", "GET x", val("10")),
        ("T1", "PUT x 11", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "GET x", rc_else(val("11"), val("10"))),
        ("T2", "COMMIT", seq(S + 1)),
    ], {"x": "11"}, NONE, (
        "T2 reads 10 then the committed 11, never the intermediate 101",
        "T2 reads 10 both times (its snapshot), never 101",
        "same as snapshot; T2 only read, so its COMMIT succeeds")),
    Cell("G1c", "circular information flow", [
        ("T1", "PUT x 11", OK),
        ("T2", "PUT y 22", OK),
        ("T1", "GET y", val("20")),
        ("T2", "GET x", val("10")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), seq(S + 2), aborted("x"))),
    ], By({"x": "11", "y": "22"}, {"x": "11", "y": "22"}, {"x": "11", "y": "20"}), NONE, (
        "each reads the other's before-image, so neither reads from the other: no "
        "write-read cycle (the pair is a write skew, which read-committed allows)",
        "same as read-committed (each reads the other's key at its snapshot; the pair is a "
        "write skew, which snapshot allows)",
        "reads as in read-committed; T2 wrote, and x (which it read) was committed after "
        "its snapshot, so its COMMIT fails validation")),
    Cell("OTV", "observed transaction vanishes", [
        ("T1", "PUT x 11", OK),
        ("T1", "PUT y 19", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T3", "GET x", val("11")),
        ("T2", "PUT x 12", rc_else(OK, first("x"))),
        ("T2", "PUT y 18", rc_else(OK, first("y"))),
        ("T3", "GET y", val("19")),
        ("T2", "COMMIT", rc_else(seq(S + 2), seq(S + 1))),
        ("T3", "GET x", rc_else(val("12"), val("11"))),
        ("T3", "GET y", rc_else(val("18"), val("19"))),
        ("T3", "COMMIT", rc_else(seq(S + 2), seq(S + 1))),
    ], rc_else({"x": "12", "y": "18"}, {"x": "11", "y": "19"}), NONE, (
        "having seen T1's x=11, T3 still sees T1's y=19 (the before-image of T2's write), "
        "not 20: T1 does not vanish",
        "T2's writes are refused (T1 committed x and y after T2's snapshot), so T2 commits "
        "nothing; T3 sees T1's x=11 and y=19 throughout",
        "same as snapshot")),
    Cell("PMP-key", "predicate-many-preceders, on one key (the predicate: k exists)", [
        ("T1", "GET k", NOT_FOUND),
        ("T2", "PUT k 30", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "GET k", rc_else(val("30"), NOT_FOUND)),
        ("T1", "COMMIT", seq(S + 1)),
    ], {"k": "30"}, AT_RC, (
        "T1 asks the same question twice and gets two answers: k missing, then k=30",
        "T1 sees k missing both times (its snapshot is before T2's commit)",
        "same as snapshot; T1 only read, so its COMMIT succeeds (it is ordered before T2)")),
    Cell("P4", "lost update", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T1", "PUT x 11", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "PUT x 12", rc_else(OK, first("x"))),
        ("T2", "COMMIT", rc_else(seq(S + 2), seq(S + 1))),
    ], rc_else({"x": "12"}, {"x": "11"}), AT_RC, (
        "T2's first write gets CONFLICT; its retry after T1's commit, computed from its "
        "stale read (10+2), commits: x=12, T1's +1 is lost (a serial order gives 13)",
        "T2's retried write is refused: T1 committed x after T2's snapshot (first committer "
        "wins); T2 must retry from START",
        "same as snapshot")),
    Cell("G-single", "read skew", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T2", "GET y", val("20")),
        ("T2", "PUT x 12", OK),
        ("T2", "PUT y 18", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "GET y", rc_else(val("18"), val("20"))),
        ("T1", "COMMIT", seq(S + 1)),
    ], {"x": "12", "y": "18"}, AT_RC, (
        "T1 sees x=10 and y=18 (total 28, never a committed total) and commits",
        "T1 reads y=20 from its snapshot: x=10, y=20 (total 30), as before T2",
        "same as snapshot; T1 only read, so its COMMIT succeeds")),
    Cell("G2-item", "write skew", [
        ("T1", "GET x", val("10")),
        ("T1", "GET y", val("20")),
        ("T2", "GET x", val("10")),
        ("T2", "GET y", val("20")),
        ("T1", "PUT x 0", OK),
        ("T2", "PUT y 0", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), seq(S + 2), aborted("x"))),
    ], By({"x": "0", "y": "0"}, {"x": "0", "y": "0"}, {"x": "0", "y": "20"}), AT_RC_SI, (
        "each zeroes its key after seeing the other's positive; both commit: x=0, y=0, "
        "which no serial order produces",
        "same as read-committed: they write different keys, so first committer wins does "
        "not apply",
        "T2's COMMIT fails validation (x changed after T2's snapshot): x=0, y=20")),
    Cell("G0-del", "dirty write with DEL", [
        ("T1", "DEL x", OK),
        ("T1", "PUT k 1", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T2", "DEL k", busy("k")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "DEL k", rc_else(OK, first("k"))),
        ("T2", "PUT x 12", rc_else(OK, first("x"))),
        ("T2", "COMMIT", rc_else(seq(S + 2), seq(S + 1))),
    ], rc_else({"x": "12", "k": None}, {"x": None, "k": "1"}), NONE, (
        "a key T1 deleted or created is held like any written key: T2's writes get CONFLICT "
        "until T1 commits",
        "T2's writes get CONFLICT while T1 holds the keys, and after T1's commit too (first "
        "committer wins): T1's delete and create stand",
        "same as snapshot")),
    Cell("G1a-del", "aborted read of a delete and a create", [
        ("T1", "DEL x", OK),
        ("T1", "PUT k 1", OK),
        ("T2", "GET x", val("10")),
        ("T2", "GET k", NOT_FOUND),
        ("T1", "ROLLBACK", OK),
        ("T2", "GET x", val("10")),
        ("T2", "GET k", NOT_FOUND),
        ("T2", "COMMIT", seq(S)),
    ], {"x": "10", "k": None}, NONE, (
        "T2 still reads x=10 and k missing: the aborted delete and create are never seen",
        SAME, SAME)),
    Cell("G1b-del", "intermediate delete", [
        ("T1", "DEL x", OK),
        ("T2", "GET x", val("10")),
        ("T1", "PUT x 11", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "GET x", rc_else(val("11"), val("10"))),
        ("T2", "COMMIT", seq(S + 1)),
    ], {"x": "11"}, NONE, (
        "T2 never reads x as missing (T1's intermediate state), only 10 then 11",
        "T2 never reads x as missing; it reads 10 both times (its snapshot)",
        "same as snapshot; T2 only read, so its COMMIT succeeds")),
    Cell("G1c-del", "circular information flow with a create and a delete", [
        ("T1", "PUT a 1", OK),
        ("T2", "DEL x", OK),
        ("T1", "GET x", val("10")),
        ("T2", "GET a", NOT_FOUND),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), seq(S + 2), aborted("a"))),
    ], By({"a": "1", "x": None}, {"a": "1", "x": None}, {"a": "1", "x": "10"}), NONE, (
        "T1 still reads x=10 (not T2's delete), T2 still reads a missing (not T1's create): "
        "no write-read cycle",
        "same as read-committed (a write skew, which snapshot allows)",
        "reads as in read-committed; T2's COMMIT fails validation (a was created after "
        "T2's snapshot)")),
    Cell("P4-del", "lost delete", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T1", "DEL x", OK),
        ("T2", "PUT x 11", busy("x")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "PUT x 11", rc_else(OK, first("x"))),
        ("T2", "COMMIT", rc_else(seq(S + 2), seq(S + 1))),
    ], rc_else({"x": "11"}, {"x": None}), AT_RC, (
        "T2's retried increment of its stale read commits: the deleted key is back as x=11",
        "T2's retried write is refused (first committer wins): x stays deleted",
        "same as snapshot")),
    Cell("P4-create", "phantom-like insert if absent", [
        ("T1", "GET k", NOT_FOUND),
        ("T2", "GET k", NOT_FOUND),
        ("T2", "PUT k t2", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "PUT k t1", rc_else(OK, first("k"))),
        ("T1", "COMMIT", rc_else(seq(S + 2), seq(S + 1))),
    ], rc_else({"k": "t1"}, {"k": "t2"}), AT_RC, (
        "both saw k missing and claim it; T1 overwrites T2's committed claim: k=t1, and "
        "both believe they created k",
        "T1's write is refused: T2 created k after T1's snapshot (first committer wins): "
        "k=t2",
        "same as snapshot")),
    Cell("G-single-del", "read skew across a delete", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T2", "GET y", val("20")),
        ("T2", "DEL x", OK),
        ("T2", "PUT y 30", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "GET y", rc_else(val("30"), val("20"))),
        ("T1", "COMMIT", seq(S + 1)),
    ], {"x": None, "y": "30"}, AT_RC, (
        "T2 moves x into y; T1 sees x=10 and y=30 (total 40, never a committed total) and "
        "commits",
        "T1 reads y=20 from its snapshot: x=10, y=20 (total 30), as before T2",
        "same as snapshot; T1 only read, so its COMMIT succeeds")),
    Cell("G2-create", "write skew on creation", [
        ("T1", "GET a", NOT_FOUND),
        ("T1", "GET b", NOT_FOUND),
        ("T2", "GET a", NOT_FOUND),
        ("T2", "GET b", NOT_FOUND),
        ("T1", "PUT a t1", OK),
        ("T2", "PUT b t2", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), seq(S + 2), aborted("a"))),
    ], By({"a": "t1", "b": "t2"}, {"a": "t1", "b": "t2"}, {"a": "t1", "b": None}), AT_RC_SI, (
        "each checks that neither a nor b exists and creates one; both commit: the rule "
        "\"at most one of a, b\" is broken",
        "same as read-committed",
        "T2's COMMIT fails validation (a was created after T2's snapshot): only a exists")),
    Cell("PMP", "predicate-many-preceders: a SCAN asked twice", [
        ("T1", "SCAN PREFIX k", scan([])),
        ("T2", "PUT k1 30", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "SCAN PREFIX k", rc_else(scan(["k1"]), scan([]))),
        ("T1", "COMMIT", seq(S + 1)),
    ], {"k1": "30"}, AT_RC, (
        "the same SCAN gets two answers: no key, then k1 (a phantom)",
        "T1's second SCAN reads its snapshot: still no key",
        "same as snapshot; T1 only read, so its COMMIT succeeds (it is ordered before T2)")),
    Cell("PMP-del", "predicate-many-preceders with a delete: a SCAN VALUES asked twice", [
        ("T1", "SCAN VALUES", scan(["x", "y"], ["10", "20"])),
        ("T2", "DEL x", OK),
        ("T2", "PUT y 30", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "SCAN VALUES", rc_else(scan(["y"], ["30"]), scan(["x", "y"], ["10", "20"]))),
        ("T1", "COMMIT", seq(S + 1)),
    ], {"x": None, "y": "30"}, AT_RC, (
        "T1's second SCAN misses x and sees y=30: a different answer to the same question",
        "T1's second SCAN reads its snapshot: x, deleted after it, is still listed, with "
        "x=10, y=20",
        "same as snapshot; T1 only read, so its COMMIT succeeds")),
    Cell("G2", "anti-dependency cycle over a predicate: write skew through SCAN", [
        ("T1", "SCAN PREFIX a", scan([])),
        ("T2", "SCAN PREFIX a", scan([])),
        ("T1", "PUT a1 t1", OK),
        ("T2", "PUT a2 t2", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), seq(S + 2), aborted("a1"))),
    ], By({"a1": "t1", "a2": "t2"}, {"a1": "t1", "a2": "t2"}, {"a1": "t1", "a2": None}),
        AT_RC_SI, (
        "each sees no key under a and creates one; both commit: the rule \"at most one key "
        "under a\" is broken",
        "same as read-committed: they write different keys, so first committer wins does "
        "not apply",
        "T2's COMMIT fails validation: a1 was created inside the range T2 scanned, after "
        "its snapshot (no phantom): only a1 exists")),
]

ALLOWED = {
    RC: {"PMP-key", "P4", "G-single", "G2-item", "P4-del", "P4-create", "G-single-del",
         "G2-create", "PMP", "PMP-del", "G2"},
    SI: {"G2-item", "G2-create", "G2"},
    SER: set(),
}


# -- running a cell --------------------------------------------------------------------------

def run_cell(server, cell: Cell, level: str) -> None:
    """Run ``cell`` at ``level`` against ``server``, asserting every reply and the end state."""
    setup = server.connect()
    for key, value in INITIAL:
        assert setup.ask(f"PUT {key} {value}") == OK
    conns: dict[str, RawConn] = {}
    for client in cell.clients():
        conns[client] = server.connect()
        assert conns[client].ask(f"START {level}") == OK, f"{client} START {level}"
    for number, (client, command, expected) in enumerate(cell.steps, 1):
        if isinstance(expected, By):
            expected = expected.at(level)
        reply = conns[client].ask(command)
        assert matches(expected, reply), (
            f"{cell.anomaly} at {level}, step {number}: {client} {command!r}: "
            f"expected {render_reply(expected)}, got {reply}"
        )
    for key, value in sorted(cell.final_at(level).items()):
        want = NOT_FOUND if value is None else val(value)
        assert setup.ask(f"GET {key}") == want, f"{cell.anomaly} at {level}: final {key}"
    for conn in [setup, *conns.values()]:
        conn.close()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("cell", CELLS, ids=[cell.anomaly for cell in CELLS])
def test_anomaly(server, cell: Cell, level: str) -> None:
    """Each step of the cell gets exactly the expected reply at this level."""
    run_cell(server, cell, level)


def test_matrix_shape() -> None:
    """Read-committed prevents G0, G1a, G1b, G1c, OTV (and their DEL forms) and allows the
    rest; snapshot allows only write skew (G2-item, G2-create); serializable prevents
    everything. Wherever a level allows an anomaly, some step's reply there differs from
    serializable's, and every client ends its transaction."""
    for level in LEVELS:
        allowed = {cell.anomaly for cell in CELLS if level in cell.allowed_at}
        assert allowed == ALLOWED[level], level
    for cell in CELLS:
        for level in cell.allowed_at:
            differs = [step for step in cell.steps
                       if isinstance(step[2], By) and step[2].at(level) != step[2].ser]
            assert differs, f"{cell.anomaly}: nothing distinguishes {level} from serializable"
        # Every client ends its transaction, so the final state is all committed data.
        for client in cell.clients():
            last = [command for name, command, _ in cell.steps if name == client][-1]
            assert last in ("COMMIT", "ROLLBACK"), f"{cell.anomaly}: {client} left open"


def test_commit_conflict_has_rolled_back(server) -> None:
    """After COMMIT fails validation the transaction is gone (ROLLBACK finds none), its writes
    are undone and its key is free; a write CONFLICT instead leaves the writer's transaction
    open and changes nothing."""
    t1, t2, other = server.connect(), server.connect(), server.connect()
    assert other.ask("PUT x 10") == OK
    assert t1.ask("START serializable") == OK
    assert t2.ask("START serializable") == OK
    assert t1.ask("GET x") == val("10")
    assert t1.ask("PUT y 1") == OK
    assert matches(busy("y"), other.ask("PUT y 2"))  # autocommit writes wait for no one
    assert t2.ask("PUT x 11") == OK
    assert matches(busy("x"), t1.ask("PUT x 12"))
    assert t1.ask("GET x") == val("10")  # the failed PUT had no effect, T1 is still open
    assert t2.ask("COMMIT") == seq(2)
    assert matches(first("x"), t1.ask("PUT x 12"))  # x committed after T1's snapshot
    assert t1.ask("GET x") == val("10")
    assert matches(aborted("x"), t1.ask("COMMIT"))
    assert t1.ask("ROLLBACK")["code"] == "NO_TRANSACTION"
    assert other.ask("GET y") == NOT_FOUND
    assert other.ask("PUT y 3") == OK


@pytest.mark.parametrize("level", [SI, SER])
def test_read_only_snapshot_transaction_always_commits(server, level: str) -> None:
    """A transaction that only reads sees one snapshot however much changes meanwhile, and
    its COMMIT succeeds, at snapshot and at serializable alike."""
    reader, writer = server.connect(), server.connect()
    assert writer.ask("PUT x 10") == OK
    assert reader.ask(f"START {level}") == OK
    assert reader.ask("GET x") == val("10")
    for n in range(20):
        assert writer.ask(f"PUT x {n}") == OK
        assert writer.ask(f"PUT new{n} v") == OK
        assert reader.ask("GET x") == val("10")
        assert reader.ask(f"GET new{n}") == NOT_FOUND
    assert writer.ask("DEL x") == OK
    assert reader.ask("GET x") == val("10")
    assert reader.ask("COMMIT") == seq(42)


# -- the matrix as a document ----------------------------------------------------------------

def render_reply(expected: object) -> str:
    """A short human form of an expected reply; one that depends on the level lists each
    distinct reply with the levels that get it, e.g. ``Ok (RC) / CONFLICT ... (SI, SER)``."""
    if isinstance(expected, By):
        groups: dict[str, list[str]] = {}
        for level in LEVELS:
            groups.setdefault(render_reply(expected.at(level)), []).append(SHORT[level])
        if len(groups) == 1:
            return next(iter(groups))
        return " / ".join(f"{reply} ({', '.join(levels)})" for reply, levels in groups.items())
    if isinstance(expected, Conflict):
        detail = {BUSY: "", FIRST_COMMITTER: ", first committer wins",
                  VALIDATION: ", rolled back"}[expected.kind]
        return f"CONFLICT on {expected.key}{detail}"
    if expected == OK:
        return "Ok"
    if expected == NOT_FOUND:
        return "NOT_FOUND"
    result = expected["result"]
    if isinstance(result, dict) and "keys" in result:
        listed = result["keys"]
        if "values" in result:
            listed = [f"{key}={value}" for key, value in zip(listed, result["values"])]
        return f"keys: {', '.join(listed) if listed else 'none'}"
    if isinstance(result, dict):
        return f"seq {result['seq']}"
    return f'"{result}"'


def render_state(state: State) -> str:
    """``x=12, k missing`` for a final state."""
    return ", ".join(f"{key} missing" if value is None else f"{key}={value}"
                     for key, value in sorted(state.items()))


def render_row(cell: Cell) -> str:
    """One Markdown table row: anomaly, steps, then each level's outcome."""
    steps = "<br>".join(f"{number}. {client} `{command}` → {render_reply(expected)}"
                        for number, (client, command, expected) in enumerate(cell.steps, 1))
    outcomes = []
    for level in LEVELS:
        verdict = "**allowed**" if level in cell.allowed_at else "prevented"
        outcomes.append(f"{verdict}: {cell.outcome_at(level)}; "
                        f"final {render_state(cell.final_at(level))}")
    return f"| {cell.anomaly} ({cell.title}) | {steps} | {' | '.join(outcomes)} |"


def render_matrix(cells: Sequence[Cell] = CELLS) -> str:
    """The whole matrix as a Markdown table."""
    head = ("| anomaly | steps (after each client's START &lt;level&gt;) | read-committed | "
            "snapshot | serializable |\n| --- | --- | --- | --- | --- |")
    return "\n".join([head, *(render_row(cell) for cell in cells)])


def test_docs_match_the_matrix() -> None:
    """docs/isolation.md holds exactly the matrix these tests run."""
    assert render_matrix() in DOC.read_text(encoding="utf-8"), (
        "docs/isolation.md is out of date: paste the output of python tests/test_anomalies.py"
    )


if __name__ == "__main__":
    sys.stdout.write(render_matrix() + "\n")
