"""Differential fuzz of the fast paths: CommandExecutor.execute_lines (with its GET reply cache
and plain GET/PUT paths, and execute()'s shortcut for bare verbs) gives byte-identical
replies, store, sessions and STATS to execute() line by line with every line parsed, on random
command streams of several clients (transactions, conflicts, errors, odd whitespace, Unicode,
AUTH, QUIT, HTTP, over-long lines, timeouts). Sans-IO: fake clock, no sockets."""

from __future__ import annotations

import json
import random

import pytest
from support import FakeClock

from kvloop import commands
from kvloop.commands import NOT_FOUND_REPLY, CommandExecutor
from kvloop.config import Settings
from kvloop.protocol import LineReader, LineTooLarge, encode_text_result
from kvloop.replycache import ENTRY_OVERHEAD_BYTES, MAX_REPLY_BYTES, ReplyCache, get_line
from kvloop.session import Session
from kvloop.stats import Stats
from kvloop.store import Store
from kvloop.wal import MemoryOnly

PASSWORD = "pässwörd 🔑"


class ClockStats(Stats):
    """Stats whose uptime follows the fake clock, so STATS replies are deterministic."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.started_at = clock()

    def uptime(self) -> float:
        return self.clock() - self.started_at


class CommitPending(MemoryOnly):
    """Persistence whose ``pending`` turns true at every commit, until :meth:`sync`."""

    def __init__(self, store: Store) -> None:
        self.pending = False
        self.commits = 0
        self.records: list[tuple[int, list]] = []  # what a log would write
        store.on_commit = self.append

    def append(self, seq: int, writes: list) -> None:
        self.pending = True
        self.commits += 1
        self.records.append((seq, list(writes)))

    def sync(self) -> None:
        self.pending = False


def make(settings: Settings, clock: FakeClock, pending: bool = False) -> CommandExecutor:
    store = Store()
    persistence = CommitPending(store) if pending else None
    return CommandExecutor(settings, store=store, stats=ClockStats(clock),
                           persistence=persistence, clock=clock)


# -- the two ways of running a batch -------------------------------------------------------

def run_general(db: CommandExecutor, session: Session, lines: list) -> tuple[list, int]:
    """execute() line by line, every line parsed (not even a bare ``COMMIT`` skips the
    parser), stopping where the server stops (closing or held)."""
    out = []
    ran = 0
    bare_lines, commands.BARE_LINES = commands.BARE_LINES, {}
    try:
        for line in lines:
            ran += 1
            reply = db.execute(session, line)
            if reply is not None:
                out.append(reply)
            if session.closing or session.hold_until is not None:
                break
    finally:
        commands.BARE_LINES = bare_lines
    return out, ran


def run_fast(db: CommandExecutor, session: Session, lines: list,
             rng: random.Random) -> tuple[list, int]:
    """execute_lines in random chunks and rooms, re-offering unrun lines as server._run_lines
    does; checks each call stopped exactly where execute_lines promises."""
    persistence = db.persistence
    waiting = list(lines)
    out = []
    total = 0
    while waiting and not session.closing and session.hold_until is None:
        take = len(waiting) if rng.random() < 0.5 else rng.randint(1, len(waiting))
        chunk, rest = waiting[:take], waiting[take:]
        room = rng.choice((1, rng.randint(1, 300), 1 << 20, 1 << 20))
        was_pending = persistence.pending
        commits = getattr(persistence, "commits", 0)
        replies: list[bytes] = []
        ran = db.execute_lines(session, chunk, replies, room)
        assert 1 <= ran <= len(chunk)
        assert sum(map(len, replies[:-1])) < room, "ran on past a full room"
        committed = getattr(persistence, "commits", 0) - commits
        newly_pending = persistence.pending and not was_pending
        if not was_pending:
            assert committed <= 1, "ran on past a line that left a commit pending"
        if ran < len(chunk):
            assert (session.closing or session.hold_until is not None or newly_pending
                    or sum(map(len, replies)) >= room), "stopped early for no reason"
        out += replies
        total += ran
        waiting = chunk[ran:] + rest
        if persistence.pending and rng.random() < 0.7:
            persistence.sync()  # the server's group commit between turns
    return out, total


# -- random streams ------------------------------------------------------------------------

KEYS = ["k", "a", "b", "ключ", "🔑", "k\u00e9"]
BAD_KEYS = ["k\x01", "a\u2028b", "z\u200b", "x\x85", "\x7f"]
VALUES = ["v", "1", "22", "ключ-значение", "🔑🔑", "a\u2028b", "x\u0085y", "  spaced  ",
          "tab\there", '"quoted"', "back\\slash", "<\u2029>", "\u00e9\u0301"]
LONG_VALUE = "L" * (MAX_REPLY_BYTES + 10)


def random_line(rng: random.Random, password: str | None) -> bytes | None:
    """One request line (``None``: an over-long line, added as LineTooLarge)."""
    k = rng.choice(KEYS)
    v = rng.choice(VALUES)
    roll = rng.random()
    if roll < 0.30:
        return f"GET {k}".encode()
    if roll < 0.42:
        return f"PUT {k} {v}".encode()
    if roll < 0.47:
        return f"DEL {k}".encode()
    if roll < 0.55:
        return rng.choice(["START", "START read-committed", "START snapshot",
                           "START serializable", "start SERIALIZABLE", "START read_committed",
                           "START bogus", "START snapshot extra"]).encode()
    if roll < 0.62:
        return rng.choice(["COMMIT", "COMMIT", "ROLLBACK", "rollback", "COMMIT now"]).encode()
    if roll < 0.75:
        return rng.choice([
            f"get {k}", f"Get {k}", f"GET  {k}", f"GET\t{k}", f"GET {k}\r", f"GET {k} ",
            f"GET {k} extra", "GET ", "GET", f"  GET {k}", f"\tGET {k}\r",
            f"GET {rng.choice(BAD_KEYS)}", f"PUT {rng.choice(BAD_KEYS)} v", f"PUT {k}",
            f"PUT {k}  two  spaces ", f"put\t{k}\t{v}\r", f"DEL {k} more", "DEL",
            f"GET {k * 40}", f"PUT {k} {LONG_VALUE}", f"PUT {k}{k} {v}", "PUT", "COMMIT\r",
            "START\t", " ROLLBACK",
        ]).encode()
    if roll < 0.82:
        return rng.choice([
            "SCAN", "SCAN VALUES", "scan prefix k", f"SCAN PREFIX {k} VALUES",
            f"SCAN AFTER {k} LIMIT 2", "SCAN LIMIT 0", "SCAN LIMIT x", "SCAN BOGUS",
            "SCAN LIMIT 1 LIMIT 2", "SCAN PREFIX", f"SCAN AFTER {rng.choice(BAD_KEYS)}",
        ]).encode()
    if roll < 0.88:
        return rng.choice(["PING", "PING hello", "ping  ключ ", "STATS", "STATS", "stats",
                           "STATS x", "HELP", "FOO", "\u017ftats", ""]).encode()
    if roll < 0.93:
        right = password or "anything"
        return rng.choice([f"AUTH {right}", f"AUTH {right}", f"auth  {right} \r", "AUTH wrong",
                           "AUTH", "AUTH wrong"]).encode()
    if roll < 0.97:
        return rng.choice([b"", b"   ", b"\t", b"\r", b"GET \xff", b"PUT k \xc3",
                           b"\xe2\x80", b"GET k\x00"])
    if roll < 0.985:
        return None
    return rng.choice([b"QUIT", b"quit", b"QUIT now", b"GET / HTTP/1.1", b"POST /x HTTP/1.0",
                       b"HOST: example.com"])


def whole_transaction(rng: random.Random, password: str | None) -> list[bytes | None]:
    """START, PUTs (mostly plain, now and then any line) and COMMIT: a transaction that may
    arrive whole, as the one-phase path takes it."""
    puts = [f"PUT {rng.choice(KEYS)} {rng.choice(VALUES)}".encode()
            if rng.random() < 0.9 else random_line(rng, password)
            for _ in range(rng.choice((0, 1, 2, 2, 3, 9, 10, 16, 17)))]
    return [b"START", *puts, rng.choice((b"COMMIT", b"COMMIT", b"COMMIT", b"ROLLBACK"))]


def random_batch(rng: random.Random, settings: Settings) -> list:
    """A client's burst of random lines, now and then with a whole transaction among them."""
    drawn = [random_line(rng, settings.password) for _ in range(rng.randint(1, 12))]
    if rng.random() < 0.4:
        at = rng.randint(0, len(drawn))
        drawn[at:at] = whole_transaction(rng, settings.password)
    return framed(rng, settings, drawn)


