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
SER = "serializable"
LEVELS = (RC, SER)
INITIAL = (("x", "10"), ("y", "20"))
INITIAL_SEQ = len(INITIAL)
DOC = Path(__file__).resolve().parent.parent / "docs" / "isolation.md"


# -- expected replies ----------------------------------------------------------------------

@dataclass(frozen=True)
class Conflict:
    """A CONFLICT reply naming ``key``: a write hitting another's intent (``rolled_back``
    False) or a COMMIT that failed validation, so the server rolled the transaction back."""

    key: str
    rolled_back: bool

    def matches(self, reply: dict) -> bool:
        """True if ``reply`` is exactly this error: status, code, a mesg naming the key and
        saying whether the transaction was rolled back."""
        if set(reply) != {"status", "code", "mesg"}:
            return False
        mesg = reply["mesg"]
        return (reply["status"] == "Error" and reply["code"] == "CONFLICT"
                and f"'{self.key}'" in mesg
                and ("rolled back" in mesg) == self.rolled_back)


@dataclass(frozen=True)
class By:
    """An expectation that depends on the isolation level."""

    rc: object
    ser: object

    def at(self, level: str) -> object:
        """The expectation at ``level``."""
        return self.rc if level == RC else self.ser


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


def busy(key: str) -> Conflict:
    """The immediate CONFLICT of a write to ``key``, held by another open transaction."""
    return Conflict(key, rolled_back=False)


def aborted(key: str) -> Conflict:
    """COMMIT's CONFLICT: ``key`` changed after it was read; the transaction was rolled back."""
    return Conflict(key, rolled_back=True)


def matches(expected: object, reply: dict) -> bool:
    """True if ``reply`` is exactly the ``expected`` reply."""
    if isinstance(expected, Conflict):
        return expected.matches(reply)
    return reply == expected


# -- the cells -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One anomaly: its steps, the final committed state, and what each level shows."""

    anomaly: str
    title: str
    steps: Sequence[Step]
    final: State | By
    rc_prevents: bool
    rc_outcome: str
    ser_outcome: str

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


S = INITIAL_SEQ  # the commit seq before the first step

