"""The byte format of the data files: records in, bytes out; bytes in, records out. No IO.

Both kinds of data file (log segments and snapshots) are a header followed by records:

    header  = magic (8 bytes: b"KVLOGSEG" or b"KVLOSNAP") | version (uint32, big-endian)
    record  = length (uint32) | crc32 (uint32) | payload (length bytes)

``length`` counts the payload only; ``crc32`` is ``zlib.crc32`` of the payload. Every payload is
compact UTF-8 JSON:

- a log record is one whole commit: ``[seq, key1, value1, key2, value2, ...]``, a ``null`` value
  for a delete. One record per commit, so a commit is on disk entirely or not at all.
- a snapshot starts with ``{"seq": N, "keys": K, "data_bytes": B}`` (the commit it reflects,
  how many keys follow, their size as STATS counts it), then chunks ``[key1, value1, ...]``.

Decoding a file's bytes stops at the first record that is not intact and says why: *torn*
when nothing intact follows it (a write cut short by a crash or power loss: zeros, garbage or a
partial record at the end), *corrupt* when an intact record follows it (the bytes were damaged
after they were written: recovering past it would silently drop commits).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring
from typing import Optional

VERSION = 1
LOG_MAGIC = b"KVLOGSEG"
SNAPSHOT_MAGIC = b"KVLOSNAP"
HEADER = struct.Struct(">8sI")
RECORD_HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size
RECORD_HEADER_SIZE = RECORD_HEADER.size
# The largest record: 512 MiB - 1, so a record's first byte is below 0x20. JSON never has a raw
# byte below 0x20 (control characters are escaped), so no record can hide inside another's
# payload, and a record cut short can never be mistaken for an intact one followed by more.
MAX_RECORD_BYTES = 0x1FFFFFFF
# The smallest payload any record has ("[1]" or "[]"): a zero length is never a record,
# which is what makes a tail of zeros read as torn, not as empty records.
MIN_PAYLOAD_BYTES = 2
# Characters of keys and values per snapshot chunk: loading is a few large json.loads calls,
# and writing never holds much more than one chunk in memory.
SNAPSHOT_CHUNK_CHARS = 1 << 20

Write = tuple[str, Optional[str]]

_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_decode_json = json.loads


class FormatError(ValueError):
    """A file's bytes are not what this format allows; the message says what and where."""


def file_header(magic: bytes) -> bytes:
    """The header that starts a file of this kind (``LOG_MAGIC`` or ``SNAPSHOT_MAGIC``)."""
    return HEADER.pack(magic, VERSION)


def check_header(data: bytes, magic: bytes) -> None:
    """Raise :class:`FormatError` unless ``data`` starts with a complete header of this kind."""
    if len(data) < HEADER_SIZE:
        raise FormatError(f"the file is {len(data)} bytes, shorter than its "
                          f"{HEADER_SIZE}-byte header")
    found, version = HEADER.unpack_from(data)
    if found != magic:
        raise FormatError(f"the file does not start with {magic!r} (found {found!r})")
    if version != VERSION:
        raise FormatError(f"format version {version}; this kvloop reads version {VERSION}")


def frame(payload: bytes) -> bytes:
    """One record: ``payload`` with its length and CRC32 in front."""
    return RECORD_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def encode_commit(seq: int, writes: Iterable[Write]) -> bytes:
    """The log record of one commit: its seq and every key it set or deleted."""
    # The JSON array [seq, key, value, ...], as _encode_json would write it, without its
    # per-call setup (most commits are one or two writes: the setup was most of the cost).
    parts = [str(seq)]
    for key, value in writes:
        parts.append(encode_basestring(key))  # the C string encoder _encode_json uses
        parts.append("null" if value is None else encode_basestring(value))
    return frame(f"[{','.join(parts)}]".encode())


def decode_commit(payload: bytes) -> tuple[int, list[Write]]:
    """A log record's payload back into ``(seq, writes)``; FormatError if it is not one."""
    try:
        flat = _decode_json(payload)
    except ValueError as exc:
        raise FormatError(f"a log record's payload is not JSON: {exc}") from None
    if not isinstance(flat, list) or not flat or not isinstance(flat[0], int) or len(flat) % 2 != 1:
        raise FormatError("a log record's payload is not [seq, key, value, ...]")
    pairs = iter(flat)
    seq = next(pairs)
    return seq, list(zip(pairs, pairs))


def decode_commits(payloads: list[bytes]) -> list[tuple[int, list[Write]]]:
    """Many log records' payloads back into ``(seq, writes)`` pairs: one ``json.loads`` for
    all of them (recovery speed), falling back to :func:`decode_commit` to name a bad one."""
    try:
        batch = _decode_json(b"[" + b",".join(payloads) + b"]")
    except ValueError:
        batch = None
    if batch is None or len(batch) != len(payloads):
        return [decode_commit(p) for p in payloads]
    commits = []
    for flat in batch:
        if type(flat) is not list or not flat or type(flat[0]) is not int or not len(flat) % 2:
            return [decode_commit(p) for p in payloads]
        pairs = iter(flat)
        seq = next(pairs)
        commits.append((seq, list(zip(pairs, pairs))))
    return commits


