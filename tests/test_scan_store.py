"""Sans-IO tests of Store.scan: range, order, paging, visibility exactly GET's (checked against
GET on random histories of several transactions), and the exact ``more`` flag."""

from __future__ import annotations

import contextlib
import random

import pytest

from kvloop.keyindex import SortedKeys, check_invariants
from kvloop.store import GHOST_BATCH, ConflictError, Store
from kvloop.transaction import LEVELS, READ_COMMITTED, SERIALIZABLE, SNAPSHOT


@pytest.fixture
def store() -> Store:
    """A store holding a few committed keys."""
    store = Store()
    for key in ["b", "a", "ab", "abc", "ac", "b1", "\u00e9", "z"]:
        store.put(key, key.upper())
    return store


def all_pages(store: Store, prefix: str = "", limit: int = 2, txn=None) -> list[str]:
    """Every key under ``prefix``, fetched ``limit`` at a time with AFTER = the last key."""
    keys: list[str] = []
    after = None
    while True:
        page = store.scan(prefix, after, limit, txn)
        keys += page.keys
        if not page.more:
            return keys
        assert len(page.keys) == limit
        after = page.keys[-1]


def test_order_prefix_after_limit(store):
    assert store.scan().keys == ["a", "ab", "abc", "ac", "b", "b1", "z", "\u00e9"]
    assert store.scan("a").keys == ["a", "ab", "abc", "ac"]
    assert store.scan("ab").keys == ["ab", "abc"]
    assert store.scan("a", after="ab").keys == ["abc", "ac"]
    assert store.scan("ab", after="a").keys == ["ab", "abc"]  # AFTER before the prefix
    assert store.scan("ab", after="ac").keys == []  # AFTER past the prefix
    assert store.scan("q").keys == []
    page = store.scan(limit=3)
    assert page.keys == ["a", "ab", "abc"] and page.more is True
    assert page.values is None
    page = store.scan("b", values=True)
    assert page == (["b", "b1"], ["B", "B1"], False)


def test_more_is_exact(store):
    assert store.scan("a", limit=4).more is False
    assert store.scan("a", limit=3).more is True
    assert store.scan(limit=8).more is False
    assert store.scan(after="z", limit=1) == (["\u00e9"], None, False)


def test_paging_returns_every_key_once(store):
    for limit in (1, 2, 3, 100):
        assert all_pages(store, limit=limit) == store.scan(limit=100).keys
        assert all_pages(store, "a", limit=limit) == ["a", "ab", "abc", "ac"]


def test_byte_budget_cuts_pages_but_never_empties_them():
    store = Store()
    for i in range(10):
        store.put(f"k{i}", "v" * 100)
    page = store.scan(limit=100, values=True, max_chars=250)
    assert page.keys == ["k0", "k1", "k2"] and page.more is True  # 102 + 102 + 102 >= 250
    page = store.scan(limit=100, values=True, max_chars=1)
    assert page.keys == ["k0"] and page.more is True
    page = store.scan(limit=100, max_chars=250)  # keys only: 2 characters each
    assert len(page.keys) == 10 and page.more is False


def test_other_transactions_uncommitted_writes_are_invisible(store):
    writer = store.begin(READ_COMMITTED)
    store.put("aa", "new", writer)  # created by an open transaction: not seen by others
    store.delete("ab", writer)  # deleted by an open transaction: others still see it
    store.put("ac", "changed", writer)  # others see the before-image
    page = store.scan("a", values=True)
    assert page.keys == ["a", "ab", "abc", "ac"]
    assert page.values == ["A", "AB", "ABC", "AC"]
    reader = store.begin(READ_COMMITTED)
    assert store.scan("a", txn=reader).keys == ["a", "ab", "abc", "ac"]
    # The writer sees its own writes merged in.
    page = store.scan("a", txn=writer, values=True)
    assert page.keys == ["a", "aa", "abc", "ac"]
    assert page.values == ["A", "new", "ABC", "changed"]
    store.commit(writer)
    assert store.scan("a", txn=reader).keys == ["a", "aa", "abc", "ac"]
    assert store.scan("a").keys == ["a", "aa", "abc", "ac"]