def transaction_batch(rng: random.Random, settings: Settings) -> list:
    """A client's burst of mostly whole transactions, with transactions left open (whose
    write intents make other clients' writes conflict), their ends, and random lines."""
    password = settings.password
    drawn: list[bytes | None] = []
    if password and rng.random() < 0.3:
        drawn.append(f"AUTH {password}".encode())
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.7:
            drawn += whole_transaction(rng, password)
        elif roll < 0.8:
            drawn += [b"START", f"PUT {rng.choice(KEYS)} open".encode()]
        elif roll < 0.9:
            drawn.append(rng.choice((b"COMMIT", b"ROLLBACK")))
        else:
            drawn.append(random_line(rng, password))
    return framed(rng, settings, drawn)


def framed(rng: random.Random, settings: Settings, drawn: list[bytes | None]) -> list:
    """The lines ``drawn`` as the server gets them: framed by a LineReader fed in random pieces
    (so lines over --max-line-bytes become LineTooLarge), plus a LineTooLarge for each
    ``None``."""
    data = b"".join(line + b"\n" for line in drawn if line is not None)
    reader = LineReader(settings.max_line_bytes)
    at = 0
    while at < len(data):
        step = rng.randint(1, 64)
        reader.feed(data[at:at + step])
        at += step
    reader.finish()
    lines = reader.take_lines(len(drawn) + 1)
    for _ in range(drawn.count(None)):
        lines.insert(rng.randint(0, len(lines)), LineTooLarge(settings.max_line_bytes))
    return lines


