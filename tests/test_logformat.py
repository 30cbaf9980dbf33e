"""The log's byte format (kvloop/logformat.py), with plain bytes: no files, no server."""

from __future__ import annotations

import json
import random
import struct
import zlib

import pytest

from kvloop import logformat
from kvloop.logformat import (
    HEADER_SIZE,
    LOG_MAGIC,
    RECORD_HEADER,
    SNAPSHOT_MAGIC,
    FormatError,
    check_header,
    decode_commit,
    decode_snapshot,
    encode_commit,
    encode_snapshot,
    file_header,
    scan_records,
)

COMMITS = [
    (1, [("a", "1")]),
    (2, [("b", "two words  "), ("a", None)]),
    (3, [("ключ", "значение ✓"), ("q", '{"json": "inside", "n": [1, 2]}')]),
    (4, [("ctl", "tab\there\rcr \x01\x7f")]),
]


def log_bytes(commits=COMMITS) -> bytes:
    return file_header(LOG_MAGIC) + b"".join(encode_commit(s, w) for s, w in commits)


def decoded(data: bytes) -> list:
    return [decode_commit(p) for p in scan_records(data).payloads]


def test_header_layout():
    header = file_header(LOG_MAGIC)
    assert header == b"KVLOGSEG" + struct.pack(">I", logformat.VERSION)
    assert len(header) == HEADER_SIZE == 12
    check_header(header, LOG_MAGIC)
    with pytest.raises(FormatError, match="does not start with"):
        check_header(header, SNAPSHOT_MAGIC)
    with pytest.raises(FormatError, match="version 99"):
        check_header(b"KVLOGSEG" + struct.pack(">I", 99), LOG_MAGIC)
    with pytest.raises(FormatError, match="shorter"):
        check_header(header[:5], LOG_MAGIC)


def test_record_layout_is_length_crc_payload():
    record = encode_commit(7, [("k", "v"), ("gone", None)])
    length, crc = struct.unpack(">II", record[:8])
    payload = record[8:]
    assert length == len(payload)
    assert crc == zlib.crc32(payload)
    assert payload == b'[7,"k","v","gone",null]'


def test_round_trip_keeps_every_commit_exactly():
    scan = scan_records(log_bytes())
    assert scan.problem is None
    assert scan.end == len(log_bytes())
    assert [decode_commit(p) for p in scan.payloads] == COMMITS


def test_empty_log_is_fine():
    scan = scan_records(file_header(LOG_MAGIC))
    assert scan.payloads == [] and scan.problem is None and scan.end == HEADER_SIZE


def test_every_truncation_of_the_last_record_is_torn_and_keeps_the_rest():
    full = log_bytes()
    last_start = len(log_bytes(COMMITS[:-1]))
    for cut in range(last_start, len(full)):
        scan = scan_records(full[:cut])
        assert [decode_commit(p) for p in scan.payloads] == COMMITS[:-1], cut
        assert scan.end == last_start
        if cut == last_start:
            assert scan.problem is None
        else:
            assert scan.problem == "torn", cut
            assert scan.problem_offset == last_start


def test_every_truncation_point_of_the_whole_log_keeps_a_prefix():
    full = log_bytes()
    ends = [len(log_bytes(COMMITS[:n])) for n in range(len(COMMITS) + 1)]
    for cut in range(HEADER_SIZE, len(full) + 1):
        scan = scan_records(full[:cut])
        kept = max(n for n, end in enumerate(ends) if end <= cut)
        assert decoded(full[:cut]) == COMMITS[:kept], cut
        assert scan.problem == (None if cut in ends else "torn"), cut


@pytest.mark.parametrize("tail", [b"\0" * 4096, b"\0", b"\0" * 7, b"\xff" * 100],
                         ids=["zeros-4k", "one-zero", "seven-zeros", "ff"])
def test_zeros_or_junk_after_the_last_record_are_torn(tail):
    full = log_bytes()
    scan = scan_records(full + tail)
    assert decoded(full + tail) == COMMITS
    assert scan.problem == "torn"
    assert scan.problem_offset == len(full)


def test_random_garbage_after_the_last_record_is_torn():
    rng = random.Random(6)
    full = log_bytes()
    for size in (1, 9, 100, 5000):
        garbage = bytes(rng.randrange(256) for _ in range(size))
        scan = scan_records(full + garbage)
        assert scan.problem == "torn", size
        assert decoded(full + garbage) == COMMITS


