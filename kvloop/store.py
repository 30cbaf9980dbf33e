"""The database: values, write intents, commit sequence and the versions SERIALIZABLE needs.

Writes go straight into the one in-memory dict, in place. A transaction that writes a key
takes its *write intent* and keeps the key's before-image in its undo log; everyone else reads
that before-image and gets CONFLICT if they try to write the key (no dirty reads, no dirty
writes, no waiting). COMMIT drops the intents; ROLLBACK writes the before-images back.

SERIALIZABLE transactions also remember, for each key they read, the commit sequence number
current at the read. While any of them is open the store records, per key, the sequence number
of its last committed change, so COMMIT can tell whether something read has changed since.
Those records only ever need to reach back to the oldest open SERIALIZABLE transaction, so they
are pruned as transactions finish and cost nothing when none is open.

Every committed key is also in a sorted index (:class:`~kvloop.keyindex.SortedKeys`) for
SCAN: a key enters it when a commit creates it and leaves it when a commit deletes it, so
overwrites and uncommitted writes do no index work, and every key in it is visible to everyone
but a transaction that deleted it itself. A transaction's own uncommitted creations are merged
into its scans from its undo log.

The store knows nothing of connections or the protocol; one command runs at a time, so no
method needs a lock.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from itertools import accumulate, islice
from operator import add
from typing import Callable, NamedTuple, Optional

from . import errors
from .errors import CommandError
from .keyindex import SortedKeys, prefix_end
from .transaction import SERIALIZABLE, Transaction

Write = tuple[str, Optional[str]]
"""One committed change: the key and its new value, ``None`` for a delete."""

CommitHook = Callable[[int, list[Write]], None]
"""Called with each commit's sequence number and changes, before the commit is acknowledged."""

WRITE_CONFLICT = "write_intent"
VALIDATION_CONFLICT = "validation"


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