# -- comparing the two executors -----------------------------------------------------------

def session_state(session: Session) -> tuple:
    txn = session.txn
    return (txn and (txn.txn_id, txn.level, txn.snapshot_seq, dict(txn.undo)),
            session.authenticated, session.closing, session.hold_until,
            session.auth_failures, session.txn_bytes, session.txn_expired)


def stats_state(stats: Stats) -> dict:
    return {name: value for name, value in vars(stats).items()
            if name not in ("clock", "started_at")}


def assert_same(a: CommandExecutor, b: CommandExecutor) -> None:
    assert a.store.committed_items() == b.store.committed_items()
    assert (a.store.seq, a.store.data_bytes, a.store.committed_key_count()) == (
        b.store.seq, b.store.data_bytes, b.store.committed_key_count())
    assert a.store.version_stats() == b.store.version_stats()
    assert a.open_txn_bytes == b.open_txn_bytes
    assert stats_state(a.stats) == stats_state(b.stats)
    assert getattr(a.persistence, "records", None) == getattr(b.persistence, "records", None)


def assert_cache_is_current(db: CommandExecutor) -> None:
    """Every cached reply is what an autocommit GET of its key would answer now."""
    for line, reply in db.replies._replies.items():
        assert line.startswith(b"GET ")
        key = line[4:].decode("utf-8")
        assert get_line(key) == line
        assert not db.store.has_intent(key), key
        value = db.store.get(key)
        if value is None:
            assert reply is NOT_FOUND_REPLY, key
        else:
            assert encode_text_result(value) == reply, key
    assert db.replies.size_bytes <= db.replies.budget_bytes