def test_rollback_leaves_the_index_as_it_was(store):
    before = store.scan(limit=100).keys
    txn = store.begin(READ_COMMITTED)
    store.put("new", "1", txn)
    store.delete("a", txn)
    store.delete("b", txn)
    store.put("b", "again", txn)
    assert store.scan(limit=100, txn=txn).keys == sorted({*before, "new"} - {"a"})
    store.rollback(txn)
    assert store.scan(limit=100).keys == before


def test_more_skips_own_deletions_exactly(store):
    txn = store.begin(READ_COMMITTED)
    store.delete("ac", txn)
    store.delete("b", txn)
    page = store.scan(limit=1, after="abc", txn=txn)
    assert page == (["b1"], None, True)
    for key in ("b1", "z", "\u00e9"):
        store.delete(key, txn)
    assert store.scan(after="abc", txn=txn) == ([], None, False)
    assert store.scan("a", limit=3, txn=txn) == (["a", "ab", "abc"], None, False)


def test_own_created_then_deleted_key_is_not_seen(store):
    txn = store.begin(READ_COMMITTED)
    store.put("aa", "1", txn)
    store.delete("aa", txn)
    assert store.scan("a", txn=txn).keys == ["a", "ab", "abc", "ac"]
    store.commit(txn)
    assert store.scan("a").keys == ["a", "ab", "abc", "ac"]


class CountingKeys(SortedKeys):
    """A SortedKeys that records every add and discard."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def add(self, key: str) -> None:
        self.calls.append(("add", key))
        super().add(key)

    def discard(self, key: str) -> None:
        self.calls.append(("discard", key))
        super().discard(key)


def test_only_committed_creations_and_deletions_touch_the_index():
    store = Store()
    store._keys = keys = CountingKeys()
    store.put("a", "1")
    store.put("b", "1")
    store.put("a", "2")  # overwrite: nothing
    txn = store.begin(READ_COMMITTED)
    store.put("b", "2", txn)  # uncommitted: nothing
    store.put("new", "1", txn)
    store.put("gone", "1", txn)
    store.delete("gone", txn)
    store.delete("a", txn)
    assert keys.calls == [("add", "a"), ("add", "b")]
    store.commit(txn)  # b overwritten: nothing; new created, a deleted
    assert sorted(keys.calls[2:]) == [("add", "new"), ("discard", "a")]
    txn = store.begin(READ_COMMITTED)
    store.put("c", "1", txn)
    store.delete("b", txn)
    store.rollback(txn)
    store.delete("missing")
    assert len(keys.calls) == 4
    assert list(keys) == ["b", "new"]


def test_serializable_scan_records_its_range(store):
    """The range a page covered: to its last key while more follow, else to the end of the
    prefix (from the start, or from AFTER)."""
    txn = store.begin(SERIALIZABLE)
    store.put("ab", "mine", txn)
    assert store.scan("a", txn=txn).keys == ["a", "ab", "abc", "ac"]
    assert store.scan("", "a", 2, txn).keys == ["ab", "abc"]
    assert txn.ranges == [("a", None, None), ("", "a", "abc")]
    assert store.scan("", None, 1, store.begin(SNAPSHOT)).keys == ["a"]


@pytest.mark.parametrize("level", [SNAPSHOT, SERIALIZABLE])
def test_scan_reads_the_snapshot(store, level):
    """Keys created after the snapshot are not listed, keys deleted or changed after it are
    listed with the snapshot's values, however the index changed meanwhile; own writes on top."""
    txn = store.begin(level)
    assert store.get("z", txn) == "Z"  # takes the snapshot
    store.put("aa", "new")
    store.delete("ab")
    store.delete("abc")
    store.put("ac", "changed")
    store.put("abc", "again")  # deleted and created again after the snapshot
    store.put("mine", "1", txn)
    page = store.scan("a", txn=txn, values=True)
    assert (page.keys, page.values) == (["a", "ab", "abc", "ac"], ["A", "AB", "ABC", "AC"])
    assert store.scan("", "b1", 10, txn).keys == ["mine", "z", "\u00e9"]
    assert store.scan("a").keys == ["a", "aa", "abc", "ac"]  # autocommit: latest
    assert all_pages(store, "a", 1, txn) == ["a", "ab", "abc", "ac"]
    store.rollback(txn)
    assert list(store._keys) == [k for k, _ in store.committed_items()]  # ghost ab buried


