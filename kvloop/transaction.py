"""One open transaction's private state: its isolation level, undo log and read set.

A :class:`Transaction` is plain data; the :class:`~kvloop.store.Store` reads and changes it.
"""

from __future__ import annotations

READ_COMMITTED = "read-committed"
SERIALIZABLE = "serializable"
LEVELS = (READ_COMMITTED, SERIALIZABLE)


def parse_level(word: str) -> str | None:
    """The isolation level a client spelled (any case, ``_`` for ``-``), or ``None``."""
    level = word.lower().replace("_", "-")
    return level if level in LEVELS else None


class Transaction:
    """An open transaction.

    ``undo`` maps every key the transaction has written to its before-image (the committed
    value, or ``None`` if the key did not exist): the transaction holds the write intent on
    exactly these keys. ``reads`` (SERIALIZABLE only, else ``None``) maps every key it read
    from the committed state to the commit sequence number current at that read.
    """

    __slots__ = ("txn_id", "level", "begin_seq", "undo", "reads")

    def __init__(self, txn_id: int, level: str, begin_seq: int) -> None:
        self.txn_id = txn_id
        self.level = level
        self.begin_seq = begin_seq
        self.undo: dict[str, str | None] = {}
        self.reads: dict[str, int] | None = {} if level == SERIALIZABLE else None

    def __repr__(self) -> str:
        return f"<Transaction {self.txn_id} {self.level} writes={len(self.undo)}>"
