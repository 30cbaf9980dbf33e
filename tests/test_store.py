"""Sans-IO tests of the Store: autocommit, write intents, rollback, commit sequence and
serializable validation (SPEC §4), driven directly with no sockets and no command layer."""

from __future__ import annotations

import pytest

from kvloop import errors
from kvloop.store import (
    FIRST_COMMITTER_CONFLICT,
    VALIDATION_CONFLICT,
    WRITE_CONFLICT,
    ConflictError,
    Store,
)
from kvloop.transaction import READ_COMMITTED, SERIALIZABLE, SNAPSHOT


def utf8_len(*texts: str) -> int:
    """Total UTF-8 length of ``texts``."""
    return sum(len(t.encode("utf-8")) for t in texts)


@pytest.fixture
def store() -> Store:
    """An empty store."""
    return Store()


# -- autocommit ---------------------------------------------------------------------------

class TestAutocommit:
    """Writes outside a transaction: each is its own commit."""

    def test_put_get_delete(self, store):
        assert store.get("a") is None
        store.put("a", "1")
        assert store.get("a") == "1"
        store.put("a", "2")
        assert store.get("a") == "2"
        store.delete("a")
        assert store.get("a") is None

    def test_each_write_is_a_commit(self, store):
        assert store.seq == 0
        store.put("a", "1")
        assert store.seq == 1
        store.put("a", "2")
        assert store.seq == 2
        store.delete("a")
        assert store.seq == 3

    def test_deleting_a_missing_key_is_no_commit(self, store):
        store.delete("missing")
        assert store.seq == 0
        assert store.committed_items() == []

    def test_reads_do_not_bump_seq(self, store):
        store.put("a", "1")
        store.get("a")
        store.get("b")
        assert store.seq == 1

    def test_values_kept_exactly(self, store):
        value = '{"first_name":"George", "last_name":"Washington"}  '
        store.put("georgew", value)
        assert store.get("georgew") == value
        store.put("ключ", "значение ✓")
        assert store.get("ключ") == "значение ✓"


# -- transactions: visibility, conflicts, rollback ------------------------------------------