class Store:
    """The key/value data and every open transaction's claim on it.

    ``seq`` is the number of the latest commit since the data was created (like etcd's
    revision): each commit that changes data takes the next number. ``on_commit``, if set, is
    called with each commit's number and changes (the write-ahead log's hook).
    """

    def __init__(self, on_commit: CommitHook | None = None) -> None:
        self.seq = 0
        # Committed state only, kept in step with every commit (see _count_committed).
        self.data_bytes = 0
        self._key_count = 0
        self.on_commit = on_commit
        self._values: dict[str, str] = {}
        # Every key with a committed value (before-images of keys under intents included).
        self._keys = SortedKeys()
        self._owners: dict[str, Transaction] = {}
        self._next_txn_id = 1
        # Open SERIALIZABLE transactions, oldest first (dicts keep insertion order).
        self._serializable: dict[Transaction, None] = {}
        # Key -> seq of its last committed change; kept only while SERIALIZABLE is open.
        self._versions: dict[str, int] = {}
        self._version_log: deque[tuple[int, str]] = deque()

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: str, txn: Transaction | None = None) -> str | None:
        """The value ``txn`` (or an autocommit read, if ``None``) sees for ``key``, or ``None``.

        That is the transaction's own write if it wrote the key, else the latest committed
        value: the before-image if another open transaction has written it.
        """
        owner = self._owners.get(key)
        if owner is None:
            value = self._values.get(key)
        elif owner is txn:
            return self._values.get(key)
        else:
            value = owner.undo[key]
        if txn is not None and txn.reads is not None and key not in txn.reads:
            txn.reads[key] = self.seq
        return value

    def committed_key_count(self) -> int:
        """How many keys have a committed value (uncommitted creates and deletes not counted).

        O(1): a counter kept as commits happen, like :attr:`data_bytes` (the committed keys'
        and values' UTF-8 bytes), so both count the same committed state.
        """
        return self._key_count

    def open_intents(self) -> int:
        """How many keys are held by an open transaction's write intent."""
        return len(self._owners)

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
        if txn is None or not txn.undo:
            keys, found = self._scan_committed(candidates, limit + 1)
        else:
            own = self._own_creations(txn, prefix, after)
            keys, found = self._scan_own_view(heapq.merge(candidates, own), limit + 1, txn)
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
        if txn is not None and txn.reads is not None:
            self._note_scan_reads(txn, keys)
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

    def _scan_own_view(self, candidates: Iterator[str], count: int,
                       txn: Transaction) -> tuple[list[str], list[str]]:
        """Like :meth:`_scan_committed` for a transaction that has written: its own values,
        its own deletions skipped."""
        owners, committed = self._owners, self._values
        keys: list[str] = []
        found: list[str] = []
        for key in candidates:
            owner = owners.get(key)
            value = committed.get(key) if owner is None or owner is txn else owner.undo[key]
            if value is None:
                continue  # deleted by txn itself
            keys.append(key)
            found.append(value)
            if len(keys) == count:
                break
        return keys, found

    def _own_creations(self, txn: Transaction, prefix: str, after: str | None) -> list[str]:
        """The keys ``txn`` created (not committed yet) in the range of a scan, sorted."""
        committed = self._values
        return sorted(
            key for key, before in txn.undo.items()
            if before is None and key in committed and key.startswith(prefix)
            and (after is None or key > after)
        )

    def _note_scan_reads(self, txn: Transaction, keys: list[str]) -> None:
        # A SERIALIZABLE scan reads each key it returns, as GET does (the range itself is not
        # remembered yet: see docs/scan.md).
        reads, owners, seq = txn.reads, self._owners, self.seq
        for key in keys:
            if key not in reads and owners.get(key) is not txn:
                reads[key] = seq

    # -- writes --------------------------------------------------------------------------

    def put(self, key: str, value: str, txn: Transaction | None = None) -> None:
        """Write ``value`` under ``key``, in ``txn`` or (if ``None``) as its own commit.

        Raises :class:`ConflictError` if another open transaction holds the key; then nothing
        changed.
        """
        self._write(key, value, txn)

    def delete(self, key: str, txn: Transaction | None = None) -> None:
        """Delete ``key`` (a missing key is fine), like :meth:`put`."""
        self._write(key, None, txn)

    def _write(self, key: str, value: str | None, txn: Transaction | None) -> None:
        owner = self._owners.get(key)
        if owner is not txn and owner is not None:
            raise ConflictError(
                WRITE_CONFLICT,
                f"key '{key}' is being written by another open transaction; "
                "retry after that transaction commits or rolls back",
            )
        if txn is None:
            if value is None and key not in self._values:
                return  # deleting a missing key changes nothing: no commit
            self._count_committed(key, self._values.get(key), value)
            self._set(key, value)
            self._committed([(key, value)])
            return
        if owner is None:
            txn.undo[key] = self._values.get(key)
            self._owners[key] = txn
        self._set(key, value)

    def _set(self, key: str, value: str | None) -> None:
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value

    def _count_committed(self, key: str, before: str | None, after: str | None) -> None:
        """Keep the committed key count, data bytes and key index in step with one committed
        change."""
        if before is not None:
            self.data_bytes -= text_bytes(key) + text_bytes(before)
            self._key_count -= 1
            if after is None:
                self._keys.discard(key)
        if after is not None:
            self.data_bytes += text_bytes(key) + text_bytes(after)
            self._key_count += 1
            if before is None:
                self._keys.add(key)

    # -- transactions --------------------------------------------------------------------

    def begin(self, level: str) -> Transaction:
        """Open a transaction at ``level``."""
        txn = Transaction(self._next_txn_id, level, self.seq)
        self._next_txn_id += 1
        if level == SERIALIZABLE:
            self._serializable[txn] = None
        return txn

    def commit(self, txn: Transaction) -> int:
        """Make every write of ``txn`` visible at once and return the commit's sequence number.

        A transaction that changed nothing (it only read, or only deleted missing keys) makes
        no new commit and gets the current number. A SERIALIZABLE transaction first checks that
        nothing it read has changed since; if something has, it is rolled back and
        :class:`ConflictError` names the key.
        """
        if txn.reads:
            self._validate(txn)
        owners, values = self._owners, self._values
        writes = [
            (key, values.get(key)) for key, before in txn.undo.items()
            if before is not None or key in values  # deleting a missing key changes nothing
        ]
        for key, before in txn.undo.items():
            self._count_committed(key, before, values.get(key))
            del owners[key]
        self._finish(txn)
        return self._committed(writes) if writes else self.seq

    def _validate(self, txn: Transaction) -> None:
        versions = self._versions
        for key, seen_at in txn.reads.items():
            changed_at = versions.get(key, 0)
            if changed_at > seen_at:
                self.rollback(txn)
                raise ConflictError(
                    VALIDATION_CONFLICT,
                    f"key '{key}' was changed by commit {changed_at} after this transaction "
                    "read it; the transaction has been rolled back, retry it from START",
                )

    def _committed(self, writes: list[Write]) -> int:
        self.seq += 1
        seq = self.seq
        if self._serializable:
            versions = self._versions
            log = self._version_log
            for key, _ in writes:
                versions[key] = seq
                log.append((seq, key))
        if self.on_commit is not None:
            self.on_commit(seq, writes)
        return seq

    def rollback(self, txn: Transaction) -> None:
        """Discard every write of ``txn``: restore each before-image and release its keys."""
        owners = self._owners
        for key, before in txn.undo.items():
            self._set(key, before)
            del owners[key]
        self._finish(txn)

    def _finish(self, txn: Transaction) -> None:
        txn.undo = {}
        if txn in self._serializable:
            del self._serializable[txn]
            self._prune_versions()

    def _prune_versions(self) -> None:
        if not self._serializable:
            self._versions.clear()
            self._version_log.clear()
            return
        # Changes at or before the oldest open transaction's start can fail no validation.
        horizon = next(iter(self._serializable)).begin_seq
        log, versions = self._version_log, self._versions
        while log and log[0][0] <= horizon:
            seq, key = log.popleft()
            if versions.get(key) == seq:
                del versions[key]