VARIANTS = {
    "default": {},
    "password": {"password": PASSWORD},
    "small_lines": {"max_line_bytes": 40, "max_key_bytes": 8},
    "data_limits": {"max_data_bytes": 200, "max_txn_bytes": 400},
    "txn_timeout": {"txn_timeout": 3.0, "isolation": "snapshot"},
    "pending": {"password": PASSWORD, "txn_timeout": 3.0},  # plus commits leave a sync pending
    "serializable": {"isolation": "serializable", "max_txn_bytes": 1000},
}
CLIENTS = 4
BATCHES = 150


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_path_matches_general_path(variant, seed):
    hits, _ = compare_on_random_streams(variant, seed, random_batch)
    assert hits > 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("variant", VARIANTS)
def test_whole_transactions_match_general_path(variant, seed):
    """The one-phase path (a write-only transaction that arrives whole) against the general
    path, among conflicts, limits, timeouts and pending syncs."""
    _, whole = compare_on_random_streams(variant, seed, transaction_batch)
    assert whole > 0


def compare_on_random_streams(variant: str, seed: int, make_batch) -> tuple[int, int]:
    """Run the same random batches (``make_batch``) of several clients through
    execute_lines and through execute() line by line, asserting the same replies and state
    after each; return how many replies came from the GET cache and how many transactions
    the one-phase path ran."""
    rng = random.Random(f"{variant}-{seed}-{make_batch.__name__}")
    settings = Settings(**VARIANTS[variant])
    clock = FakeClock()
    a = make(settings, clock, pending=variant == "pending")
    b = make(settings, clock, pending=variant == "pending")
    peers = [f"10.0.0.{i % 2}:{5000 + i}" for i in range(CLIENTS)]  # two hosts for AUTH
    sa = [a.open_session(peer) for peer in peers]
    sb = [b.open_session(peer) for peer in peers]
    backlog: list[list] = [[] for _ in range(CLIENTS)]  # a held client's lines not run yet
    hits = 0
    cached = b.replies.lookup

    def lookup(line):  # counts the replies the cache gives
        nonlocal hits
        reply = cached(line)
        hits += reply is not None
        return reply

    b.replies.lookup = lookup
    one_phase = b._one_phase
    whole = 0

    def counted_one_phase(*args):  # counts the transactions run as one commit
        nonlocal whole
        replies = one_phase(*args)
        whole += replies is not None
        return replies

    b._one_phase = counted_one_phase
    for batch in range(BATCHES):
        client = rng.randrange(CLIENTS)
        clock.now += rng.choice((0.0, 0.0, 0.1, 0.5, 2.0))
        if sa[client].hold_until is not None:  # the server waits out an AUTH delay
            clock.now = max(clock.now, sa[client].hold_until)
            sa[client].hold_until = sb[client].hold_until = None
        a.expire(clock())
        b.expire(clock())
        lines = backlog[client] + make_batch(rng, settings)
        replies_a, ran_a = run_general(a, sa[client], lines)
        replies_b, ran_b = run_fast(b, sb[client], lines, rng)
        context = f"{variant} seed {seed} batch {batch} client {client} lines {lines[:ran_a]!r}"
        assert replies_b == replies_a, context  # so b"".join(...) is byte-identical too
        assert ran_b == ran_a, context
        backlog[client] = lines[ran_a:] if sa[client].hold_until is not None else []
        assert session_state(sb[client]) == session_state(sa[client]), context
        assert_same(a, b)
        assert_cache_is_current(b)
        assert not a.replies, "execute() alone never fills the cache"
        if sa[client].closing:  # QUIT, HTTP or too many failed AUTHs: a new client comes
            assert sb[client].closing
            a.close_session(sa[client])
            b.close_session(sb[client])
            sa[client] = a.open_session(peers[client])
            sb[client] = b.open_session(peers[client])
    return hits, whole


# -- the reply cache -----------------------------------------------------------------------