class TestTransactions:
    """Write intents, before-images, CONFLICT, commit numbers and the hook."""

    def test_writes_visible_to_owner_only(self, store):
        store.put("old", "before")
        txn = store.begin(READ_COMMITTED)
        store.put("old", "after", txn)
        store.put("new", "created", txn)
        store.delete("gone", txn)
        assert store.get("old", txn) == "after"
        assert store.get("new", txn) == "created"
        # Everyone else: the before-image, or nothing for a key txn created.
        other = store.begin(READ_COMMITTED)
        for reader in (None, other):
            assert store.get("old", reader) == "before"
            assert store.get("new", reader) is None

    def test_delete_in_txn_hides_key_from_owner_only(self, store):
        store.put("k", "v")
        txn = store.begin(READ_COMMITTED)
        store.delete("k", txn)
        assert store.get("k", txn) is None
        assert store.get("k") == "v"

    def test_writes_in_txn_do_not_bump_seq_until_commit(self, store):
        txn = store.begin(READ_COMMITTED)
        store.put("a", "1", txn)
        store.put("b", "2", txn)
        assert store.seq == 0
        assert store.commit(txn) == 1
        assert store.seq == 1
        assert store.get("a") == "1"
        assert store.get("b") == "2"

    @pytest.mark.parametrize("second", ["txn", "autocommit"])
    @pytest.mark.parametrize("op", ["put", "delete"])
    def test_second_writer_conflicts_with_no_effect(self, store, second, op):
        store.put("k", "committed")
        first = store.begin(READ_COMMITTED)
        store.put("k", "first", first)
        other = store.begin(READ_COMMITTED) if second == "txn" else None
        seq = store.seq
        with pytest.raises(ConflictError) as info:
            if op == "put":
                store.put("k", "second", other)
            else:
                store.delete("k", other)
        assert info.value.code == errors.CONFLICT
        assert info.value.cause == WRITE_CONFLICT
        assert "'k'" in info.value.mesg
        assert "another open transaction" in info.value.mesg
        # No effect: the first writer still sees its value, others the before-image.
        assert store.get("k", first) == "first"
        assert store.get("k") == "committed"
        assert store.seq == seq
        if other is not None:
            assert other.undo == {}
            # The loser's transaction is still usable for other keys.
            store.put("other", "x", other)
            assert store.commit(other) == seq + 1
        assert store.commit(first) == store.seq
        assert store.get("k") == "first"

    def test_first_writer_keeps_the_key_until_it_finishes(self, store):
        first = store.begin(READ_COMMITTED)
        store.put("k", "1", first)
        store.put("k", "2", first)  # rewriting its own key is fine
        store.delete("k", first)
        store.put("k", "3", first)
        with pytest.raises(ConflictError):
            store.put("k", "x")
        store.rollback(first)
        store.put("k", "x")  # free again
        assert store.get("k") == "x"

    def test_key_free_after_commit(self, store):
        first = store.begin(READ_COMMITTED)
        store.put("k", "1", first)
        store.commit(first)
        second = store.begin(READ_COMMITTED)
        store.put("k", "2", second)
        store.commit(second)
        assert store.get("k") == "2"
        assert store.open_intents() == 0

    def test_rollback_restores_overwritten_deleted_and_created_keys(self, store):
        store.put("over", "o1")
        store.put("del", "d1")
        seq = store.seq
        before = store.committed_items()
        txn = store.begin(READ_COMMITTED)
        store.put("over", "o2", txn)
        store.put("over", "o3", txn)
        store.delete("del", txn)
        store.put("new", "n1", txn)
        store.delete("new", txn)
        store.put("new", "n2", txn)
        store.rollback(txn)
        assert store.get("over") == "o1"
        assert store.get("del") == "d1"
        assert store.get("new") is None
        assert store.committed_items() == before
        assert store.seq == seq
        assert store.open_intents() == 0

    def test_commit_returns_increasing_seq(self, store):
        seqs = []
        for i in range(5):
            txn = store.begin(READ_COMMITTED)
            store.put(f"k{i}", "v", txn)
            seqs.append(store.commit(txn))
            store.put("auto", str(i))
        assert seqs == [1, 3, 5, 7, 9]
        assert store.seq == 10

    def test_read_only_commit_returns_current_seq_without_bump(self, store):
        store.put("a", "1")
        store.put("b", "2")
        for level in (READ_COMMITTED, SERIALIZABLE):
            txn = store.begin(level)
            store.get("a", txn)
            assert store.commit(txn) == 2
            assert store.seq == 2
        empty = store.begin(READ_COMMITTED)
        assert store.commit(empty) == 2

    def test_commit_with_only_a_delete_of_a_missing_key(self, store):
        txn = store.begin(READ_COMMITTED)
        store.delete("nothing", txn)
        seq = store.commit(txn)
        assert seq == store.seq
        assert store.get("nothing") is None
        assert store.committed_key_count() == 0

    def test_on_commit_hook_gets_seq_and_writes(self):
        calls = []
        store = Store(on_commit=lambda seq, writes: calls.append((seq, list(writes))))
        store.put("a", "1")
        store.delete("a")
        store.delete("never-existed")  # no commit, no call
        txn = store.begin(READ_COMMITTED)
        store.put("x", "1", txn)
        store.put("y", "2", txn)
        store.delete("x", txn)
        store.commit(txn)
        rolled = store.begin(READ_COMMITTED)
        store.put("z", "9", rolled)
        store.rollback(rolled)
        read_only = store.begin(READ_COMMITTED)
        store.commit(read_only)
        assert calls[0] == (1, [("a", "1")])
        assert calls[1] == (2, [("a", None)])
        assert calls[2][0] == 3
        # x was created and deleted again inside the transaction: no change to log.
        assert calls[2][1] == [("y", "2")]
        assert len(calls) == 3

    def test_transaction_deleting_only_missing_keys_makes_no_commit(self):
        calls = []
        store = Store(on_commit=lambda seq, writes: calls.append((seq, list(writes))))
        store.put("a", "1")
        txn = store.begin(READ_COMMITTED)
        store.delete("nope", txn)
        assert store.commit(txn) == 1  # the current seq: nothing changed
        txn = store.begin(READ_COMMITTED)
        store.delete("nope", txn)
        store.delete("a", txn)
        assert store.commit(txn) == 2
        assert calls == [(1, [("a", "1")]), (2, [("a", None)])]

    def test_on_commit_runs_before_the_commit_takes_effect(self):
        """The log is appended first: others still see the before-image during the hook."""
        seen = []
        store = Store()
        store.on_commit = lambda seq, writes: seen.append((seq, store.seq, store.get("k")))
        txn = store.begin(READ_COMMITTED)
        store.put("k", "v", txn)
        store.commit(txn)
        store.put("k", "w")
        assert seen == [(1, 0, None), (2, 1, "v")]
        assert store.get("k") == "w"


