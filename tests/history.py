"""Record transaction histories against a real server and check them for serializability.

This is a small Elle-style checker (Adya's dependency graphs) for a key/value store whose
every written value is unique, so a value read names the transaction that wrote it.

Recording: :func:`run_random_history` runs random transactions (GET/PUT/DEL on a few keys)
from several connections. A seeded scheduler sends one command on one connection, waits for
its reply, then picks the next, so at most one command is ever in flight: the history is
totally ordered in real time (each operation gets an ``index``) and a run is reproducible
from its seed. Hand-made histories use the same :class:`History` API.

Checking: :func:`check` looks at committed transactions only for the graph:

- versions: per key, the initial state, then one version per committed transaction that
  wrote the key (its last PUT or DEL of it), ordered by the writers' COMMIT seqs. A DEL is a
  version too (an absent one), so a NOT_FOUND read names a version: the one current at the
  read (read-committed promises reads of the latest committed value, so any other is an
  error) or, in a transaction that reads at a snapshot (snapshot, serializable), the one
  current at its snapshot: at its first operation.
- edges: ww (consecutive versions' writers), wr (writer of the version read -> reader) and
  rw anti-dependencies (reader of a version -> writer of the next version of that key: a
  read of an older version, later overwritten, is an anti-dependency to the overwriter).
- a cycle in that graph means the committed transactions have no serial order; the shortest
  cycle through one transaction of the offending component is reported, with Adya's name.

Every transaction (aborted ones too) is also checked for reads no isolation level allows:
a value from an aborted or failed write (G1a), a transaction's intermediate value (G1b), a
value not yet committed, a stale value, own writes not seen, and COMMIT seqs that do not
count up in real time (a read-only COMMIT must return the current seq).
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from support import RawConn

READ, WRITE, DELETE = "r", "w", "d"
OPEN, COMMITTED, ABORTED = "open", "committed", "aborted"


@dataclass
class Op:
    """One operation: ``kind`` r/w/d, the key, the value read or written (``None`` for
    NOT_FOUND or a delete), its real-time ``index``, and ``ok`` False for a write that got
    CONFLICT (it had no effect)."""

    kind: str
    key: str
    value: str | None
    index: int
    ok: bool = True

    def __str__(self) -> str:
        shown = "missing" if self.value is None else self.value
        text = f"{self.kind}({self.key})" if self.kind == DELETE else \
            f"{self.kind}({self.key}={shown})"
        return text if self.ok else text + " [CONFLICT]"


class Txn:
    """One transaction of a history; operations are recorded in the order they happened."""

    def __init__(self, history: History, txn_id: int, client: int,
                 snapshot: bool = False) -> None:
        self.history = history
        self.txn_id = txn_id
        self.client = client
        self.snapshot = snapshot
        self.ops: list[Op] = []
        self.status = OPEN
        self.abort_reason = ""
        self.seq: int | None = None
        self.commit_index: int | None = None

    def read(self, key: str, value: str | None) -> Txn:
        """Record a GET that returned ``value`` (``None``: NOT_FOUND)."""
        self.ops.append(Op(READ, key, value, self.history.tick()))
        return self

    def write(self, key: str, value: str, ok: bool = True) -> Txn:
        """Record a PUT (``ok`` False if it got CONFLICT)."""
        self.ops.append(Op(WRITE, key, value, self.history.tick(), ok))
        return self

    def delete(self, key: str, ok: bool = True) -> Txn:
        """Record a DEL (``ok`` False if it got CONFLICT)."""
        self.ops.append(Op(DELETE, key, None, self.history.tick(), ok))
        return self

    def commit(self, seq: int) -> Txn:
        """Record a successful COMMIT that answered ``seq``."""
        self.status, self.seq, self.commit_index = COMMITTED, seq, self.history.tick()
        return self

    def abort(self, reason: str = "rollback") -> Txn:
        """Record that the transaction was rolled back (ROLLBACK or a failed COMMIT)."""
        self.status, self.abort_reason = ABORTED, reason
        self.history.tick()
        return self

    def final_writes(self) -> dict[str, str | None]:
        """Each key this transaction changed, with its last value (``None``: deleted)."""
        return {op.key: op.value for op in self.ops if op.kind != READ and op.ok}

    def __repr__(self) -> str:
        return f"T{self.txn_id}"

    def __str__(self) -> str:
        end = f"commit seq {self.seq}" if self.status == COMMITTED else self.status
        return f"T{self.txn_id} (client {self.client}): {' '.join(map(str, self.ops))} {end}"


class History:
    """Transactions in real-time order. ``initial`` is the committed state before the first
    one (keys not in it are missing) and ``initial_seq`` the commit seq at that point."""

    def __init__(self, initial: dict[str, str] | None = None, initial_seq: int = 0) -> None:
        self.initial: dict[str, str] = dict(initial or {})
        self.initial_seq = initial_seq
        self.txns: list[Txn] = []
        self._clock = 0

    def tick(self) -> int:
        """The next real-time index."""
        self._clock += 1
        return self._clock

    def begin(self, client: int = 0, snapshot: bool = False) -> Txn:
        """A new transaction of ``client``, numbered from 1; ``snapshot``: it reads the state
        as of its first operation (snapshot and serializable), else the latest."""
        txn = Txn(self, len(self.txns) + 1, client, snapshot)
        self.txns.append(txn)
        return txn

    def committed(self) -> list[Txn]:
        """The committed transactions."""
        return [t for t in self.txns if t.status == COMMITTED]

    def aborted(self) -> list[Txn]:
        """The transactions that were rolled back."""
        return [t for t in self.txns if t.status == ABORTED]


# -- the checker ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Edge:
    """A dependency: ``src`` must come before ``dst`` (kind ww, wr or rw, on ``key``)."""

    src: int
    dst: int
    kind: str
    key: str

    def __str__(self) -> str:
        return f"T{self.src} -{self.kind}({self.key})-> T{self.dst}"


@dataclass
class Version:
    """One committed state of a key: its writer (``None``: the initial state), value
    (``None``: missing), commit seq and real-time index of the commit."""

    writer: int | None
    value: str | None
    seq: int
    commit_index: int


@dataclass
class CheckResult:
    """What :func:`check` found: ``errors`` (reads no level allows, bad seqs) and ``cycle``
    (the edges of a dependency cycle among committed transactions, or ``None``); ``edges``
    is every dependency found (the graph)."""

    committed: int
    aborted: int
    edges: list[Edge] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cycle: list[Edge] | None = None

    @property
    def ok(self) -> bool:
        """True if the history is serializable and every read was allowed."""
        return not self.errors and self.cycle is None

    def cycle_kind(self) -> str | None:
        """Adya's name for the cycle: G0 (ww only), G1c (ww and wr), G-single (one rw),
        G2-item (several rw)."""
        if self.cycle is None:
            return None
        kinds = [edge.kind for edge in self.cycle]
        anti = kinds.count("rw")
        if anti == 0:
            return "G1c" if "wr" in kinds else "G0"
        return "G-single" if anti == 1 else "G2-item"

    def describe(self) -> str:
        """A report for a person: counts, then the cycle and errors or ``no cycle``."""
        lines = [f"{self.committed} committed, {self.aborted} aborted, "
                 f"{len(self.edges)} edges"]
        if self.cycle is None:
            lines.append("no cycle")
        else:
            lines.append(f"cycle ({self.cycle_kind()}): " + ", ".join(map(str, self.cycle)))
        lines.extend(f"error: {error}" for error in self.errors)
        return "\n".join(lines)


def check(history: History) -> CheckResult:
    """Check ``history``: every read allowed, and no cycle among committed transactions."""
    errors: list[str] = []
    committed = history.committed()
    versions = _versions(history, committed, errors)
    position = {(v.writer, key): n for key, chain in versions.items()
                for n, v in enumerate(chain) if v.writer is not None}
    written = _written_values(history, errors)
    commit_indices = {key: [v.commit_index for v in chain] for key, chain in versions.items()}
    graph: dict[int, dict[int, Edge]] = {t.txn_id: {} for t in committed}
    edges: dict[Edge, None] = {}  # every distinct edge, in the order found

    def add(src: int | None, dst: int | None, kind: str, key: str) -> None:
        if src is None or dst is None or src == dst:
            return
        edge = Edge(src, dst, kind, key)
        edges[edge] = None
        graph[src].setdefault(dst, edge)

    for key, chain in versions.items():
        for before, after in zip(chain, chain[1:]):
            add(before.writer, after.writer, "ww", key)
    for txn in history.txns:
        for op, pos in _external_reads(txn, versions, commit_indices, position, written,
                                       errors):
            if txn.status != COMMITTED or pos is None:
                continue
            chain = versions[op.key]
            add(chain[pos].writer, txn.txn_id, "wr", op.key)
            if pos + 1 < len(chain):
                add(txn.txn_id, chain[pos + 1].writer, "rw", op.key)
    result = CheckResult(len(committed), len(history.aborted()), list(edges), errors)
    result.cycle = find_cycle(graph)
    return result


def _versions(history: History, committed: list[Txn],
              errors: list[str]) -> dict[str, list[Version]]:
    """Per key, its committed versions in seq order; checks the seqs against real time."""
    changes = _changes(history, committed)
    writers = [t for t in committed if changes[t.txn_id]]
    last_seq = history.initial_seq
    for txn in sorted(committed, key=lambda t: t.commit_index):
        if changes[txn.txn_id]:
            if txn.seq <= last_seq:
                errors.append(f"T{txn.txn_id} committed writes at seq {txn.seq}, not above "
                              f"the previous commit's {last_seq}")
            last_seq = max(last_seq, txn.seq)
        elif txn.seq != last_seq:
            errors.append(f"read-only T{txn.txn_id} committed with seq {txn.seq}; the current "
                          f"seq was {last_seq}")
    keys = set(history.initial)
    for txn in history.txns:
        keys.update(op.key for op in txn.ops)
    versions = {key: [Version(None, history.initial.get(key), history.initial_seq, -1)]
                for key in keys}
    for txn in sorted(writers, key=lambda t: t.seq):
        for key, value in changes[txn.txn_id].items():
            versions[key].append(Version(txn.txn_id, value, txn.seq, txn.commit_index))
    return versions


def _changes(history: History, committed: list[Txn]) -> dict[int, dict[str, str | None]]:
    """Per committed transaction, the keys it changed: its final writes, less DELs of keys
    that were already missing when it committed (the server counts those as no change: no
    new version, and no new seq for a transaction that made only those)."""
    current: dict[str, str | None] = dict(history.initial)
    changes: dict[int, dict[str, str | None]] = {}
    for txn in sorted(committed, key=lambda t: t.commit_index):
        changed = {key: value for key, value in txn.final_writes().items()
                   if value is not None or current.get(key) is not None}
        changes[txn.txn_id] = changed
        current.update(changed)
    return changes


def _written_values(history: History, errors: list[str]) -> dict[str, tuple[Txn, Op]]:
    """Every value any PUT tried to write (failed ones included) -> its transaction and op."""
    written: dict[str, tuple[Txn, Op]] = {}
    for txn in history.txns:
        for op in txn.ops:
            if op.kind == WRITE:
                if op.value in written:
                    errors.append(f"value {op.value!r} is written twice: the checker needs "
                                  "unique values")
                written[op.value] = (txn, op)
    return written


def _external_reads(txn: Txn, versions: dict[str, list[Version]],
                    commit_indices: dict[str, list[int]],
                    position: dict[tuple[int, str], int], written: dict[str, tuple[Txn, Op]],
                    errors: list[str]) -> Iterator[tuple[Op, int | None]]:
    """Each read of ``txn`` from committed state, with the position of the version it read
    (``None`` if it read something no version is); reads of its own writes are checked."""
    own: dict[str, str | None] = {}
    name = f"T{txn.txn_id}"
    for op in txn.ops:
        if op.kind != READ:
            if op.ok:
                own[op.key] = op.value
            continue
        if op.key in own:
            if op.value != own[op.key]:
                errors.append(f"{name} read {op} but its own last write of {op.key} was "
                              f"{own[op.key]!r}")
            continue
        chain = versions[op.key]
        # The version current at the read (or at the snapshot): the last one committed before
        # it (versions are in seq order, which _versions has checked is real-time order).
        seen_at = txn.ops[0].index if txn.snapshot else op.index
        current = bisect_left(commit_indices[op.key], seen_at) - 1
        if op.value is None:
            if chain[current].value is not None:
                errors.append(f"{name} read {op} at index {op.index}, but {op.key} had the "
                              f"committed value {chain[current].value!r}")
                missing = [n for n in range(current) if chain[n].value is None]
                yield op, (missing[-1] if missing else None)
                continue
            yield op, current
            continue
        yield op, _value_read(txn, op, chain, current, position, written, errors)


def _value_read(txn: Txn, op: Op, chain: list[Version], current: int,
                position: dict[tuple[int, str], int], written: dict[str, tuple[Txn, Op]],
                errors: list[str]) -> int | None:
    """The version a read of a value saw, after checking that the read was allowed."""
    name = f"T{txn.txn_id}"
    source = written.get(op.value)
    if source is None:
        if chain[0].value != op.value:
            errors.append(f"{name} read {op}: no transaction wrote that value")
            return None
        if current > 0:  # the initial value, read after it was replaced
            errors.append(f"{name} read {op} at index {op.index}, a stale value: "
                          f"T{chain[current].writer} had committed {op.key} already"
                          f"{_at_snapshot(txn)}")
        return 0
    writer, write = source
    wname = f"T{writer.txn_id}"
    problem = None
    if write.key != op.key:
        problem = f"a value {wname} wrote to {write.key}"
    elif writer is txn:
        problem = "its own value before it wrote it"
    elif not write.ok:
        problem = f"from {wname}'s write that got CONFLICT (G1a)"
    elif writer.status == ABORTED:
        problem = f"written by aborted {wname} (G1a)"
    elif writer.status != COMMITTED:
        problem = f"written by {wname}, which never committed"
    elif writer.final_writes().get(op.key) != op.value:
        problem = f"an intermediate value of {wname} (G1b)"
    if problem is not None:
        errors.append(f"{name} read {op}, {problem}")
        return None
    pos = position[(writer.txn_id, op.key)]
    if pos > current:
        errors.append(f"{name} read {op} at index {op.index}, before {wname} committed it"
                      f"{_at_snapshot(txn)}")
    elif pos < current:
        errors.append(f"{name} read {op} at index {op.index}, a stale value: "
                      f"T{chain[current].writer} had committed {op.key} already"
                      f"{_at_snapshot(txn)}")
    return pos


def _at_snapshot(txn: Txn) -> str:
    """`` at its snapshot (index N)`` for a transaction that reads at a snapshot."""
    return f" at its snapshot (index {txn.ops[0].index})" if txn.snapshot else ""


def find_cycle(graph: dict[int, dict[int, Edge]]) -> list[Edge] | None:
    """A shortest cycle through the lowest-numbered transaction on any cycle (strongly
    connected components by Tarjan's algorithm, iterative), as its edges; ``None`` if the
    graph is acyclic."""
    cyclic = [c for c in _components(graph) if len(c) > 1]
    if not cyclic:
        return None
    earliest = min(cyclic, key=min)
    return _shortest_cycle(graph, min(earliest), earliest)


def _components(graph: dict[int, dict[int, Edge]]) -> list[list[int]]:
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack = set()
    found: list[list[int]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


def _shortest_cycle(graph: dict[int, dict[int, Edge]], start: int,
                    component: list[int]) -> list[Edge]:
    inside = set(component)
    came_from: dict[int, Edge] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child, edge in sorted(graph[node].items()):
            if child not in inside or child in came_from:
                continue
            came_from[child] = edge
            if child == start:
                path = [edge]
                while path[-1].src != start:
                    path.append(came_from[path[-1].src])
                return path[::-1]
            queue.append(child)
    raise AssertionError("a strongly connected component always has a cycle")


# -- recording a random workload -----------------------------------------------------------

class UnexpectedReply(Exception):
    """The server answered something the workload has no rule for."""


SNAPSHOT_LEVELS = ("snapshot", "serializable")
RANDOM, WRITE_SKEW = "random", "write-skew"
WORKLOADS = (RANDOM, WRITE_SKEW)


def _plan(rng: random.Random, keys: list[str], max_ops: int,
          workload: str) -> Iterator[tuple[str, float]]:
    """One transaction's operations as (key, roll), drawn lazily: roll < 0.5 reads, < 0.85
    puts, else deletes. ``write-skew``: read two different keys, then put one of them."""
    if workload == WRITE_SKEW:
        first, second = rng.sample(keys, 2)
        yield from ((first, 0.0), (second, 0.0), (rng.choice((first, second)), 0.6))
        return
    for _ in range(rng.randint(1, max_ops)):
        yield rng.choice(keys), rng.random()


def _client(client: int, rng: random.Random, history: History, budget: list[int],
            level: str, keys: list[str], max_ops: int, workload: str) -> Iterator[str]:
    """One connection's program: yields commands, is sent each reply. Runs transactions
    while the shared ``budget`` lasts."""
    while budget[0] > 0:
        budget[0] -= 1
        txn = history.begin(client, snapshot=level in SNAPSHOT_LEVELS)
        reply = yield f"START {level}"
        _expect_ok(reply, "START")
        rolled_back = False
        for n, (key, roll) in enumerate(_plan(rng, keys, max_ops, workload), 1):
            if roll < 0.5:
                reply = yield f"GET {key}"
                if reply.get("code") == "NOT_FOUND":
                    txn.read(key, None)
                else:
                    _expect_ok(reply, f"GET {key}")
                    txn.read(key, reply["result"])
                continue
            value = f"t{txn.txn_id}-{n}"
            command = f"PUT {key} {value}" if roll < 0.85 else f"DEL {key}"
            reply = yield command
            conflict = reply.get("code") == "CONFLICT"
            if not conflict:
                _expect_ok(reply, command)
            if command.startswith("PUT"):
                txn.write(key, value, ok=not conflict)
            else:
                txn.delete(key, ok=not conflict)
            if conflict and rng.random() < 0.5:
                # Give up; else go on: the failed write had no effect, the txn is still open.
                _expect_ok((yield "ROLLBACK"), "ROLLBACK")
                txn.abort("write conflict")
                rolled_back = True
                break
        if rolled_back:
            continue
        reply = yield "COMMIT"
        if reply.get("code") == "CONFLICT":
            txn.abort("commit validation")
        else:
            _expect_ok(reply, "COMMIT")
            txn.commit(reply["result"]["seq"])


def _expect_ok(reply: dict, what: str) -> None:
    if reply.get("status") != "Ok":
        raise UnexpectedReply(f"{what}: {reply}")


def run_random_history(connect: Callable[[], RawConn], *, txns: int = 200, clients: int = 5,
                       keys: int = 4, max_ops: int = 4, seed: int = 0,
                       level: str = "serializable", workload: str = RANDOM,
                       seconds: float | None = None) -> History:
    """Run ``txns`` random transactions over ``clients`` connections (``connect()`` returns a
    new RawConn) and return the history. With ``seconds``, no transaction starts after that
    long (the ones under way finish), so a run is bounded in time too.

    Each transaction does 1..``max_ops`` GET/PUT/DEL on keys ``k0``.. (``workload``
    "write-skew": GET two keys, PUT one of them); aborted ones are recorded, not retried.
    The initial state and seq are read first (missing keys are fine).
    """
    key_names = [f"k{n}" for n in range(keys)]
    admin = connect()
    initial: dict[str, str] = {}
    for key in key_names:
        reply = admin.ask(f"GET {key}")
        if reply.get("status") == "Ok":
            initial[key] = reply["result"]
    _expect_ok(admin.ask("START read-committed"), "START")
    start_seq = admin.ask("COMMIT")["result"]["seq"]  # a read-only COMMIT: the current seq
    admin.close()
    history = History(initial, start_seq)
    budget = [txns]
    scheduler = random.Random(seed)
    conns = [connect() for _ in range(clients)]
    programs = [_client(n, random.Random(seed * 1_000_003 + n), history, budget, level,
                        key_names, max_ops, workload) for n in range(clients)]
    pending = {}
    for n, program in enumerate(programs):
        command = next(program, None)
        if command is not None:
            pending[n] = command
    deadline = None if seconds is None else time.monotonic() + seconds
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            budget[0] = 0
        n = scheduler.choice(sorted(pending))
        conns[n].send(pending[n].encode("utf-8") + b"\n")
        try:
            pending[n] = programs[n].send(conns[n].reply())
        except StopIteration:
            del pending[n]
    for conn in conns:
        conn.close()
    return history