class Client:
    """One session on an executor, whose lines go through execute_lines."""

    def __init__(self, db: CommandExecutor, peer: str = "127.0.0.1:5000") -> None:
        self.db = db
        self.session = db.open_session(peer)

    def __call__(self, *lines: str | bytes) -> list[bytes]:
        replies: list[bytes] = []
        encoded = [line if isinstance(line, bytes) else line.encode() for line in lines]
        assert self.db.execute_lines(self.session, encoded, replies, 1 << 20) == len(lines)
        return replies


def no_general_path(db: CommandExecutor) -> None:
    """Make execute() fail, so a reply that still comes can only be the cache's."""
    def fail(session, line):
        raise AssertionError(f"execute() called for {line!r}")
    db.execute = fail


def test_a_repeated_get_is_answered_from_the_cache():
    db = CommandExecutor(Settings())
    c = Client(db)
    c("PUT k ключ", "GET k")
    reply = db.replies.lookup(b"GET k")
    assert reply == '{"status":"Ok","result":"ключ"}\n'.encode()
    assert len(db.replies) == 1
    size = db.replies.size_bytes
    assert size == len(b"GET k") + len(reply) + ENTRY_OVERHEAD_BYTES
    no_general_path(db)
    assert c("GET k", "GET k") == [reply, reply]
    assert db.stats.commands["GET"] == 3
    assert (len(db.replies), db.replies.size_bytes) == (1, size)


@pytest.mark.parametrize("change", [
    ["PUT k new"], ["DEL k"], ["START", "PUT k new"], ["START snapshot", "DEL k"],
    ["START serializable", "PUT k x", "ROLLBACK"], ["START", "PUT k x", "COMMIT"],
])
def test_a_change_of_the_key_drops_its_reply(change):
    db = CommandExecutor(Settings())
    writer, reader = Client(db), Client(db)
    reader("PUT k old", "PUT other 1", "GET k", "GET other")
    assert len(db.replies) == 2
    writer(*change)
    assert db.replies.lookup(b"GET k") is None
    assert db.replies.lookup(b"GET other") is not None
    general = CommandExecutor(Settings())
    g = Client(general)
    g("PUT k old", "PUT other 1")
    Client(general)(*change)
    assert reader("GET k") == [general.execute(g.session, b"GET k")]


def test_a_key_under_another_transactions_intent_is_not_cached():
    db = CommandExecutor(Settings())
    writer, reader = Client(db), Client(db)
    reader("PUT k old")
    writer("START", "PUT k new")
    assert reader("GET k", "GET k") == [b'{"status":"Ok","result":"old"}\n'] * 2
    assert len(db.replies) == 0
    writer("ROLLBACK")
    reader("GET k")
    assert db.replies.lookup(b"GET k") == b'{"status":"Ok","result":"old"}\n'
    writer("START", "DEL k")
    assert reader("GET k") == [b'{"status":"Ok","result":"old"}\n']
    assert len(db.replies) == 0
    writer("COMMIT")
    assert reader("GET k") == [NOT_FOUND_REPLY]
    assert db.replies.lookup(b"GET k") is NOT_FOUND_REPLY


def test_only_sessions_that_see_the_committed_value_use_the_cache():
    clock = FakeClock()
    db = CommandExecutor(Settings(password=PASSWORD, txn_timeout=5.0), clock=clock)
    c, snap, stranger, idle = Client(db), Client(db), Client(db), Client(db)
    for client in (c, snap, idle):
        client(f"AUTH {PASSWORD}")
    c("PUT k v1")
    snap("START snapshot", "GET k")
    idle("START")
    c("PUT k v2", "GET k")
    assert db.replies.lookup(b"GET k") == b'{"status":"Ok","result":"v2"}\n'
    assert snap("GET k") == [b'{"status":"Ok","result":"v1"}\n']
    assert json.loads(stranger("GET k")[0])["code"] == "AUTH_REQUIRED"
    clock.now += 10
    db.expire(clock())
    assert json.loads(idle("GET k")[0])["code"] == "LIMIT"
    assert idle("GET k") == [b'{"status":"Ok","result":"v2"}\n']


