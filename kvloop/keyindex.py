"""A sorted set of keys for range reads (SCAN): a list of sorted chunks, standard library only.

The keys live in a list of short sorted lists ("chunks"), each at most ``2 * CHUNK`` long, plus
a list holding each chunk's largest key. Finding a key is two binary searches (``bisect`` on the
chunk maxima, then inside one chunk); adding or removing one moves at most a chunk's worth of
pointers (a C ``memmove``), and a chunk that grows too long is split in two, one that shrinks too
short is merged into its neighbour. Every change is O(log n + CHUNK) and happens at once: there
is never a deferred sort or rebuild that could stall the server later. This is the design of
the ``sortedcontainers`` package's ``SortedList``, cut down to what kvloop needs.

Why not the alternatives: a single sorted list costs O(n) per insert (a 1,000,000-key memmove is
about a millisecond); a dict plus a lazily sorted copy stalls the first SCAN after many writes
(sorting a million keys takes about a second); a balanced tree or skip list in pure Python costs
one Python object (about 50-100 bytes) and several Python-level steps per key. Chunks cost one
pointer per key (8 bytes plus list over-allocation), because the strings are the store's own.

Keys are ``str`` and sort in code-point order, which is also the order of their UTF-8 bytes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import chain, islice

# Target chunk length. Chunks are split above 2 * CHUNK and merged below CHUNK // 2. Around a
# thousand (sortedcontainers' default too) keeps an insert's memmove to a few microseconds while
# the per-chunk overhead (a list header and a maximum: about 100 bytes) stays far below 1 byte
# per key.
CHUNK = 1000


class SortedKeys:
    """A set of ``str`` keys kept in sorted order, with iteration from any starting key.

    ``add``, ``discard`` and ``in`` cost O(log n + CHUNK); :meth:`iter_from` yields keys in
    order between two bounds, O(log n) to start and O(1) per key after that. The set must not
    be changed while an iterator over it is in use (kvloop runs one command at a time).
    """

    __slots__ = ("_chunks", "_maxes", "_len")

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._chunks: list[list[str]] = []
        self._maxes: list[str] = []
        self._len = 0
        # A dict's or set's keys are unique already; sorted input sorts in linear time.
        unique = isinstance(keys, (dict, set, frozenset, type({}.keys())))
        ordered = sorted(keys if unique else set(keys))
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start:start + CHUNK]
            self._chunks.append(chunk)
            self._maxes.append(chunk[-1])
        if len(self._chunks) > 1 and len(self._chunks[-1]) < CHUNK // 2:
            self._merge(len(self._chunks) - 1)
        self._len = len(ordered)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: str) -> bool:
        maxes = self._maxes
        pos = bisect_left(maxes, key)
        if pos == len(maxes):
            return False
        chunk = self._chunks[pos]
        return chunk[bisect_left(chunk, key)] == key

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._chunks)

    def __repr__(self) -> str:
        return f"<SortedKeys {self._len} keys in {len(self._chunks)} chunks>"

    def add(self, key: str) -> None:
        """Add ``key``; nothing happens if it is already there."""
        maxes, chunks = self._maxes, self._chunks
        if not maxes:
            chunks.append([key])
            maxes.append(key)
            self._len = 1
            return
        pos = bisect_left(maxes, key)
        if pos == len(maxes):  # past every key: append to the last chunk
            pos -= 1
            chunks[pos].append(key)
            maxes[pos] = key
        else:
            chunk = chunks[pos]
            index = bisect_left(chunk, key)
            if chunk[index] == key:
                return
            chunk.insert(index, key)
        self._len += 1
        if len(chunks[pos]) > 2 * CHUNK:
            self._split(pos)

    def discard(self, key: str) -> None:
        """Remove ``key``; nothing happens if it is not there."""
        maxes, chunks = self._maxes, self._chunks
        pos = bisect_left(maxes, key)
        if pos == len(maxes):
            return
        chunk = chunks[pos]
        index = bisect_left(chunk, key)
        if chunk[index] != key:
            return
        del chunk[index]
        self._len -= 1
        if not chunk:
            del chunks[pos]
            del maxes[pos]
            return
        if index == len(chunk):
            maxes[pos] = chunk[-1]
        if len(chunk) < CHUNK // 2 and len(chunks) > 1:
            self._merge(pos)

    def iter_from(self, start: str, inclusive: bool = True,
                  stop: str | None = None) -> Iterator[str]:
        """The keys ``>= start`` (``> start`` if not ``inclusive``) and ``< stop`` (if given),
        in order. The iterator walks the chunks with C-level slicing: no Python step per key."""
        maxes, chunks = self._maxes, self._chunks
        find = bisect_left if inclusive else bisect_right
        pos = find(maxes, start)
        if pos == len(maxes):
            return iter(())
        index = find(chunks[pos], start)
        if stop is None or stop > maxes[-1]:
            end_pos, end_index = len(chunks) - 1, len(chunks[-1])
        else:
            end_pos = bisect_left(maxes, stop)
            end_index = bisect_left(chunks[end_pos], stop)
        if (end_pos, end_index) <= (pos, index):
            return iter(())
        if end_pos == pos:
            return islice(chunks[pos], index, end_index)
        return chain(islice(chunks[pos], index, None),
                     chain.from_iterable(islice(chunks, pos + 1, end_pos)),
                     islice(chunks[end_pos], end_index))

    # -- keeping chunks between CHUNK // 2 and 2 * CHUNK long --------------------------------

    def _split(self, pos: int) -> None:
        chunk = self._chunks[pos]
        half = len(chunk) // 2
        tail = chunk[half:]
        del chunk[half:]
        self._chunks.insert(pos + 1, tail)
        self._maxes.insert(pos, chunk[-1])

    def _merge(self, pos: int) -> None:
        # Fold the short chunk into its left neighbour (or the right one's into it, for the
        # first chunk); split again if that made one too long.
        if pos == 0:
            pos = 1
        chunks, maxes = self._chunks, self._maxes
        chunks[pos - 1].extend(chunks[pos])
        maxes[pos - 1] = maxes[pos]
        del chunks[pos]
        del maxes[pos]
        if len(chunks[pos - 1]) > 2 * CHUNK:
            self._split(pos - 1)


def check_invariants(keys: SortedKeys) -> None:
    """Raise AssertionError if ``keys``' internal structure is broken (for tests)."""
    chunks, maxes = keys._chunks, keys._maxes
    assert len(chunks) == len(maxes)
    assert sum(map(len, chunks)) == len(keys)
    flat = list(keys)
    assert all(a < b for a, b in zip(flat, flat[1:])), "keys out of order or repeated"
    for chunk, top in zip(chunks, maxes):
        assert chunk, "empty chunk"
        assert chunk[-1] == top, "stale chunk maximum"
        assert len(chunk) <= 2 * CHUNK, "chunk too long"
    if len(chunks) > 1:
        assert all(len(chunk) >= CHUNK // 2 for chunk in chunks), "chunk too short"


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (so keys under the
    prefix are exactly those ``>= prefix`` and ``< prefix_end(prefix)``); ``None`` if there is
    none (an empty prefix, or one of only U+10FFFF)."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    return stem[:-1] + chr(ord(stem[-1]) + 1)


__all__ = ["CHUNK", "SortedKeys", "check_invariants", "prefix_end"]