class TestCommitPuts:
    """commit_puts: a whole write-only transaction as one commit, without intents."""

    @pytest.mark.parametrize("level", [READ_COMMITTED, SNAPSHOT, SERIALIZABLE])
    def test_same_as_a_transaction_that_wrote_and_committed(self, level):
        one, general = Store(), Store()
        logged: dict[str, list] = {"one": [], "general": []}
        one.on_commit = lambda seq, writes: logged["one"].append((seq, list(writes)))
        general.on_commit = lambda seq, writes: logged["general"].append((seq, list(writes)))
        changed: list = []
        one.on_change = changed.append
        watcher = one.begin(SNAPSHOT), general.begin(SNAPSHOT)  # old values kept for them
        for store, watching in zip((one, general), watcher):
            store.put("a", "old")
            store.put("gone", "x")
            store.get("a", watching)
            store.delete("gone")
        assert one.commit_puts({"a": "ключ", "new": "1"}) == 4
        txn = general.begin(level)
        general.put("a", "x", txn)
        general.put("new", "1", txn)
        general.put("a", "ключ", txn)
        assert general.commit(txn) == 4
        assert logged["one"] == logged["general"]
        assert changed == ["a", "gone", "gone", "a", "new"]
        for attr in ("seq", "data_bytes", "_next_txn_id"):
            assert getattr(one, attr) == getattr(general, attr), attr
        assert one.committed_items() == general.committed_items()
        assert one.scan().keys == general.scan().keys == ["a", "new"]
        assert one.version_stats() == general.version_stats()
        assert one.get("a", watcher[0]) == "old"

    def test_a_key_under_an_intent_conflicts_and_nothing_changes(self, store):
        store.put("a", "1")
        holder = store.begin(READ_COMMITTED)
        store.put("b", "mine", holder)
        with pytest.raises(ConflictError) as exc:
            store.commit_puts({"a": "2", "b": "3"})
        assert exc.value.cause == WRITE_CONFLICT and "'b'" in exc.value.mesg
        assert (store.seq, store.get("a"), store.get("b")) == (1, "1", None)
        store.rollback(holder)
        assert store.commit_puts({"a": "2", "b": "3"}) == 2

    def test_a_failing_log_changes_nothing(self, store):
        store.put("a", "1")

        def refuse(seq, writes):
            raise ValueError("the log refused")

        store.on_commit = refuse
        before = (store.seq, store.data_bytes, store.committed_items(), store._next_txn_id)
        with pytest.raises(ValueError):
            store.commit_puts({"a": "2", "b": "3"})
        assert (store.seq, store.data_bytes, store.committed_items(),
                store._next_txn_id) == before


# -- accounting ---------------------------------------------------------------------------