def test_ghosts_stay_while_a_snapshot_can_see_them(store):
    """A key deleted while a snapshot is open stays in the index (skipped by every other
    scan) until the last snapshot that sees it ends; re-creating it keeps it listed."""
    old = store.begin(SNAPSHOT)
    store.get("a", old)
    store.delete("b")
    young = store.begin(SNAPSHOT)
    store.get("a", young)  # after b's deletion: sees it deleted
    store.delete("z")
    rc = store.begin(READ_COMMITTED)
    store.put("zz", "1", rc)
    assert "b" in store._keys and "z" in store._keys
    for viewer in (None, rc):
        assert "b" not in store.scan("", txn=viewer).keys
        assert "z" not in store.scan("", txn=viewer).keys
    assert store.scan("b", txn=old).keys == ["b", "b1"]
    assert store.scan("z", txn=young).keys == ["z"]
    store.commit(old)
    assert "b" not in store._keys and "z" in store._keys  # only young needs z
    store.put("z", "back")
    store.commit(young)
    store.commit(rc)
    assert list(store._keys) == [k for k, _ in store.committed_items()]
    assert store.scan("z").keys == ["z", "zz"]


def test_many_ghosts_are_buried_in_batches():
    """Ending a snapshot after many deletions takes only a batch of ghosts out of the index
    at once; the next commits take the rest, and scans are exact all along."""
    store = Store()
    for n in range(GHOST_BATCH * 3):
        store.put(f"k{n:05d}", "v")
    txn = store.begin(SNAPSHOT)
    store.get("k00000", txn)
    for n in range(0, GHOST_BATCH * 3, 2):
        store.delete(f"k{n:05d}")
    live = [k for k, _ in store.committed_items()]
    store.commit(txn)
    assert len(store._ghosts) == GHOST_BATCH * 3 // 2 - GHOST_BATCH
    assert all_pages(store, "k", 100) == live
    for n in range(3):
        store.put("other", str(n))
    assert not store._ghosts
    assert list(store._keys) == [*live, "other"]
    check_invariants(store._keys)


def test_phantom_in_a_scanned_range_fails_a_serializable_writer(store):
    """A creation, change or deletion committed by another inside the scanned range after
    the snapshot fails the COMMIT of a transaction that wrote; outside it, or read-only, not."""
    for change in (lambda: store.put("ad", "new"), lambda: store.put("ac", "x"),
                   lambda: store.delete("abc")):
        txn = store.begin(SERIALIZABLE)
        assert store.scan("a", None, 10, txn).more is False
        change()
        store.put("out", "1", txn)
        with pytest.raises(ConflictError) as info:
            store.commit(txn)
        assert "rolled back" in info.value.mesg and "PREFIX 'a'" in info.value.mesg
        assert store.get("out") is None
    txn = store.begin(SERIALIZABLE)
    assert store.scan("a", None, 2, txn).keys == ["a", "ab"]  # more: the range ends at ab
    store.put("ada", "past the page")
    store.put("b", "other prefix")
    store.put("out", "1", txn)
    assert store.commit(txn) == store.seq
    reader = store.begin(SERIALIZABLE)
    store.scan("a", txn=reader)
    store.put("aaa", "phantom")
    assert store.scan("a", txn=reader).keys == ["a", "ab", "ac", "ad", "ada"]  # no aaa
    assert store.commit(reader) == store.seq  # read-only: always commits