def test_a_flipped_byte_in_the_middle_is_corruption_at_its_record():
    full = log_bytes()
    second_start = len(log_bytes(COMMITS[:1]))
    third_start = len(log_bytes(COMMITS[:2]))
    for position in range(second_start, third_start):  # length, crc and payload bytes
        damaged = bytearray(full)
        damaged[position] ^= 0x40
        scan = scan_records(bytes(damaged))
        assert scan.problem == "corrupt", position
        assert scan.problem_offset == second_start
        assert [decode_commit(p) for p in scan.payloads] == COMMITS[:1]


def test_a_flipped_byte_in_the_last_record_reads_as_torn():
    """Nothing intact follows it, so it cannot be told from a torn write: it is cut off."""
    full = bytearray(log_bytes())
    full[-3] ^= 0x01
    scan = scan_records(bytes(full))
    assert scan.problem == "torn"
    assert [decode_commit(p) for p in scan.payloads] == COMMITS[:-1]


def test_no_record_can_hide_inside_a_value():
    """A value that spells out a whole record is escaped by JSON: it never reads as one."""
    inner = encode_commit(99, [("evil", "x")])
    sneaky = inner.decode("latin-1")
    data = log_bytes([(1, [("k", sneaky)]), (2, [("z", "1")])])
    assert decoded(data)[0] == (1, [("k", sneaky)])
    cut = data[:-5]  # tear the last record: the value must not be taken for a record
    assert scan_records(cut).problem == "torn"


def test_payload_that_is_not_a_commit_is_a_format_error():
    for payload in (b"{}", b"[]", b"[1, \"k\"]", b"not json", b'["1", "k", "v"]'):
        with pytest.raises(FormatError):
            decode_commit(payload)


def test_snapshot_round_trip(monkeypatch):
    monkeypatch.setattr(logformat, "SNAPSHOT_CHUNK_CHARS", 10_000)
    items = [(f"key{i}", "v" * (i % 50)) for i in range(1, 20_000)]
    data = b"".join(encode_snapshot(42, items, len(items), 123))
    snapshot = decode_snapshot(data)
    assert snapshot.seq == 42
    assert snapshot.data_bytes == 123
    assert snapshot.values == dict(items)
    assert data.startswith(b"KVLOSNAP")
    assert len(scan_records(data).payloads) > 2  # written in several chunks


def test_snapshot_that_is_cut_short_or_damaged_is_refused():
    items = [(f"k{i}", "v") for i in range(100)]
    data = b"".join(encode_snapshot(1, items, len(items), 0))
    with pytest.raises(FormatError, match="torn record at byte offset"):
        decode_snapshot(data[:-1])
    damaged = bytearray(data)
    damaged[HEADER_SIZE + 10] ^= 1
    with pytest.raises(FormatError):
        decode_snapshot(bytes(damaged))
    short = b"".join(encode_snapshot(1, items, len(items) + 1, 0))
    with pytest.raises(FormatError, match="holds 101 keys but has 100"):
        decode_snapshot(short)
    with pytest.raises(FormatError):
        decode_snapshot(log_bytes())


def test_snapshot_chunks_stay_under_the_limit_or_hold_one_item(monkeypatch):
    monkeypatch.setattr(logformat, "SNAPSHOT_CHUNK_CHARS", 100)
    items = [("a", "x" * 30), ("b", "y" * 500), ("c", "z" * 30), ("d", "w" * 30)]
    data = b"".join(encode_snapshot(9, items, len(items), 0))
    chunks = [json_payload(p) for p in scan_records(data).payloads[1:]]
    assert chunks == [["a", "x" * 30], ["b", "y" * 500], ["c", "z" * 30, "d", "w" * 30]]
    assert decode_snapshot(data).values == dict(items)


def json_payload(payload: bytes) -> list:
    return json.loads(payload)


def test_a_commit_record_is_the_json_array_the_json_module_writes():
    """encode_commit builds its JSON by hand for speed: the bytes must be json.dumps's."""
    rnd = random.Random(7)
    alphabet = 'ab"\\\n\t\x00\x1f\x7f é€🔑\u2028\u0085/'
    for _ in range(500):
        writes = [("".join(rnd.choice(alphabet) for _ in range(rnd.randrange(8))),
                   None if rnd.random() < 0.2 else
                   "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(12))))
                  for _ in range(rnd.randrange(4))]
        seq = rnd.randrange(1 << 40)
        flat = [seq] + [item for pair in writes for item in pair]
        expected = json.dumps(flat, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        record = encode_commit(seq, writes)
        assert record[RECORD_HEADER.size:] == expected
        assert decode_commit(expected) == (seq, writes)