@pytest.mark.parametrize("line", [
    b"get k", b"Get k", b"GET  k", b"GET\tk", b"GET k\r", b"GET k ", b" GET k", b"GET k\t",
])
def test_only_the_canonical_get_line_is_cached(line):
    db = CommandExecutor(Settings())
    c = Client(db)
    c("PUT k v")
    assert c(line) == [b'{"status":"Ok","result":"v"}\n']
    assert len(db.replies) == 0
    c("GET k")
    assert len(db.replies) == 1


def test_a_missing_key_is_cached_as_not_found_until_it_is_written():
    db = CommandExecutor(Settings())
    c = Client(db)
    assert c("GET k", "GET k") == [NOT_FOUND_REPLY] * 2
    assert db.replies.lookup(b"GET k") is NOT_FOUND_REPLY
    assert db.stats.errors["NOT_FOUND"] == 2 and db.stats.commands["GET"] == 2
    assert c("PUT k v", "GET k") == [b'{"status":"Ok"}\n', b'{"status":"Ok","result":"v"}\n']


@pytest.mark.parametrize("line", [b"GET k\x01", b"GET k extra", b"GET \xff",
                                  b"GET " + b"k" * 2000])
def test_errors_are_not_cached(line):
    db = CommandExecutor(Settings(max_key_bytes=1000))
    c = Client(db)
    c("PUT k v")
    assert c(line)[0].startswith(b'{"status":"Error"')
    assert len(db.replies) == 0


def test_long_replies_are_not_cached():
    db = CommandExecutor(Settings())
    c = Client(db)
    fits = "x" * (MAX_REPLY_BYTES - len(b'{"status":"Ok","result":""}\n'))
    c(f"PUT fits {fits}", f"PUT long {fits}y", "GET fits", "GET long")
    assert len(db.replies.lookup(b"GET fits")) == MAX_REPLY_BYTES
    assert db.replies.lookup(b"GET long") is None


def test_the_cache_starts_again_when_its_budget_is_full():
    db = CommandExecutor(Settings())
    entry = len(b"GET k0") + len(b'{"status":"Ok","result":"v"}\n') + ENTRY_OVERHEAD_BYTES
    db.replies = ReplyCache(budget_bytes=3 * entry)
    db.store.on_change = db.replies.changed
    c = Client(db)
    for i in range(10):
        c(f"PUT k{i} v")
    for i in range(10):
        assert c(f"GET k{i}") == [b'{"status":"Ok","result":"v"}\n']
        assert db.replies.size_bytes == entry * len(db.replies) <= 3 * entry
        assert db.replies.lookup(f"GET k{i}".encode()) is not None
    assert len(db.replies) == 1  # 10 entries, a budget of 3: started again at k9
    tiny = ReplyCache(budget_bytes=entry - 1)
    tiny.add(b"GET k0", b'{"status":"Ok","result":"v"}\n')
    assert (len(tiny), tiny.size_bytes) == (0, 0)


# -- whole transactions -----------------------------------------------------------------

def test_a_whole_write_only_transaction_runs_without_the_general_path():
    db = make(Settings(), FakeClock(), pending=True)
    c = Client(db)
    no_general_path(db)
    ok = b'{"status":"Ok"}\n'
    assert c("START", "PUT a 1", "PUT b ключ", "PUT a 3", "COMMIT") == [ok] * 4 + [
        b'{"status":"Ok","result":{"seq":1}}\n']
    assert db.persistence.records == [(1, [("a", "3"), ("b", "ключ")])]
    assert db.store.committed_items() == [("a", "3"), ("b", "ключ")]
    assert db.stats.commands == {"START": 1, "PUT": 3, "COMMIT": 1}
    assert db.stats.committed["read-committed"] == 1 and c.session.txn is None