class TestAccounting:
    """data_bytes, key counts and committed_items through commits and rollbacks."""

    def test_data_bytes_and_key_count_through_autocommit(self, store):
        assert store.data_bytes == 0
        assert store.committed_key_count() == 0
        store.put("a", "12345")
        assert store.data_bytes == 6
        store.put("a", "1")
        assert store.data_bytes == 2
        store.put("é", "€")  # 2 + 3 bytes
        assert store.data_bytes == 2 + utf8_len("é", "€")
        assert store.committed_key_count() == 2
        store.delete("a")
        assert store.data_bytes == utf8_len("é", "€")
        assert store.committed_key_count() == 1
        store.delete("é")
        assert store.data_bytes == 0
        assert store.committed_key_count() == 0

    def test_key_count_ignores_uncommitted_creates_and_deletes(self, store):
        store.put("keep", "1")
        store.put("drop", "2")
        txn = store.begin(READ_COMMITTED)
        store.put("new1", "x", txn)
        store.put("new2", "x", txn)
        store.delete("drop", txn)
        store.put("keep", "changed", txn)
        assert store.committed_key_count() == 2
        store.commit(txn)
        assert store.committed_key_count() == 3  # keep, new1, new2

    def test_accounting_restored_by_rollback(self, store):
        store.put("a", "äöü")
        store.put("b", "plain")
        bytes_before = store.data_bytes
        assert bytes_before == utf8_len("a", "äöü", "b", "plain")
        txn = store.begin(READ_COMMITTED)
        store.put("a", "a much longer value ☃☃☃", txn)
        store.delete("b", txn)
        store.put("c", "日本語", txn)
        store.rollback(txn)
        assert store.data_bytes == bytes_before
        assert store.committed_key_count() == 2

    def test_accounting_after_commit_matches_committed_items(self, store):
        store.put("a", "1")
        store.put("b", "22")
        txn = store.begin(SERIALIZABLE)
        store.put("a", "ünïcödé", txn)
        store.delete("b", txn)
        store.put("c", "333", txn)
        store.commit(txn)
        items = store.committed_items()
        assert items == [("a", "ünïcödé"), ("c", "333")]
        assert store.data_bytes == sum(utf8_len(k, v) for k, v in items)
        assert store.committed_key_count() == len(items)

    def test_committed_items_hide_uncommitted_writes(self, store):
        store.put("a", "1")
        store.put("b", "2")
        txn = store.begin(READ_COMMITTED)
        store.put("a", "changed", txn)
        store.delete("b", txn)
        store.put("c", "new", txn)
        assert store.committed_items() == [("a", "1"), ("b", "2")]
        store.commit(txn)
        assert store.committed_items() == [("a", "changed"), ("c", "new")]

    def test_open_intents(self, store):
        txn = store.begin(READ_COMMITTED)
        store.put("a", "1", txn)
        store.put("a", "2", txn)
        store.delete("b", txn)
        assert store.open_intents() == 2
        store.commit(txn)
        assert store.open_intents() == 0


# -- serializable validation ----------------------------------------------------------------