@pytest.mark.parametrize("seed", range(4))
def test_random_histories_scan_equals_get(seed):
    """Several transactions (at every level) and autocommit writes at random; after every
    step, every party's scan (whole range and a prefix, paged) is exactly the keys its GET
    finds, with GET's values (at a snapshot for snapshot and serializable)."""
    rng = random.Random(seed)
    store = Store()
    universe = [a + b for a in "abc" for b in ["", "a", "b", "\u00e9"]]
    open_txns: list = []
    for _ in range(800):
        action = rng.random()
        key = rng.choice(universe)
        if action < 0.1 and len(open_txns) < 3:
            open_txns.append(store.begin(rng.choice(LEVELS)))
        elif action < 0.2 and open_txns:
            txn = open_txns.pop(rng.randrange(len(open_txns)))
            if rng.random() < 0.5:
                with contextlib.suppress(ConflictError):  # serializable validation failed
                    store.commit(txn)
            else:
                store.rollback(txn)
        else:
            txn = rng.choice([None, *open_txns])
            try:
                if rng.random() < 0.6:
                    store.put(key, f"v{rng.randrange(100)}", txn)
                else:
                    store.delete(key, txn)
            except Exception as exc:  # a CONFLICT leaves everything as it was
                assert type(exc).__name__ == "ConflictError"
        check_invariants(store._keys)
        chains = store._versions._chains.values()  # the O(1) counter matches a recount
        assert store.version_stats()["old_values"] == sum(len(c) // 2 for c in chains)
        for viewer in [None, *open_txns]:
            expected = {k: store.get(k, viewer) for k in universe}
            expected = {k: v for k, v in expected.items() if v is not None}
            keys = sorted(expected)
            page = store.scan("", None, 1000, viewer, values=True)
            assert page.keys == keys
            assert page.values == [expected[k] for k in keys]
            assert all_pages(store, "b", 2, viewer) == [k for k in keys if k.startswith("b")]
    for txn in open_txns:
        store.rollback(txn)
    # Every snapshot has ended: the index holds exactly the committed keys again.
    assert list(store._keys) == [k for k, _ in store.committed_items()]


def test_paging_inside_a_transaction_that_keeps_writing():
    """A transaction's own writes are kept sorted between its scans: keys it writes between
    two pages show up in later pages if they sort after the cursor, never twice, in order."""
    store = Store()
    for i in range(0, 3000, 2):
        store.put(f"k{i:05d}", "committed")
    txn = store.begin(READ_COMMITTED)
    rng = random.Random(5)
    for i in rng.sample(range(1, 3000, 2), 1000):
        store.put(f"k{i:05d}", "own", txn)
    for i in range(0, 3000, 10):
        store.delete(f"k{i:05d}", txn)
    must_see = {f"k{i:05d}" for i in range(3000) if store.get(f"k{i:05d}", txn) is not None}
    must_not_see: set[str] = set()
    seen: list[str] = []
    after = None
    step = 0
    while True:
        page = store.scan("k", after, 97, txn)
        seen += page.keys
        if not page.more:
            break
        after = page.keys[-1]
        ahead, behind = f"k{2999 - step:05d}x", f"k{step:05d}x"
        store.put(ahead, "late", txn)
        store.put(behind, "late", txn)
        (must_see if ahead > after else must_not_see).add(ahead)
        (must_see if behind > after else must_not_see).add(behind)
        step += 1
    assert step > 10 and must_not_see
    assert seen == sorted(must_see)
    everything = [f"k{i:05d}" for i in range(3000)] + [f"k{i:05d}x" for i in range(3000)]
    assert store.scan("k", None, 10_000, txn).keys == sorted(
        k for k in everything if store.get(k, txn) is not None)
