"""GET replies made once per value instead of on every read.

Encoding a GET's reply (JSON string escaping, then UTF-8) costs more than finding the value.
:class:`ReplyCache` keeps the reply bytes of recent plain ``GET key`` lines, keyed by the
request line's own bytes, so a repeated read costs one dict lookup and no decoding at all.

It is only an accelerator: the command layer (:mod:`kvloop.commands`) puts in it only the
reply that the general path just made for an autocommit GET of a key no transaction holds,
and the store (:mod:`kvloop.store`) drops a key's entry whenever its value changes in place
(a write, a rollback, a commit taken back). So an entry is always byte for byte what the
general path would answer now to a session that may use it (authenticated, no transaction).

Memory is bounded: replies over :data:`MAX_REPLY_BYTES` are not kept, and when the entries
would pass the budget the cache starts again empty (simple, and O(1) per entry over time).
"""

from __future__ import annotations

# Replies longer than this are made on every read: for a long value the encoding is no longer
# the main cost of a GET, and a few of them would fill the budget.
MAX_REPLY_BYTES = 1024
# What one entry costs beyond its two byte strings' contents: their object headers and the
# dict's slot.
ENTRY_OVERHEAD_BYTES = 112
DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024

GET_PREFIX = b"GET "


def get_line(key: str) -> bytes:
    """The request line an entry for ``key`` is kept under: ``GET key`` with one space."""
    return GET_PREFIX + key.encode("utf-8", "surrogatepass")


class ReplyCache:
    """Reply bytes by request line (``GET key``), within a budget of bytes.

    ``lookup(line)`` is the reply kept for that exact line, or ``None``.
    """

    __slots__ = ("_replies", "lookup", "budget_bytes", "size_bytes")

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._replies: dict[bytes, bytes] = {}
        self.lookup = self._replies.get
        self.budget_bytes = budget_bytes
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._replies)

    def add(self, line: bytes, reply: bytes) -> None:
        """Keep ``reply`` as the answer to ``line`` until the key's value changes (or the
        budget makes the cache start again)."""
        if len(reply) > MAX_REPLY_BYTES:
            return
        cost = len(line) + len(reply) + ENTRY_OVERHEAD_BYTES
        if self.size_bytes + cost > self.budget_bytes:
            self.clear()
            if cost > self.budget_bytes:
                return
        old = self._replies.get(line)
        if old is not None:
            self.size_bytes -= len(line) + len(old) + ENTRY_OVERHEAD_BYTES
        self._replies[line] = reply
        self.size_bytes += cost

    def changed(self, key: str | None) -> None:
        """``key``'s value changed (``None``: any value may have): forget its reply."""
        replies = self._replies
        if not replies:
            return
        if key is None:
            self.clear()
            return
        line = GET_PREFIX + key.encode("utf-8", "surrogatepass")  # get_line(key), inlined
        reply = replies.pop(line, None)
        if reply is not None:
            self.size_bytes -= len(line) + len(reply) + ENTRY_OVERHEAD_BYTES

    def clear(self) -> None:
        """Forget every reply."""
        self._replies.clear()
        self.size_bytes = 0