@pytest.mark.parametrize("lines", [
    [b"START", b"PUT a 1", b"GET a", b"COMMIT"],  # a read: not write-only
    [b"START", b"PUT a  1", b"COMMIT"],  # not a plain PUT line
    [b"START", b"PUT a 1"],  # the COMMIT comes in a later read
    [b"START", b"COMMIT"],  # nothing written
    [b"START", *[b"PUT a %d" % i for i in range(17)], b"COMMIT"],  # over ONE_PHASE_MAX_PUTS
])
def test_other_transactions_take_the_general_path(lines):
    db = CommandExecutor(Settings())
    c = Client(db)
    taken = []
    general = db.execute
    db.execute = lambda session, line: taken.append(line) or general(session, line)
    c(*lines)
    assert taken[0] == b"START"


def test_a_whole_transaction_on_a_read_only_log_gets_the_general_paths_errors():
    lines = [b"START", b"PUT a 1", b"COMMIT"]
    fast, slow = CommandExecutor(Settings()), CommandExecutor(Settings())
    for db in (fast, slow):
        db.persistence.readonly = "writing the log failed: No space left on device"
    replies = Client(fast)(*lines)
    session = slow.open_session()
    assert replies == [slow.execute(session, line) for line in lines]
    assert json.loads(replies[1])["code"] == "READONLY"


# -- where execute_lines stops -------------------------------------------------------------

def test_execute_lines_stops_after_the_first_line_that_leaves_a_commit_pending():
    db = make(Settings(), FakeClock(), pending=True)
    c = Client(db)
    lines = [b"GET a", b"START", b"PUT a 1", b"GET a", b"COMMIT", b"PUT b 2", b"GET b"]
    replies: list[bytes] = []
    assert db.execute_lines(c.session, lines, replies, 1 << 20) == 5
    assert replies[-1] == b'{"status":"Ok","result":{"seq":1}}\n' and len(replies) == 5
    assert db.execute_lines(c.session, lines[5:], replies, 1 << 20) == 2  # already pending
    db.persistence.sync()
    replies.clear()
    quiet = [b"DEL missing", b"START", b"GET a", b"COMMIT", b"PING", b"PUT a 2", b"PING"]
    assert db.execute_lines(c.session, quiet, replies, 1 << 20) == 6
    assert replies[-1] == b'{"status":"Ok"}\n' and db.store.seq == 3


@pytest.mark.parametrize("line", [b"QUIT", b"GET / HTTP/1.1", b"AUTH wrong"])
def test_execute_lines_stops_after_a_line_that_closes_or_holds(line):
    db = CommandExecutor(Settings(password=PASSWORD), clock=FakeClock())
    c = Client(db)
    c.session.auth_failures = 3  # the next failure is held
    replies: list[bytes] = []
    assert db.execute_lines(c.session, [b"PING", line, b"PING"], replies, 1 << 20) == 2
    assert len(replies) == (1 if line.startswith(b"GET") else 2)
    assert c.session.closing or c.session.hold_until is not None


def test_execute_lines_stops_once_the_replies_fill_the_room():
    db = CommandExecutor(Settings())
    c = Client(db)
    c("PUT k v", "GET k")
    pong = b'{"status":"Ok","result":"PONG"}\n'
    for room in range(1, 3 * len(pong) + 2):
        replies: list[bytes] = []
        ran = db.execute_lines(c.session, [b"", b"PING", b"GET k", b"", b"PING", b"PING"],
                               replies, room)
        assert sum(map(len, replies[:-1])) < room <= sum(map(len, replies)) or ran == 6


def test_stats_counts_the_cached_gets_of_its_own_batch():
    """Regression: hits are added to STATS' GET count only when execute_lines returns."""
    fast = CommandExecutor(Settings())
    slow = CommandExecutor(Settings())
    lines = [b"PUT k v", b"GET k", b"GET k", b"STATS"]
    fast_session, slow_session = fast.open_session(), slow.open_session()
    replies: list[bytes] = []
    fast.execute_lines(fast_session, lines, replies, 1 << 20)
    general = [slow.execute(slow_session, line) for line in lines]
    assert json.loads(replies[-1])["result"]["commands"] == (
        json.loads(general[-1])["result"]["commands"])
