"""The database: values, write intents, commit sequence and the older versions snapshots need.

Writes go straight into the one in-memory dict, in place. A transaction that writes a key
takes its *write intent* and keeps the key's before-image in its undo log; everyone else reads
that before-image and gets CONFLICT if they try to write the key (no dirty reads, no dirty
writes, no waiting). COMMIT drops the intents; ROLLBACK writes the before-images back.

SNAPSHOT and SERIALIZABLE transactions read at a *snapshot*: the commit sequence number
current at their first read or write. While any snapshot is open, :class:`Versions` records
per key the seq of its last committed change and keeps the older committed values that some
open snapshot can still see (a short chain per key, pruned against the open snapshots); a
read at a snapshot takes the value that was current then. The same records give first
committer wins (a write to a key committed after the writer's snapshot is refused) and
SERIALIZABLE's validation at COMMIT of the keys it read and the ranges it scanned. With no
snapshot open nothing is recorded.

Every committed key is also in a sorted index (:class:`~kvloop.keyindex.SortedKeys`) for
SCAN: a key enters it when a commit creates it and leaves it when a commit deletes it, so
overwrites and uncommitted writes do no index work, and every key in it is visible to everyone
but a transaction that deleted it itself. (Except a *ghost*: a key deleted while a snapshot
that may see it is open stays until no open snapshot predates the deletion; scans other than
that snapshot's skip it.) A transaction's own uncommitted creations are merged into its scans
from its undo log.

The store knows nothing of connections or the protocol; one command runs at a time, so no
method needs a lock.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import accumulate, islice
from operator import add
from typing import Callable, NamedTuple, Optional

from . import errors
from .errors import CommandError
from .keyindex import SortedKeys, prefix_end
from .transaction import Transaction

Write = tuple[str, Optional[str]]
"""One committed change: the key and its new value, ``None`` for a delete."""

CommitHook = Callable[[int, list[Write]], None]
"""Called with each commit's sequence number and changes before the commit takes effect (the
write-ahead log's append). If it raises, the commit is undone and the exception propagates."""

ChangeHook = Callable[[Optional[str]], None]
"""Called with each key whose value changes in place (a write in or out of a transaction, a
rollback, a commit taken back), or ``None`` when every value may have (loading a snapshot):
the GET reply cache's invalidation."""

WRITE_CONFLICT = "write_intent"
FIRST_COMMITTER_CONFLICT = "first_committer"
VALIDATION_CONFLICT = "validation"
# Ghost keys taken out of the index per step (each costs a few microseconds), so that ending
# a snapshot after many deletions never stalls the loop: the rest go with the next commits.
GHOST_BATCH = 256


class ConflictError(CommandError):
    """CONFLICT, with the ``cause``: another transaction's write intent, or failed validation."""

    def __init__(self, cause: str, mesg: str) -> None:
        super().__init__(errors.CONFLICT, mesg)
        self.cause = cause


class ScanPage(NamedTuple):
    """One page of a range read: keys in order, their values (if asked for), and whether
    another visible key follows the last one."""

    keys: list[str]
    values: list[str] | None
    more: bool


