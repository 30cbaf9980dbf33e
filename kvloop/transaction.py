"""One open transaction's private state: its isolation level, snapshot, undo log and read set.

A :class:`Transaction` is plain data; the :class:`~kvloop.store.Store` reads and changes it.
"""

from __future__ import annotations

READ_COMMITTED = "read-committed"
SNAPSHOT = "snapshot"
SERIALIZABLE = "serializable"
LEVELS = (READ_COMMITTED, SNAPSHOT, SERIALIZABLE)
# The levels whose reads see a snapshot (and whose writes follow first committer wins).
SNAPSHOT_LEVELS = frozenset({SNAPSHOT, SERIALIZABLE})


def parse_level(word: str) -> str | None:
    """The isolation level a client spelled (any case, ``_`` for ``-``), or ``None``."""
    level = word.lower().replace("_", "-")
    for known in LEVELS:
        if level == known:
            return known
    return None


class Transaction:
    """An open transaction.

    ``undo`` maps every key the transaction has written to its before-image (the committed
    value, or ``None`` if the key did not exist): the transaction holds the write intent on
    exactly these keys. ``uses_snapshot`` is true at snapshot and serializable; then
    ``snapshot_seq`` is the commit seq its reads see (``None`` until its first read or write
    takes it). ``reads`` (serializable only, else ``None``) is the set of keys it read from
    the committed state, and ``ranges`` the key ranges its SCANs covered, as (prefix, after,
    last key or ``None`` for the end of the prefix): both are checked at COMMIT.
    """

    __slots__ = ("txn_id", "level", "uses_snapshot", "snapshot_seq", "undo", "reads", "ranges")

    def __init__(self, txn_id: int, level: str) -> None:
        self.txn_id = txn_id
        self.level = level
        self.uses_snapshot = level in SNAPSHOT_LEVELS
        self.snapshot_seq: int | None = None
        self.undo: dict[str, str | None] = {}
        self.reads: set[str] | None = set() if level == SERIALIZABLE else None
        self.ranges: list[tuple[str, str | None, str | None]] | None = (
            [] if level == SERIALIZABLE else None)

    def __repr__(self) -> str:
        return f"<Transaction {self.txn_id} {self.level} writes={len(self.undo)}>"