class TestSerializable:
    """Read-set validation at COMMIT and the pruning of version records."""

    def test_read_then_changed_by_another_commit_fails_and_rolls_back(self, store):
        store.put("x", "1")
        store.put("mine", "orig")
        txn = store.begin(SERIALIZABLE)
        assert store.get("x", txn) == "1"
        store.put("mine", "new", txn)
        store.put("created", "c", txn)
        store.put("x", "2")  # another commit changes what txn read
        seq = store.seq
        with pytest.raises(ConflictError) as info:
            store.commit(txn)
        assert info.value.code == errors.CONFLICT
        assert info.value.cause == VALIDATION_CONFLICT
        assert "'x'" in info.value.mesg
        assert "rolled back" in info.value.mesg
        # The transaction's writes are gone and its keys free; no commit happened.
        assert store.get("mine") == "orig"
        assert store.get("created") is None
        assert store.seq == seq
        assert store.open_intents() == 0
        store.put("mine", "free")

    def test_read_of_missing_key_then_created_by_another_conflicts(self, store):
        txn = store.begin(SERIALIZABLE)
        assert store.get("ghost", txn) is None
        store.put("out", "1", txn)
        store.put("ghost", "boo")
        with pytest.raises(ConflictError) as info:
            store.commit(txn)
        assert info.value.cause == VALIDATION_CONFLICT
        assert store.get("out") is None

    def test_read_then_deleted_by_another_txn_conflicts(self, store):
        store.put("x", "1")
        txn = store.begin(SERIALIZABLE)
        store.get("x", txn)
        other = store.begin(READ_COMMITTED)
        store.delete("x", other)
        store.commit(other)
        store.put("out", "1", txn)
        with pytest.raises(ConflictError):
            store.commit(txn)

    def test_read_of_before_image_then_owner_commits_conflicts(self, store):
        store.put("x", "1")
        writer = store.begin(READ_COMMITTED)
        store.put("x", "2", writer)
        txn = store.begin(SERIALIZABLE)
        assert store.get("x", txn) == "1"
        store.commit(writer)
        assert store.get("x", txn) == "1"  # still its snapshot
        store.put("out", "1", txn)
        with pytest.raises(ConflictError):
            store.commit(txn)

    def test_read_of_before_image_then_owner_rolls_back_is_fine(self, store):
        store.put("x", "1")
        writer = store.begin(READ_COMMITTED)
        store.put("x", "2", writer)
        txn = store.begin(SERIALIZABLE)
        assert store.get("x", txn) == "1"
        store.rollback(writer)
        store.put("y", "1", txn)
        assert store.commit(txn) == store.seq

    def test_unchanged_reads_commit(self, store):
        store.put("x", "1")
        txn = store.begin(SERIALIZABLE)
        store.get("x", txn)
        store.get("missing", txn)
        store.put("unrelated", "u")  # a commit on a key txn did not read
        store.put("y", "2", txn)
        assert store.commit(txn) == 3
        assert store.get("y") == "2"

    def test_change_before_the_read_is_fine(self, store):
        txn = store.begin(SERIALIZABLE)
        store.put("x", "changed-before-read")
        assert store.get("x", txn) == "changed-before-read"
        store.put("y", "1", txn)
        store.commit(txn)
        assert store.get("y") == "1"

    def test_read_of_own_write_needs_no_validation(self, store):
        txn = store.begin(SERIALIZABLE)
        store.put("k", "mine", txn)
        assert store.get("k", txn) == "mine"
        assert "k" not in txn.reads
        store.commit(txn)
        assert store.get("k") == "mine"

    def test_read_then_write_same_key_validates_the_read(self, store):
        store.put("counter", "1")
        a = store.begin(SERIALIZABLE)
        b = store.begin(SERIALIZABLE)
        assert store.get("counter", a) == "1"
        assert store.get("counter", b) == "1"
        store.put("counter", "2", a)
        with pytest.raises(ConflictError) as info:
            store.put("counter", "2", b)  # write intent held by a
        assert info.value.cause == WRITE_CONFLICT
        store.commit(a)
        # b read the old value, so a lost update is refused at b's COMMIT too.
        store.put("other", "x", b)
        with pytest.raises(ConflictError) as info:
            store.commit(b)
        assert info.value.cause == VALIDATION_CONFLICT
        assert store.get("counter") == "2"
        assert store.get("other") is None

    def test_write_skew_is_prevented(self, store):
        store.put("alice", "on")
        store.put("bob", "on")
        t1 = store.begin(SERIALIZABLE)
        t2 = store.begin(SERIALIZABLE)
        for t in (t1, t2):
            store.get("alice", t)
            store.get("bob", t)
        store.put("alice", "off", t1)
        store.put("bob", "off", t2)
        store.commit(t1)
        with pytest.raises(ConflictError):
            store.commit(t2)
        assert store.committed_items() == [("alice", "off"), ("bob", "on")]

    def test_read_committed_never_validates(self, store):
        store.put("x", "1")
        txn = store.begin(READ_COMMITTED)
        assert txn.reads is None
        store.get("x", txn)
        store.get("missing", txn)
        store.put("x", "2")
        store.put("missing", "now")
        store.put("y", "1", txn)
        assert store.commit(txn) == store.seq
        assert store.get("y") == "1"

    def test_read_only_transaction_always_commits(self, store):
        store.put("x", "1")
        txn = store.begin(SERIALIZABLE)
        assert store.get("x", txn) == "1"
        assert store.get("gone", txn) is None
        store.put("x", "2")
        store.put("gone", "here")
        assert store.get("x", txn) == "1"
        assert store.get("gone", txn) is None
        assert store.commit(txn) == store.seq == 3

    def test_only_deleting_missing_keys_counts_as_read_only(self, store):
        txn = store.begin(SERIALIZABLE)
        assert store.get("x", txn) is None
        store.delete("never", txn)
        store.put("x", "1")
        assert store.commit(txn) == store.seq

    def test_versions_pruned_once_serializable_transactions_finish(self, store):
        store.put("a", "0")
        t1 = store.begin(SERIALIZABLE)
        t2 = store.begin(SERIALIZABLE)
        store.get("a", t1)
        store.get("b", t2)
        for i in range(20):
            store.put(f"k{i}", str(i))
        assert store.version_stats() == {"open_snapshots": 2, "tracked_keys": 20,
                                         "old_values": 20}
        store.commit(t1)
        store.rollback(t2)
        assert store.version_stats() == {"open_snapshots": 0, "tracked_keys": 0,
                                         "old_values": 0}
        store.put("after", "1")  # nothing open: nothing recorded
        assert store.version_stats()["tracked_keys"] == 0

    def test_versions_pruned_after_failed_validation(self, store):
        t1 = store.begin(SERIALIZABLE)
        store.get("a", t1)
        store.put("b", "1", t1)
        store.put("a", "1")
        with pytest.raises(ConflictError):
            store.commit(t1)
        assert store.version_stats() == {"open_snapshots": 0, "tracked_keys": 0,
                                         "old_values": 0}

    def test_versions_reach_back_only_to_oldest_open(self, store):
        old = store.begin(SERIALIZABLE)
        store.get("z", old)
        store.put("a", "1")
        store.put("b", "1")
        young = store.begin(SERIALIZABLE)
        store.get("z", young)
        store.put("c", "1")
        store.commit(old)
        # Only changes after the young transaction's snapshot matter to it.
        assert store.version_stats() == {"open_snapshots": 1, "tracked_keys": 1,
                                         "old_values": 1}
        assert store.get("c", young) is None  # its snapshot: before c was created
        assert store.commit(young) == store.seq  # read-only: commits
        assert store.version_stats()["tracked_keys"] == 0

    def test_many_serializable_rounds_leave_no_versions(self, store):
        for i in range(50):
            t = store.begin(SERIALIZABLE)
            store.get(f"k{i % 5}", t)
            store.put(f"k{(i + 1) % 5}", str(i))  # a key t did not read
            store.put(f"w{i}", "x", t)
            if i % 2:
                store.rollback(t)
            else:
                store.commit(t)
        assert store.version_stats() == {"open_snapshots": 0, "tracked_keys": 0,
                                         "old_values": 0}
        assert store.open_intents() == 0