def encode_snapshot(seq: int, items: Iterable[tuple[str, str]], key_count: int,
                    data_bytes: int) -> Iterator[bytes]:
    """A snapshot file's bytes, in pieces (header, then one record at a time).

    ``items`` must hold exactly ``key_count`` committed keys with their values.
    """
    yield file_header(SNAPSHOT_MAGIC)
    meta = {"seq": seq, "keys": key_count, "data_bytes": data_bytes}
    yield frame(_encode_json(meta).encode("utf-8"))
    chunk: list[str] = []
    chars = 0
    for key, value in items:
        size = len(key) + len(value)
        if chunk and chars + size > SNAPSHOT_CHUNK_CHARS:
            # Flush first: a chunk is under the limit or one item alone, which is never
            # larger than the commit record that wrote it (<= MAX_RECORD_BYTES).
            yield frame(_encode_json(chunk).encode("utf-8"))
            chunk = []
            chars = 0
        chunk.append(key)
        chunk.append(value)
        chars += size
    if chunk:
        yield frame(_encode_json(chunk).encode("utf-8"))


class Snapshot:
    """A decoded snapshot: the commit ``seq`` it reflects, its ``values`` and ``data_bytes``."""

    __slots__ = ("seq", "values", "data_bytes")

    def __init__(self, seq: int, values: dict[str, str], data_bytes: int) -> None:
        self.seq = seq
        self.values = values
        self.data_bytes = data_bytes


def decode_snapshot(data: bytes) -> Snapshot:
    """A whole snapshot file's bytes back into a :class:`Snapshot`.

    A snapshot is written completely before it is renamed into place, so anything short of a
    complete, intact file is damage: FormatError naming the byte offset.
    """
    check_header(data, SNAPSHOT_MAGIC)
    scan = scan_records(data, HEADER_SIZE)
    if scan.problem is not None:
        raise FormatError(f"{scan.problem} record at byte offset {scan.problem_offset}")
    if not scan.payloads:
        raise FormatError("the snapshot has no header record")
    try:
        meta = _decode_json(scan.payloads[0])
        seq, key_count, data_bytes = meta["seq"], meta["keys"], meta["data_bytes"]
        values: dict[str, str] = {}
        for payload in scan.payloads[1:]:
            flat = _decode_json(payload)
            pairs = iter(flat)
            values.update(zip(pairs, pairs))
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"the snapshot's records are not what a snapshot holds: {exc}") from None
    if len(values) != key_count:
        raise FormatError(f"the snapshot says it holds {key_count} keys but has {len(values)}")
    return Snapshot(seq, values, data_bytes)


class Scan:
    """What :func:`scan_records` found: every intact payload up to ``end``, then maybe a problem.

    ``problem`` is ``None`` (every byte was a good record), ``"torn"`` or ``"corrupt"``, with
    ``problem_offset`` the byte offset where the first bad record starts (equal to ``end``).
    """

    __slots__ = ("payloads", "end", "problem", "problem_offset")

    def __init__(self, payloads: list[bytes], end: int, problem: str | None) -> None:
        self.payloads = payloads
        self.end = end
        self.problem = problem
        self.problem_offset = end


def scan_records(data: bytes, start: int = HEADER_SIZE) -> Scan:
    """Decode the records of ``data`` from byte offset ``start`` until the first bad one."""
    size = len(data)
    unpack = RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    payloads: list[bytes] = []
    offset = start
    while offset < size:
        record = _intact_record_at(data, offset, size, unpack, crc32)
        if record is None:
            problem = "corrupt" if _intact_record_after(data, offset, size) else "torn"
            return Scan(payloads, offset, problem)
        payloads.append(record)
        offset += RECORD_HEADER_SIZE + len(record)
    return Scan(payloads, offset, None)


def _intact_record_at(data: bytes, offset: int, size: int, unpack, crc32) -> bytes | None:
    if offset + RECORD_HEADER_SIZE > size:
        return None
    length, crc = unpack(data, offset)
    begin = offset + RECORD_HEADER_SIZE
    if not MIN_PAYLOAD_BYTES <= length <= MAX_RECORD_BYTES or begin + length > size:
        return None
    payload = data[begin:begin + length]
    if crc32(payload) != crc:
        return None
    return payload


def _intact_record_after(data: bytes, bad: int, size: int) -> bool:
    """True if an intact record starts anywhere after byte offset ``bad``.

    Tried at every offset, since the damage may be in a length field. Random bytes pass the
    length check rarely and the CRC32 check almost never, so a garbage tail reads as torn.
    """
    unpack = RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    for offset in range(bad + 1, size - RECORD_HEADER_SIZE - MIN_PAYLOAD_BYTES + 1):
        if _intact_record_at(data, offset, size, unpack, crc32) is not None:
            return True
    return False