def text_bytes(text: str) -> int:
    """The length of ``text`` in UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _held_by_another(key: str) -> ConflictError:
    return ConflictError(
        WRITE_CONFLICT,
        f"key '{key}' is being written by another open transaction; "
        "retry after that transaction commits or rolls back",
    )


def _describe_range(prefix: str, after: str | None, last: str | None) -> str:
    """A scanned range in words: ``PREFIX 'p' AFTER 'a' up to 'z'``."""
    parts = [f"PREFIX '{prefix}'" if prefix else "all keys"]
    if after is not None:
        parts.append(f"AFTER '{after}'")
    parts.append(f"up to '{last}'" if last is not None else "to the end")
    return " ".join(parts)


class Versions:
    """What open snapshots need: per key, the seq of its last committed change, and the older
    committed values some open snapshot can still see.

    ``snapshots`` holds the open transactions that have taken a snapshot, oldest first (a
    snapshot is the current seq, so taking order is seq order). Only while it is non-empty
    does :meth:`record` get called. A replaced value is kept only if some open snapshot can
    see it (one taken at or after the value's own commit), so one idle snapshot and a million
    commits of one key keep one old value; a million commits of distinct keys keep one old
    value (or "missing") each. When the oldest snapshot ends, the keys whose last change
    every remaining snapshot sees are dropped (older values deeper in a still-needed chain go
    at that key's next commit), and when the last one ends, everything is.
    """

    __slots__ = ("snapshots", "_chains", "_old_values")

    def __init__(self) -> None:
        self.snapshots: dict[Transaction, None] = {}
        # Key -> (seq of its last committed change, then pairs of: seq of the commit that
        # replaced an older value, that value or None), oldest pair first. One flat tuple per
        # key keeps the cost near one old value per key. The dict is kept in order of the
        # last change (each record moves its key to the end), so pruning stops early.
        self._chains: dict[str, tuple] = {}
        self._old_values = 0  # pairs in _chains, counted as they come and go (STATS is O(1))

    def open(self, txn: Transaction, seq: int) -> None:
        """Give ``txn`` its snapshot: it sees every commit up to ``seq`` and none after."""
        txn.snapshot_seq = seq
        self.snapshots[txn] = None

    def close(self, txn: Transaction) -> None:
        """``txn`` has ended: drop what only its snapshot could see."""
        snapshots = self.snapshots
        if txn not in snapshots:
            return
        was_oldest = next(iter(snapshots)) is txn
        del snapshots[txn]
        if not snapshots:
            self._chains.clear()
            self._old_values = 0
        elif was_oldest:
            self._prune(next(iter(snapshots)).snapshot_seq)

    def record(self, seq: int, key: str, before: str | None) -> None:
        """Commit ``seq`` replaced ``key``'s committed value ``before`` (``None``: missing)."""
        chain = self._chains.pop(key, None)
        if chain is None:
            # Changed at or before the oldest snapshot: every open snapshot sees ``before``.
            self._chains[key] = (seq, seq, before)
            self._old_values += 1
            return
        snapshots = self.snapshots
        horizon = next(iter(snapshots)).snapshot_seq
        start = 1
        while start < len(chain) and chain[start] <= horizon:
            start += 2  # replaced before every open snapshot: no one sees it
        self._old_values -= start // 2
        # ``before`` was committed at chain[0]: only snapshots taken since then see it.
        if next(reversed(snapshots)).snapshot_seq >= chain[0]:
            self._chains[key] = (seq, *chain[start:], seq, before)
            self._old_values += 1
        else:
            self._chains[key] = (seq, *chain[start:])

    def changed_after(self, key: str, seq: int) -> int | None:
        """The seq of the last commit of ``key``, if it came after ``seq`` (a snapshot)."""
        chain = self._chains.get(key)
        return chain[0] if chain is not None and chain[0] > seq else None

    def value_at(self, key: str, current: str | None, seq: int) -> str | None:
        """``key``'s committed value as of snapshot ``seq``, given its ``current`` one."""
        chain = self._chains.get(key)
        if chain is None or chain[0] <= seq:
            return current
        for at in range(1, len(chain), 2):
            if chain[at] > seq:
                return chain[at + 1]
        raise AssertionError(f"no version of {key!r} for snapshot {seq}")

    def changed_since(self, seq: int) -> Iterator[tuple[str, int]]:
        """Each key committed after ``seq`` (a snapshot), with its last change, newest first."""
        for key, chain in reversed(self._chains.items()):
            if chain[0] <= seq:
                return
            yield key, chain[0]

    def tracked_keys(self) -> int:
        """How many keys have a change record."""
        return len(self._chains)

    def old_values(self) -> int:
        """How many older values are kept."""
        return self._old_values

    def _prune(self, horizon: int) -> None:
        # Every open snapshot is at or after ``horizon``: a key last changed at or before it
        # reads its current value for all of them. Keys are in order of their last change.
        chains = self._chains
        done = []
        for key, chain in chains.items():
            if chain[0] > horizon:
                break
            done.append(key)
        for key in done:
            self._old_values -= len(chains.pop(key)) // 2


class Store:
    """The key/value data and every open transaction's claim on it.

    ``seq`` is the number of the latest commit since the data was created (like etcd's
    revision): each commit that changes data takes the next number. ``on_commit``, if set, is
    called with each commit's number and changes before it takes effect (the write-ahead log's
    hook; see :data:`CommitHook`); it gets committed values only, never older versions.
    ``on_change``, if set, is told of every value that changes (see :data:`ChangeHook`).
    """

    def __init__(self, on_commit: CommitHook | None = None) -> None:
        self.seq = 0
        self.on_change: ChangeHook | None = None
        # Committed state only, kept in step with every commit (see _count_committed).
        self.data_bytes = 0
        self._key_count = 0
        self.on_commit = on_commit
        self._values: dict[str, str] = {}
        # Every key with a committed value (before-images of keys under intents included).
        self._keys = SortedKeys()
        # Keys a commit deleted while a snapshot was open, still in the index for the snapshots
        # that see them: key -> seq of that deletion, in deletion order (see _bury_ghosts).
        self._ghosts: dict[str, int] = {}
        self._burying = False  # some ghosts may be buried at the next commit
        # Open transaction -> the keys it has written, sorted (made by its first scan).
        self._written_in_order: dict[Transaction, list[str]] = {}
        self._owners: dict[str, Transaction] = {}
        self._next_txn_id = 1
        self._versions = Versions()
        # Before-images of the commits the log has not made durable yet, oldest first; kept
        # only after keep_undo_until_synced() (a persistent server), else None.
        self._unsynced: list[tuple[int, list[Write]]] | None = None

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: str, txn: Transaction | None = None) -> str | None:
        """The value ``txn`` (or an autocommit read, if ``None``) sees for ``key``, or ``None``.

        That is the transaction's own write if it wrote the key, else the latest committed
        value (the before-image if another open transaction has written it), or in a snapshot
        or serializable transaction the committed value as of its snapshot.
        """
        owner = self._owners.get(key)
        if owner is None:
            value = self._values.get(key)
        elif owner is txn:
            return self._values.get(key)
        else:
            value = owner.undo[key]
        if txn is None or not txn.uses_snapshot:
            return value
        return self._snapshot_read(key, value, txn)

    def _snapshot_read(self, key: str, current: str | None, txn: Transaction) -> str | None:
        snapshot = self._snapshot_of(txn)
        if txn.reads is not None:
            txn.reads.add(key)
        return self._versions.value_at(key, current, snapshot)

    def _snapshot_of(self, txn: Transaction) -> int:
        """``txn``'s snapshot seq, taken now if this is its first read or write."""
        if txn.snapshot_seq is None:
            self._versions.open(txn, self.seq)
        return txn.snapshot_seq

    def committed_key_count(self) -> int:
        """How many keys have a committed value (uncommitted creates and deletes not counted).

        O(1): a counter kept as commits happen, like :attr:`data_bytes` (the committed keys'
        and values' UTF-8 bytes), so both count the same committed state.
        """
        return self._key_count

    def has_intent(self, key: str) -> bool:
        """True while an open transaction holds ``key``'s write intent."""
        return key in self._owners

    def open_intents(self) -> int:
        """How many keys are held by an open transaction's write intent."""
        return len(self._owners)

    def version_stats(self) -> dict[str, int]:
        """Open snapshots, keys with a change record, and older values kept for snapshots."""
        versions = self._versions
        return {"open_snapshots": len(versions.snapshots),
                "tracked_keys": versions.tracked_keys(),
                "old_values": versions.old_values()}

    def committed_items(self) -> list[Write]:
        """Every committed key and value (a consistent copy, for snapshots and tests)."""
        items = {**self._values}
        for key, owner in self._owners.items():
            before = owner.undo[key]
            if before is None:
                items.pop(key, None)
            else:
                items[key] = before
        return sorted(items.items())

    def scan(self, prefix: str = "", after: str | None = None, limit: int = 100,
             txn: Transaction | None = None, *, values: bool = False,
             max_chars: int | None = None) -> ScanPage:
        """The keys ``txn`` (or an autocommit read) sees that start with ``prefix`` and sort
        after ``after``, in code-point order: at most ``limit`` of them, and fewer if their
        text (keys, plus values when ``values``) reaches ``max_chars`` characters (the page
        still holds one key at least).

        Visibility is :meth:`get`'s. ``more`` is exact: True only if another visible key
        follows. The work is O(log n + keys returned + this transaction's own writes): every
        key in the index is visible to all but a transaction that deleted it itself.
        """
        if after is not None and after >= prefix:
            candidates = self._keys.iter_from(after, False, prefix_end(prefix))
        else:
            candidates = self._keys.iter_from(prefix, True, prefix_end(prefix))
        if txn is not None and txn.undo:
            candidates = heapq.merge(candidates, self._own_creations(txn, prefix, after))
        if (txn is None or not (txn.undo or txn.uses_snapshot)) and not self._ghosts:
            keys, found = self._scan_committed(candidates, limit + 1)
        else:
            keys, found = self._scan_visible(candidates, limit + 1, txn)
        more = len(keys) > limit
        if max_chars is not None:
            sizes = accumulate(map(len, keys))
            if values:
                sizes = map(add, sizes, accumulate(map(len, found)))
            cut = bisect_left(list(islice(sizes, limit)), max_chars) + 1
            if cut <= limit and cut < len(keys):
                more = True
                limit = cut
        if more:
            del keys[limit:]
            del found[limit:]
        if txn is not None and txn.ranges is not None:
            # SERIALIZABLE remembers what the scan covered (for phantoms, see _validate).
            txn.ranges.append((prefix, after, keys[-1] if more else None))
        return ScanPage(keys, found if values else None, more)

    def _scan_committed(self, candidates: Iterator[str], count: int) -> tuple[list[str], list[str]]:
        """The first ``count`` keys of ``candidates`` and the values everyone but their
        writers sees: every indexed key is visible, under an intent as its before-image."""
        keys = list(islice(candidates, count))
        found = list(map(self._values.get, keys))  # a key under an intent: fixed below
        owners = self._owners
        if owners and not owners.keys().isdisjoint(keys):
            for at, key in enumerate(keys):
                owner = owners.get(key)
                if owner is not None:
                    found[at] = owner.undo[key]
        return keys, found

    def _scan_visible(self, candidates: Iterator[str], count: int,
                      txn: Transaction | None) -> tuple[list[str], list[str]]:
        """Like :meth:`_scan_committed`, key by key: for a transaction that has written (its
        own values, its own deletions skipped), one that reads at a snapshot (each key as of
        the snapshot: keys created after it skipped, ghosts deleted after it found), or while
        the index holds ghosts (skipped)."""
        snapshot = self._snapshot_of(txn) if txn is not None and txn.uses_snapshot else None
        owners, committed, value_at = self._owners, self._values, self._versions.value_at
        keys: list[str] = []
        found: list[str] = []
        previous = None
        for key in candidates:
            if key == previous:
                continue  # a ghost that txn created again comes from both sources
            previous = key
            owner = owners.get(key)
            # Another transaction's write intent: its before-image.
            value = committed.get(key) if owner is None or owner is txn else owner.undo[key]
            if snapshot is not None and owner is not txn:  # not txn's own write
                value = value_at(key, value, snapshot)
            if value is None:
                continue  # deleted (by txn itself, or as of the snapshot), or a ghost
            keys.append(key)
            found.append(value)
            if len(keys) == count:
                break
        return keys, found

    def _own_creations(self, txn: Transaction, prefix: str, after: str | None) -> Iterator[str]:
        """The keys ``txn`` created (not committed yet) in the range of a scan, in order.

        The keys ``txn`` wrote are kept sorted between its scans and only the ones written
        since the last scan are sorted in, so paging inside a big transaction costs
        O(log W + keys passed) per page rather than a sort of all its W writes.
        """
        undo = txn.undo
        written = self._written_in_order.get(txn)
        if written is None or len(written) != len(undo):
            # A transaction's undo log only grows, in insertion order: the new keys are its tail.
            known = written or []
            written = sorted(known + list(islice(undo, len(known), None)))
            self._written_in_order[txn] = written
        if after is not None and after >= prefix:
            first = bisect_right(written, after)
        else:
            first = bisect_left(written, prefix)
        stop = prefix_end(prefix)
        last = len(written) if stop is None else bisect_left(written, stop)
        committed = self._values
        return (key for key in islice(written, first, last)
                if undo[key] is None and key in committed)

    # -- writes --------------------------------------------------------------------------

    def put(self, key: str, value: str, txn: Transaction | None = None) -> None:
        """Write ``value`` under ``key``, in ``txn`` or (if ``None``) as its own commit.

        Raises :class:`ConflictError` if another open transaction holds the key, or (snapshot
        and serializable) if another transaction committed it after ``txn``'s snapshot; then
        nothing changed and ``txn`` stays open.
        """
        self._write(key, value, txn)

    def delete(self, key: str, txn: Transaction | None = None) -> None:
        """Delete ``key`` (a missing key is fine), like :meth:`put`."""
        self._write(key, None, txn)

    def _write(self, key: str, value: str | None, txn: Transaction | None) -> None:
        owner = self._owners.get(key)
        if owner is not txn and owner is not None:
            if txn is not None and txn.uses_snapshot:
                self._snapshot_of(txn)  # a refused write is still the first statement
            raise _held_by_another(key)
        if txn is None:
            if value is None and key not in self._values:
                return  # deleting a missing key changes nothing: no commit
            before = self._values.get(key)
            writes = [(key, value)]
            seq = self._log_commit(writes)
            self._count_committed(key, before, value)
            self._set(key, value)
            self._committed(seq, writes, [before])
            return
        if owner is None:
            if txn.uses_snapshot:
                self._check_first_committer(key, txn)
            txn.undo[key] = self._values.get(key)
            self._owners[key] = txn
        self._set(key, value)

    def commit_puts(self, puts: dict[str, str]) -> int:
        """Write every key of ``puts`` to its value in one new commit and return its sequence
        number: what a transaction that wrote them (and read nothing) and committed at once
        would do, at any isolation level, without its write intents and undo log.

        Raises :class:`ConflictError` if an open transaction holds one of the keys, and lets
        through whatever ``on_commit`` raises; either way nothing has changed.
        """
        owners = self._owners
        if owners and not owners.keys().isdisjoint(puts):
            raise _held_by_another(next(key for key in puts if key in owners))
        writes = list(puts.items())
        values = self._values
        befores = list(map(values.get, puts))
        seq = self._log_commit(writes)
        self._next_txn_id += 1  # it was a transaction: the next one's id counts it
        count_committed, on_change = self._count_committed, self.on_change
        for (key, value), before in zip(writes, befores):
            count_committed(key, before, value)
            if on_change is not None:
                on_change(key)
        values.update(puts)
        self._committed(seq, writes, befores)
        return seq

    def _check_first_committer(self, key: str, txn: Transaction) -> None:
        snapshot = self._snapshot_of(txn)
        changed = self._versions.changed_after(key, snapshot)
        if changed is not None:
            raise ConflictError(
                FIRST_COMMITTER_CONFLICT,
                f"key '{key}' was changed by commit {changed}, after this {txn.level} "
                f"transaction's snapshot (seq {snapshot}); first committer wins, so this "
                "transaction cannot write it: ROLLBACK and retry from START",
            )

    def _set(self, key: str, value: str | None) -> None:
        if self.on_change is not None:
            self.on_change(key)
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value

    def _count_committed(self, key: str, before: str | None, after: str | None) -> None:
        """Keep the committed key count, data bytes and key index in step with one committed
        change."""
        if before is not None and after is not None:  # an overwrite: only the size changes
            self.data_bytes += ((len(after) if after.isascii() else text_bytes(after))
                                - (len(before) if before.isascii() else text_bytes(before)))
            return
        if before is not None:
            self.data_bytes -= text_bytes(key) + text_bytes(before)
            self._key_count -= 1
            if after is None:
                if self._versions.snapshots:
                    self._keep_ghost(key)
                else:
                    self._keys.discard(key)
        if after is not None:
            self.data_bytes += text_bytes(key) + text_bytes(after)
            self._key_count += 1
            if before is None:
                self._keys.add(key)
                if self._ghosts:
                    self._ghosts.pop(key, None)  # created again: a live key once more

    def _keep_ghost(self, key: str) -> None:
        """A commit deletes ``key`` while a snapshot is open: it stays in the index as a
        *ghost* (its committed value is missing, so every scan but a snapshot's skips it)
        until no open snapshot is older than the deletion (see :meth:`_bury_ghosts`)."""
        self._ghosts.pop(key, None)
        self._ghosts[key] = self.seq + 1  # this commit's seq: it is recorded just after

    def _bury_ghosts(self) -> None:
        """Take out of the index (at most :data:`GHOST_BATCH` of) the deleted keys that every
        open snapshot sees as deleted; if some may remain, the next commit goes on."""
        snapshots, ghosts = self._versions.snapshots, self._ghosts
        horizon = next(iter(snapshots)).snapshot_seq if snapshots else None
        buried = []
        for key, deleted_at in ghosts.items():
            if (horizon is not None and deleted_at > horizon) or len(buried) == GHOST_BATCH:
                break
            buried.append(key)
        self._burying = len(buried) == GHOST_BATCH
        owners, values = self._owners, self._values
        for key in buried:
            del ghosts[key]
            owner = owners.get(key)
            exists = owner.undo[key] is not None if owner is not None else key in values
            if not exists:
                self._keys.discard(key)

    # -- transactions --------------------------------------------------------------------

    def begin(self, level: str) -> Transaction:
        """Open a transaction at ``level`` (its snapshot, if any, comes with its first read
        or write)."""
        txn = Transaction(self._next_txn_id, level)
        self._next_txn_id += 1
        return txn

    def commit(self, txn: Transaction) -> int:
        """Make every write of ``txn`` visible at once and return the commit's sequence number.

        A transaction that changed nothing (it only read, or only deleted missing keys) makes
        no new commit, gets the current number and never fails. A SERIALIZABLE transaction
        that changed something first checks that nothing it read has been committed by
        another since its snapshot; if something has, it is rolled back and
        :class:`ConflictError` names the key.
        """
        owners, values, undo = self._owners, self._values, txn.undo
        writes = [
            (key, values.get(key)) for key, before in undo.items()
            if before is not None or key in values  # deleting a missing key changes nothing
        ]
        if writes and (txn.reads or txn.ranges):
            self._validate(txn)
        if not writes:
            seq = self.seq
        else:
            try:
                seq = self._log_commit(writes)
            except BaseException:
                self.rollback(txn)
                raise
            befores = [undo[key] for key, _ in writes]
        for key, before in undo.items():
            self._count_committed(key, before, values.get(key))
            del owners[key]
        self._finish(txn)
        if writes:
            self._committed(seq, writes, befores)
        return seq

    def _validate(self, txn: Transaction) -> None:
        versions, snapshot = self._versions, txn.snapshot_seq
        for key in txn.reads:
            changed = versions.changed_after(key, snapshot)
            if changed is not None:
                self.rollback(txn)
                raise ConflictError(
                    VALIDATION_CONFLICT,
                    f"key '{key}' was changed by commit {changed} after this transaction "
                    f"read it at its snapshot (seq {snapshot}); the transaction has been "
                    "rolled back, retry it from START",
                )
        if txn.ranges:
            self._validate_ranges(txn)

    def _validate_ranges(self, txn: Transaction) -> None:
        snapshot = txn.snapshot_seq
        for key, changed in self._versions.changed_since(snapshot):
            for prefix, after, last in txn.ranges:
                if (key.startswith(prefix) and (after is None or key > after)
                        and (last is None or key <= last)):
                    self.rollback(txn)
                    scanned = _describe_range(prefix, after, last)
                    raise ConflictError(
                        VALIDATION_CONFLICT,
                        f"key '{key}' was created, changed or deleted by commit {changed}, "
                        f"inside a range this transaction scanned ({scanned}) "
                        f"after its snapshot (seq {snapshot}); the transaction has been "
                        "rolled back, retry it from START",
                    )

    def _log_commit(self, writes: list[Write]) -> int:
        """The next seq, once ``on_commit`` (the log) has taken the commit; if it raises,
        nothing has changed."""
        seq = self.seq + 1
        if self.on_commit is not None:
            self.on_commit(seq, writes)
        return seq

    def _committed(self, seq: int, writes: list[Write], befores: list[str | None]) -> None:
        self.seq = seq
        if self._versions.snapshots:
            self._record_versions(seq, writes, befores)
        if self._burying:
            self._bury_ghosts()
        if self._unsynced is not None:
            self._unsynced.append((seq, [(key, before) for (key, _), before
                                         in zip(writes, befores)]))

    def _record_versions(self, seq: int, writes: list[Write], befores: list[str | None]) -> None:
        record = self._versions.record
        for (key, _), before in zip(writes, befores):
            record(seq, key, before)

    def rollback(self, txn: Transaction) -> None:
        """Discard every write of ``txn``: restore each before-image and release its keys."""
        owners = self._owners
        for key, before in txn.undo.items():
            self._set(key, before)
            del owners[key]
        self._finish(txn)

    def _finish(self, txn: Transaction) -> None:
        txn.undo = {}
        self._written_in_order.pop(txn, None)
        if txn.snapshot_seq is not None:
            self._versions.close(txn)
            if self._ghosts:
                self._bury_ghosts()

    # -- durability ----------------------------------------------------------------------

    def install_committed(self, values: dict[str, str], seq: int,
                          data_bytes: int | None = None) -> None:
        """Replace all data with ``values`` as of commit ``seq`` (loading a snapshot).

        No transaction may be open; no hook runs. ``data_bytes`` may be given when known.
        Keys that arrive in sorted order index in linear time.
        """
        assert not self._owners, "install_committed with transactions open"
        if self.on_change is not None:
            self.on_change(None)
        self._values = values
        self._keys = SortedKeys(values)
        self._ghosts = {}
        self._burying = False
        self._key_count = len(values)
        if data_bytes is None:
            data_bytes = sum(text_bytes(k) + text_bytes(v) for k, v in values.items())
        self.data_bytes = data_bytes
        self.seq = seq

    def keep_undo_until_synced(self) -> None:
        """From now on keep each commit's before-images until :meth:`synced`, so that
        :meth:`undo_unsynced` can take back commits the log failed to make durable."""
        self._unsynced = []

    def synced(self) -> None:
        """Every commit so far is durable: forget their before-images."""
        if self._unsynced:
            self._unsynced = []

    def undo_unsynced(self) -> int:
        """Take back every commit since the last :meth:`synced`, newest first; return how many.

        A key that an open transaction has written since keeps that write: the restored
        value becomes its before-image instead. (Version records of the commits taken back
        stay: they can only make a later write CONFLICT, and a server that takes commits
        back accepts no more writes.)
        """
        undone = self._unsynced or []
        if self._unsynced is not None:
            self._unsynced = []
        owners, values = self._owners, self._values
        for seq, befores in reversed(undone):
            for key, before in befores:
                owner = owners.get(key)
                if owner is not None:
                    self._count_committed(key, owner.undo[key], before)
                    owner.undo[key] = before
                else:
                    self._count_committed(key, values.get(key), before)
                    self._set(key, before)
            self.seq = seq - 1
        return len(undone)
