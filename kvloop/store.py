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

The store knows nothing of connections or the protocol; one command runs at a time, so no
method needs a lock.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from . import errors
from .errors import CommandError
from .transaction import SERIALIZABLE, Transaction

Write = tuple[str, Optional[str]]
"""One committed change: the key and its new value, ``None`` for a delete."""

CommitHook = Callable[[int, list[Write]], None]
"""Called with each commit's sequence number and changes before the commit takes effect (the
write-ahead log's append). If it raises, the commit is undone and the exception propagates."""

WRITE_CONFLICT = "write_intent"
VALIDATION_CONFLICT = "validation"


class ConflictError(CommandError):
    """CONFLICT, with the ``cause``: another transaction's write intent, or failed validation."""

    def __init__(self, cause: str, mesg: str) -> None:
        super().__init__(errors.CONFLICT, mesg)
        self.cause = cause


def text_bytes(text: str) -> int:
    """The length of ``text`` in UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class Store:
    """The key/value data and every open transaction's claim on it.

    ``seq`` is the number of the latest commit since the data was created (like etcd's
    revision): each commit that changes data takes the next number. ``on_commit``, if set, is
    called with each commit's number and changes before it takes effect (the write-ahead log's
    hook; see :data:`CommitHook`).
    """

    def __init__(self, on_commit: CommitHook | None = None) -> None:
        self.seq = 0
        self.data_bytes = 0
        self.on_commit = on_commit
        self._values: dict[str, str] = {}
        self._owners: dict[str, Transaction] = {}
        self._next_txn_id = 1
        # Open SERIALIZABLE transactions, oldest first (dicts keep insertion order).
        self._serializable: dict[Transaction, None] = {}
        # Key -> seq of its last committed change; kept only while SERIALIZABLE is open.
        self._versions: dict[str, int] = {}
        self._version_log: deque[tuple[int, str]] = deque()
        # Before-images of the commits the log has not made durable yet, oldest first; kept
        # only after keep_undo_until_synced() (a persistent server), else None.
        self._unsynced: list[tuple[int, list[Write]]] | None = None

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
        """How many keys have a committed value (uncommitted creates and deletes not counted)."""
        count = len(self._values)
        for key, owner in self._owners.items():
            exists_now = key in self._values
            existed = owner.undo[key] is not None
            count += existed - exists_now
        return count

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
            before = self._values.get(key)
            if value is None and before is None:
                return  # deleting a missing key changes nothing: no commit
            self._record_commit([(key, value)], [(key, before)])
            self._set(key, value)
            return
        if owner is None:
            txn.undo[key] = self._values.get(key)
            self._owners[key] = txn
        self._set(key, value)

    def _set(self, key: str, value: str | None) -> None:
        old = self._values.get(key)
        if old is not None:
            self.data_bytes -= text_bytes(key) + text_bytes(old)
        if value is None:
            if old is not None:
                del self._values[key]
        else:
            self._values[key] = value
            self.data_bytes += text_bytes(key) + text_bytes(value)

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
        owners, values, undo = self._owners, self._values, txn.undo
        writes = [
            (key, values.get(key)) for key, before in undo.items()
            if before is not None or key in values  # deleting a missing key changes nothing
        ]
        seq = self.seq
        if writes:
            try:
                seq = self._record_commit(writes, [(key, undo[key]) for key, _ in writes])
            except BaseException:
                self.rollback(txn)
                raise
        for key in undo:
            del owners[key]
        self._finish(txn)
        return seq

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

    def _record_commit(self, writes: list[Write], befores: list[Write]) -> int:
        """Give a commit the next seq and log it (``on_commit``); nothing changes if that raises."""
        seq = self.seq + 1
        if self.on_commit is not None:
            self.on_commit(seq, writes)
        self.seq = seq
        if self._unsynced is not None:
            self._unsynced.append((seq, befores))
        if self._serializable:
            versions = self._versions
            log = self._version_log
            for key, _ in writes:
                versions[key] = seq
                log.append((seq, key))
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

    # -- durability ----------------------------------------------------------------------

    def install_committed(self, values: dict[str, str], seq: int,
                          data_bytes: int | None = None) -> None:
        """Replace all data with ``values`` as of commit ``seq`` (loading a snapshot).

        No transaction may be open; no hook runs. ``data_bytes`` may be given when known.
        """
        assert not self._owners, "install_committed with transactions open"
        self._values = values
        self.seq = seq
        if data_bytes is None:
            data_bytes = sum(text_bytes(k) + text_bytes(v) for k, v in values.items())
        self.data_bytes = data_bytes

    def replay_commit(self, seq: int, writes: list[Write]) -> None:
        """Apply a commit read back from the log (recovery): no intents, no hook."""
        for key, value in writes:
            self._set(key, value)
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
        value becomes its before-image instead.
        """
        undone = self._unsynced or []
        self._unsynced = [] if self._unsynced is not None else None
        owners = self._owners
        for seq, befores in reversed(undone):
            for key, before in befores:
                owner = owners.get(key)
                if owner is not None:
                    owner.undo[key] = before
                else:
                    self._set(key, before)
            self.seq = seq - 1
        if undone and self._versions:
            # Forget versions of the commits taken back: they never happened.
            self._versions = {k: v for k, v in self._versions.items() if v <= self.seq}
            self._version_log = deque(e for e in self._version_log if e[0] <= self.seq)
        return len(undone)