# -- snapshot reads and version memory --------------------------------------------------------

@pytest.fixture(params=[SNAPSHOT, SERIALIZABLE])
def snap_level(request) -> str:
    """Each level that reads at a snapshot."""
    return request.param


class TestSnapshot:
    """Reads at the snapshot, first committer wins, and which older values are kept."""

    def test_snapshot_taken_at_first_read_not_at_begin(self, store, snap_level):
        store.put("x", "1")
        txn = store.begin(snap_level)
        assert txn.snapshot_seq is None
        store.put("x", "2")  # before the first read: visible
        assert store.get("x", txn) == "2"
        assert txn.snapshot_seq == 2
        store.put("x", "3")
        store.delete("x")
        store.put("new", "n")
        assert store.get("x", txn) == "2"
        assert store.get("new", txn) is None
        assert store.get("x") is None and store.get("new") == "n"  # autocommit: latest
        store.commit(txn)

    def test_snapshot_taken_at_first_write(self, store, snap_level):
        txn = store.begin(snap_level)
        store.put("mine", "1", txn)
        assert txn.snapshot_seq == 0
        store.put("x", "later")
        assert store.get("x", txn) is None
        assert store.get("mine", txn) == "1"
        store.rollback(txn)

    def test_snapshot_sees_before_image_of_uncommitted_and_not_its_later_commit(
            self, store, snap_level):
        store.put("x", "1")
        writer = store.begin(READ_COMMITTED)
        store.put("x", "2", writer)
        txn = store.begin(snap_level)
        assert store.get("x", txn) == "1"
        store.commit(writer)
        assert store.get("x", txn) == "1"
        store.put("x", "3")
        assert store.get("x", txn) == "1"
        store.commit(txn)

    def test_first_committer_wins(self, store, snap_level):
        store.put("x", "1")
        txn = store.begin(snap_level)
        assert store.get("y", txn) is None
        store.put("x", "2")  # committed after the snapshot
        with pytest.raises(ConflictError) as info:
            store.put("x", "3", txn)
        assert info.value.cause == FIRST_COMMITTER_CONFLICT
        assert "'x'" in info.value.mesg and "rolled back" not in info.value.mesg
        with pytest.raises(ConflictError):
            store.delete("x", txn)
        # The statement had no effect; the transaction is open and can write other keys.
        assert store.get("x") == "2" and store.open_intents() == 0
        store.put("y", "1", txn)
        assert store.commit(txn) == store.seq
        assert store.get("y") == "1"

    def test_write_of_key_changed_before_snapshot_is_fine(self, store, snap_level):
        txn = store.begin(snap_level)
        store.put("x", "1")
        assert store.get("other", txn) is None
        store.put("x", "2", txn)
        store.commit(txn)
        assert store.get("x") == "2"

    def test_write_skew_allowed_at_snapshot_only(self, store, snap_level):
        store.put("alice", "on")
        store.put("bob", "on")
        t1, t2 = store.begin(snap_level), store.begin(snap_level)
        for t in (t1, t2):
            store.get("alice", t)
            store.get("bob", t)
        store.put("alice", "off", t1)
        store.put("bob", "off", t2)
        store.commit(t1)
        if snap_level == SNAPSHOT:
            store.commit(t2)
            assert store.committed_items() == [("alice", "off"), ("bob", "off")]
        else:
            with pytest.raises(ConflictError):
                store.commit(t2)
            assert store.committed_items() == [("alice", "off"), ("bob", "on")]

    def test_own_writes_then_rollback(self, store, snap_level):
        store.put("x", "1")
        txn = store.begin(snap_level)
        store.put("x", "2", txn)
        store.delete("y", txn)
        assert store.get("x", txn) == "2"
        store.rollback(txn)
        assert store.get("x") == "1"
        assert store.version_stats()["open_snapshots"] == 0

    def test_one_key_many_commits_keep_one_old_value(self, store, snap_level):
        store.put("x", "0")
        idle = store.begin(snap_level)
        assert store.get("x", idle) == "0"
        for i in range(1, 1001):
            store.put("x", str(i))
        assert store.version_stats() == {"open_snapshots": 1, "tracked_keys": 1,
                                         "old_values": 1}
        assert store.get("x", idle) == "0"
        store.commit(idle)
        assert store.version_stats()["old_values"] == 0

    def test_distinct_keys_keep_one_old_value_each(self, store, snap_level):
        idle = store.begin(snap_level)
        store.get("nothing", idle)
        for i in range(100):
            store.put(f"k{i}", "v")
            store.put(f"k{i}", "w")
        assert store.version_stats()["old_values"] == 100
        assert all(store.get(f"k{i}", idle) is None for i in range(100))
        store.rollback(idle)
        assert store.version_stats()["old_values"] == 0

    def test_each_open_snapshot_sees_its_own_version(self, store, snap_level):
        readers = []
        for i in range(5):
            store.put("x", str(i))
            store.put("noise", str(i))
            txn = store.begin(snap_level)
            assert store.get("x", txn) == str(i)
            readers.append(txn)
        for i in range(5, 50):
            store.put("x", str(i))
        # Per key, one older value per open snapshot that saw a value since replaced (x: 5,
        # noise: 4), however many commits came after.
        assert store.version_stats()["old_values"] == 9
        for i, txn in enumerate(readers):
            assert store.get("x", txn) == str(i)
        # Ending the oldest: the others still read theirs, and what only it could see goes
        # at its key's next commit (x), or once every snapshot is past the key's last change.
        store.commit(readers.pop(0))
        for i, txn in enumerate(readers, 1):
            assert store.get("x", txn) == str(i)
        store.put("x", "50")
        assert store.version_stats()["old_values"] == 8
        for i, txn in enumerate(readers, 1):
            assert store.get("x", txn) == str(i)
        for txn in readers:
            store.commit(txn)
        assert store.version_stats()["tracked_keys"] == 0

    def test_transaction_commit_records_before_images(self, store, snap_level):
        store.put("x", "1")
        reader = store.begin(snap_level)
        store.get("x", reader)
        writer = store.begin(READ_COMMITTED)
        store.put("x", "2", writer)
        store.put("y", "new", writer)
        store.commit(writer)
        assert store.get("x", reader) == "1"
        assert store.get("y", reader) is None
        store.commit(reader)

    def test_commit_hook_gets_committed_values_only(self, snap_level):
        seen = []
        store = Store(on_commit=lambda seq, writes: seen.append((seq, writes)))
        store.put("x", "1")
        reader = store.begin(snap_level)
        store.get("x", reader)
        store.put("x", "2")
        store.put("x", "3")
        assert seen == [(1, [("x", "1")]), (2, [("x", "2")]), (3, [("x", "3")])]
        store.commit(reader)

    def test_read_committed_keeps_no_versions(self, store):
        txn = store.begin(READ_COMMITTED)
        store.get("x", txn)
        store.put("x", "1")
        assert store.get("x", txn) == "1"
        assert txn.snapshot_seq is None
        assert store.version_stats() == {"open_snapshots": 0, "tracked_keys": 0,
                                         "old_values": 0}
        store.commit(txn)