CELLS: list[Cell] = [
    Cell("G0", "dirty write", [
        ("T1", "PUT x 11", OK),
        ("T2", "PUT y 22", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T1", "PUT y 21", busy("y")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "PUT x 12", OK),
        ("T2", "COMMIT", seq(S + 2)),
    ], {"x": "12", "y": "22"}, True,
        "both crossing writes get CONFLICT at once and have no effect; x is T1 then T2, "
        "y is T2 only: no write cycle",
        "same as read-committed"),
    Cell("G1a", "aborted read", [
        ("T1", "PUT x 101", OK),
        ("T2", "GET x", val("10")),
        ("T1", "ROLLBACK", OK),
        ("T2", "GET x", val("10")),
        ("T2", "COMMIT", seq(S)),
    ], {"x": "10"}, True,
        "T2 reads the before-image 10, never the aborted 101",
        "same as read-committed"),
    Cell("G1b", "intermediate read", [
        ("T1", "PUT x 101", OK),
        ("T2", "GET x", val("10")),
        ("T1", "PUT x 11", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "GET x", val("11")),
        ("T2", "COMMIT", By(seq(S + 1), aborted("x"))),
    ], {"x": "11"}, True,
        "T2 reads 10 then the committed 11, never the intermediate 101",
        "T2 never reads 101; it read x twice with different values, so its COMMIT fails"),
    Cell("G1c", "circular information flow", [
        ("T1", "PUT x 11", OK),
        ("T2", "PUT y 22", OK),
        ("T1", "GET y", val("20")),
        ("T2", "GET x", val("10")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), aborted("x"))),
    ], By({"x": "11", "y": "22"}, {"x": "11", "y": "20"}), True,
        "each reads the other's before-image, so neither reads from the other: no "
        "write-read cycle (the pair is a write skew, which read-committed allows)",
        "reads as in read-committed; T2's COMMIT fails validation (x changed after T2 "
        "read it)"),
    Cell("OTV", "observed transaction vanishes", [
        ("T1", "PUT x 11", OK),
        ("T1", "PUT y 19", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T3", "GET x", val("11")),
        ("T2", "PUT x 12", OK),
        ("T2", "PUT y 18", OK),
        ("T3", "GET y", val("19")),
        ("T2", "COMMIT", seq(S + 2)),
        ("T3", "GET x", val("12")),
        ("T3", "GET y", val("18")),
        ("T3", "COMMIT", By(seq(S + 2), aborted("x"))),
    ], {"x": "12", "y": "18"}, True,
        "having seen T1's x=11, T3 still sees T1's y=19 (the before-image of T2's write), "
        "not 20: T1 does not vanish",
        "T3 reads the same; it read x twice with different values, so its COMMIT fails"),
    Cell("P4", "lost update", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T1", "PUT x 11", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "PUT x 12", OK),
        ("T2", "COMMIT", By(seq(S + 2), aborted("x"))),
    ], By({"x": "12"}, {"x": "11"}), False,
        "T2's first write gets CONFLICT; its retry after T1's commit, computed from its "
        "stale read (10+2), commits: x=12, T1's +1 is lost (a serial order gives 13)",
        "the retried write is accepted but T2's COMMIT fails validation: x=11, T2 must "
        "retry from START"),
    Cell("G-single", "read skew", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T2", "GET y", val("20")),
        ("T2", "PUT x 12", OK),
        ("T2", "PUT y 18", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "GET y", val("18")),
        ("T1", "COMMIT", By(seq(S + 1), aborted("x"))),
    ], {"x": "12", "y": "18"}, False,
        "T1 sees x=10 and y=18 (total 28, never a committed total) and commits",
        "T1's second read also returns 18 (reads are not snapshots), but its COMMIT fails "
        "validation: x changed after T1 read it"),
    Cell("G2-item", "write skew", [
        ("T1", "GET x", val("10")),
        ("T1", "GET y", val("20")),
        ("T2", "GET x", val("10")),
        ("T2", "GET y", val("20")),
        ("T1", "PUT x 0", OK),
        ("T2", "PUT y 0", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), aborted("x"))),
    ], By({"x": "0", "y": "0"}, {"x": "0", "y": "20"}), False,
        "each zeroes its key after seeing the other's positive; both commit: x=0, y=0, "
        "which no serial order produces",
        "T2's COMMIT fails validation (x changed after T2 read it): x=0, y=20"),
    Cell("G0-del", "dirty write with DEL", [
        ("T1", "DEL x", OK),
        ("T1", "PUT k 1", OK),
        ("T2", "PUT x 12", busy("x")),
        ("T2", "DEL k", busy("k")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "DEL k", OK),
        ("T2", "PUT x 12", OK),
        ("T2", "COMMIT", seq(S + 2)),
    ], {"x": "12", "k": None}, True,
        "a key T1 deleted or created is held like any written key: T2's writes get CONFLICT "
        "until T1 commits",
        "same as read-committed"),
    Cell("G1a-del", "aborted read of a delete and a create", [
        ("T1", "DEL x", OK),
        ("T1", "PUT k 1", OK),
        ("T2", "GET x", val("10")),
        ("T2", "GET k", NOT_FOUND),
        ("T1", "ROLLBACK", OK),
        ("T2", "GET x", val("10")),
        ("T2", "GET k", NOT_FOUND),
        ("T2", "COMMIT", seq(S)),
    ], {"x": "10", "k": None}, True,
        "T2 still reads x=10 and k missing: the aborted delete and create are never seen",
        "same as read-committed"),
    Cell("G1b-del", "intermediate delete", [
        ("T1", "DEL x", OK),
        ("T2", "GET x", val("10")),
        ("T1", "PUT x 11", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "GET x", val("11")),
        ("T2", "COMMIT", By(seq(S + 1), aborted("x"))),
    ], {"x": "11"}, True,
        "T2 never reads x as missing (T1's intermediate state), only 10 then 11",
        "T2 never reads x as missing; it read x twice with different values, so its COMMIT "
        "fails"),
    Cell("G1c-del", "circular information flow with a create and a delete", [
        ("T1", "PUT a 1", OK),
        ("T2", "DEL x", OK),
        ("T1", "GET x", val("10")),
        ("T2", "GET a", NOT_FOUND),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), aborted("a"))),
    ], By({"a": "1", "x": None}, {"a": "1", "x": "10"}), True,
        "T1 still reads x=10 (not T2's delete), T2 still reads a missing (not T1's create): "
        "no write-read cycle",
        "reads as in read-committed; T2's COMMIT fails validation (a changed after T2 read "
        "it)"),
    Cell("P4-del", "lost delete", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T1", "DEL x", OK),
        ("T2", "PUT x 11", busy("x")),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "PUT x 11", OK),
        ("T2", "COMMIT", By(seq(S + 2), aborted("x"))),
    ], By({"x": "11"}, {"x": None}), False,
        "T2's retried increment of its stale read commits: the deleted key is back as x=11",
        "T2's COMMIT fails validation: x stays deleted"),
    Cell("P4-create", "phantom-like insert if absent", [
        ("T1", "GET k", NOT_FOUND),
        ("T2", "GET k", NOT_FOUND),
        ("T2", "PUT k t2", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "PUT k t1", OK),
        ("T1", "COMMIT", By(seq(S + 2), aborted("k"))),
    ], By({"k": "t1"}, {"k": "t2"}), False,
        "both saw k missing and claim it; T1 overwrites T2's committed claim: k=t1, and "
        "both believe they created k",
        "T1's COMMIT fails validation (k was created after T1 read it missing): k=t2"),
    Cell("G-single-del", "read skew across a delete", [
        ("T1", "GET x", val("10")),
        ("T2", "GET x", val("10")),
        ("T2", "GET y", val("20")),
        ("T2", "DEL x", OK),
        ("T2", "PUT y 30", OK),
        ("T2", "COMMIT", seq(S + 1)),
        ("T1", "GET y", val("30")),
        ("T1", "COMMIT", By(seq(S + 1), aborted("x"))),
    ], {"x": None, "y": "30"}, False,
        "T2 moves x into y; T1 sees x=10 and y=30 (total 40, never a committed total) and "
        "commits",
        "T1's COMMIT fails validation: x was deleted after T1 read it"),
    Cell("G2-create", "write skew on creation", [
        ("T1", "GET a", NOT_FOUND),
        ("T1", "GET b", NOT_FOUND),
        ("T2", "GET a", NOT_FOUND),
        ("T2", "GET b", NOT_FOUND),
        ("T1", "PUT a t1", OK),
        ("T2", "PUT b t2", OK),
        ("T1", "COMMIT", seq(S + 1)),
        ("T2", "COMMIT", By(seq(S + 2), aborted("a"))),
    ], By({"a": "t1", "b": "t2"}, {"a": "t1", "b": None}), False,
        "each checks that neither a nor b exists and creates one; both commit: the rule "
        "\"at most one of a, b\" is broken",
        "T2's COMMIT fails validation (a was created after T2 read it missing): only a "
        "exists"),
]

