"""STATS' keys and data_bytes: O(1) counters over the committed state only."""

from __future__ import annotations

import contextlib
import random

from kvloop.store import ConflictError, Store
from kvloop.transaction import READ_COMMITTED, SERIALIZABLE


def committed_totals(store: Store) -> tuple[int, int]:
    """(keys, bytes) recomputed the slow way from the committed state."""
    items = store.committed_items()
    return len(items), sum(len(k.encode()) + len(v.encode()) for k, v in items)


def test_uncommitted_values_are_not_counted_until_commit():
    store = Store()
    store.put("a", "1")
    txn = store.begin(READ_COMMITTED)
    store.put("a", "a much longer value", txn)
    store.put("new", "☃☃", txn)
    store.delete("a", txn)
    store.put("a", "again", txn)
    assert (store.committed_key_count(), store.data_bytes) == (1, 2)
    store.commit(txn)
    expected_bytes = len("aagain") + len("new☃☃".encode())
    assert (store.committed_key_count(), store.data_bytes) == (2, expected_bytes)


def test_uncommitted_delete_still_counts_the_committed_value():
    store = Store()
    store.put("k", "vv")
    txn = store.begin(SERIALIZABLE)
    store.delete("k", txn)
    assert (store.committed_key_count(), store.data_bytes) == (1, 3)
    store.rollback(txn)
    assert (store.committed_key_count(), store.data_bytes) == (1, 3)


def test_counters_match_the_committed_state_through_random_histories():
    rng = random.Random(7)
    store = Store()
    open_txns = []
    for step in range(2000):
        key = rng.choice("abcdefgh")
        roll = rng.random()
        if roll < 0.1:
            open_txns.append(store.begin(rng.choice((READ_COMMITTED, SERIALIZABLE))))
        elif roll < 0.2 and open_txns:
            txn = open_txns.pop(rng.randrange(len(open_txns)))
            with contextlib.suppress(ConflictError):  # failed validation rolled it back
                (store.commit if rng.random() < 0.6 else store.rollback)(txn)
        else:
            txn = rng.choice([*open_txns, None])
            with contextlib.suppress(ConflictError):  # another transaction holds the key
                if rng.random() < 0.7:
                    store.put(key, "é" * rng.randrange(1, 5), txn)
                else:
                    store.delete(key, txn)
        assert (store.committed_key_count(), store.data_bytes) == committed_totals(store), step