ALLOWED_BY_READ_COMMITTED = {
    "P4", "G-single", "G2-item", "P4-del", "P4-create", "G-single-del", "G2-create",
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
    rest; in every allowed cell some COMMIT succeeds at read-committed and fails validation
    at serializable, which prevents everything."""
    allowed = {cell.anomaly for cell in CELLS if not cell.rc_prevents}
    assert allowed == ALLOWED_BY_READ_COMMITTED
    for cell in CELLS:
        refused = [
            expected for _, command, expected in cell.steps
            if command == "COMMIT" and isinstance(expected, By)
            and expected.rc.get("status") == "Ok" and isinstance(expected.ser, Conflict)
        ]
        if not cell.rc_prevents:
            assert refused, f"{cell.anomaly}: nothing distinguishes the levels"
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
    assert matches(aborted("x"), t1.ask("COMMIT"))
    assert t1.ask("ROLLBACK")["code"] == "NO_TRANSACTION"
    assert other.ask("GET y") == NOT_FOUND
    assert other.ask("PUT y 3") == OK


# -- the matrix as a document ----------------------------------------------------------------

def render_reply(expected: object) -> str:
    """A short human form of an expected reply."""
    if isinstance(expected, By):
        return f"{render_reply(expected.rc)} (RC) / {render_reply(expected.ser)} (SER)"
    if isinstance(expected, Conflict):
        rolled_back = ", rolled back" if expected.rolled_back else ""
        return f"CONFLICT on {expected.key}{rolled_back}"
    if expected == OK:
        return "Ok"
    if expected == NOT_FOUND:
        return "NOT_FOUND"
    result = expected["result"]
    if isinstance(result, dict):
        return f"seq {result['seq']}"
    return f'"{result}"'


def render_state(state: State) -> str:
    """``x=12, k missing`` for a final state."""
    return ", ".join(f"{key} missing" if value is None else f"{key}={value}"
                     for key, value in sorted(state.items()))


def render_row(cell: Cell) -> str:
    """One Markdown table row: anomaly, steps, read-committed and serializable outcomes."""
    steps = "<br>".join(f"{number}. {client} `{command}` → {render_reply(expected)}"
                        for number, (client, command, expected) in enumerate(cell.steps, 1))
    rc_verdict = "prevented" if cell.rc_prevents else "**allowed**"
    rc = f"{rc_verdict}: {cell.rc_outcome}; final {render_state(cell.final_at(RC))}"
    ser = f"prevented: {cell.ser_outcome}; final {render_state(cell.final_at(SER))}"
    return f"| {cell.anomaly} ({cell.title}) | {steps} | {rc} | {ser} |"


def render_matrix(cells: Sequence[Cell] = CELLS) -> str:
    """The whole matrix as a Markdown table."""
    head = ("| anomaly | steps (after each client's START &lt;level&gt;) | read-committed | "
            "serializable |\n| --- | --- | --- | --- |")
    return "\n".join([head, *(render_row(cell) for cell in cells)])


def test_docs_match_the_matrix() -> None:
    """docs/isolation.md holds exactly the matrix these tests run."""
    assert render_matrix() in DOC.read_text(encoding="utf-8"), (
        "docs/isolation.md is out of date: paste the output of python tests/test_anomalies.py"
    )


if __name__ == "__main__":
    sys.stdout.write(render_matrix() + "\n")
