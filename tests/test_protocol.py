"""Sans-IO tests of the wire protocol: framing (LineReader), parsing and reply encoding.

No sockets: bytes go in, lines and replies come out (SPEC §2).
"""

from __future__ import annotations

import json
import random
from typing import Union

import pytest

from kvloop import errors
from kvloop.errors import CommandError
from kvloop.protocol import (
    LineReader,
    LineTooLarge,
    encode_error,
    encode_ok,
    encode_result,
    encode_text_result,
    parse_line,
    split_key_value,
    split_words,
)

Item = Union[bytes, str]
"""A line as these tests describe it: the bytes, or "TOO_LARGE" for a LineTooLarge."""


def shown(line: bytes | LineTooLarge) -> Item:
    """``line`` as the tests compare it: a LineTooLarge shown as "TOO_LARGE"."""
    return "TOO_LARGE" if isinstance(line, LineTooLarge) else line


def drain(reader: LineReader) -> list[Item]:
    """Every line ready in ``reader``, each :func:`shown`."""
    out: list[Item] = []
    while True:
        line = reader.next_line()
        if line is None:
            return out
        out.append(shown(line))


def feed_all(chunks: list[bytes], limit: int = 1000, finish: bool = False) -> list[Item]:
    """Feed ``chunks`` one by one into a fresh reader and return every line it yields."""
    reader = LineReader(limit)
    out: list[Item] = []
    for chunk in chunks:
        reader.feed(chunk)
        out.extend(drain(reader))
    if finish:
        reader.finish()
        out.extend(drain(reader))
    return out


def reference_lines(stream: bytes, limit: int, finished: bool) -> list[Item]:
    """What a reader must yield for ``stream``, computed by splitting it all at once."""
    pieces = stream.split(b"\n")
    tail = pieces.pop()
    if finished and tail:
        pieces.append(tail)
    elif len(tail) > limit:
        pieces.append(tail)  # an unterminated line already over the limit is reported
    return ["TOO_LARGE" if len(p) > limit else p for p in pieces]


# -- LineReader ---------------------------------------------------------------------------

class TestLineReader:
    """Framing a byte stream into lines, bounded by the line limit."""

    def test_partial_line_waits_for_its_newline(self):
        reader = LineReader(100)
        reader.feed(b"PUT a ")
        assert reader.next_line() is None
        assert not reader.has_lines()
        reader.feed(b"1")
        assert reader.next_line() is None
        reader.feed(b"\n")
        assert reader.has_lines()
        assert reader.next_line() == b"PUT a 1"
        assert reader.next_line() is None

    def test_many_lines_in_one_feed(self):
        assert feed_all([b"PING\nGET a\nPUT b 2\nDEL c\n"]) == [
            b"PING", b"GET a", b"PUT b 2", b"DEL c"]

    def test_many_lines_and_a_partial_one(self):
        reader = LineReader(100)
        reader.feed(b"one\ntwo\nthr")
        assert drain(reader) == [b"one", b"two"]
        reader.feed(b"ee\nfour\n")
        assert drain(reader) == [b"three", b"four"]

    def test_byte_at_a_time(self):
        stream = b"PUT k some value\nGET k\n\nPING\n"
        assert feed_all([bytes([b]) for b in stream]) == [
            b"PUT k some value", b"GET k", b"", b"PING"]

    def test_crlf_keeps_the_cr_for_parse_line_to_drop(self):
        lines = feed_all([b"PING\r\nGET a\r\n"])
        assert lines == [b"PING\r", b"GET a\r"]
        assert [parse_line(line) for line in lines] == [("PING", ""), ("GET", "a")]

    def test_empty_lines_are_lines(self):
        assert feed_all([b"\n\n\n"]) == [b"", b"", b""]

    def test_line_exactly_at_the_limit_is_accepted(self):
        line = b"x" * 10
        assert feed_all([line + b"\n"], limit=10) == [line]
        assert feed_all([line[:4], line[4:], b"\n"], limit=10) == [line]

    def test_over_long_line_in_one_feed(self):
        assert feed_all([b"ok\n" + b"x" * 11 + b"\nPING\n"], limit=10) == [
            b"ok", "TOO_LARGE", b"PING"]

    def test_over_long_line_gives_exactly_one_marker_then_stream_is_usable(self):
        reader = LineReader(10)
        reader.feed(b"x" * 25)
        assert drain(reader) == ["TOO_LARGE"]
        reader.feed(b"y" * 25)  # still the same line: discarded silently
        assert drain(reader) == []
        reader.feed(b"zz\nGET a\n")
        assert drain(reader) == [b"GET a"]
        reader.feed(b"PING\n")
        assert drain(reader) == [b"PING"]

    def test_marker_has_the_limit(self):
        reader = LineReader(10)
        reader.feed(b"x" * 11 + b"\n")
        marker = reader.next_line()
        assert isinstance(marker, LineTooLarge)
        assert marker.limit == 10

    def test_over_long_line_split_across_feeds_ending_in_a_feed_with_more_lines(self):
        # The partial is under the limit, and only the piece that ends it pushes it over.
        assert feed_all([b"PING\n" + b"a" * 8, b"b" * 5 + b"\nGET k\n"], limit=10) == [
            b"PING", "TOO_LARGE", b"GET k"]

    def test_over_long_line_split_across_many_feeds(self):
        chunks = [b"GET a\n"] + [b"v" * 7] * 5 + [b"\nPING\n"]
        assert feed_all(chunks, limit=10) == [b"GET a", "TOO_LARGE", b"PING"]

    def test_over_long_line_byte_at_a_time(self):
        stream = b"x" * 30 + b"\nPING\n"
        assert feed_all([bytes([b]) for b in stream], limit=10) == ["TOO_LARGE", b"PING"]

    def test_marker_comes_in_order_with_other_lines(self):
        reader = LineReader(10)
        reader.feed(b"one\ntwo\n" + b"x" * 20)
        assert drain(reader) == [b"one", b"two", "TOO_LARGE"]

    def test_over_long_unterminated_line_at_finish(self):
        assert feed_all([b"x" * 11], limit=10, finish=True) == ["TOO_LARGE"]
        assert feed_all([b"PING\n" + b"x" * 6, b"x" * 6], limit=10, finish=True) == [
            b"PING", "TOO_LARGE"]

    def test_finish_turns_unterminated_last_line_into_a_line(self):
        reader = LineReader(100)
        reader.feed(b"PUT a 1\nGET a")
        assert drain(reader) == [b"PUT a 1"]
        assert not reader.finished
        reader.finish()
        assert reader.finished
        assert drain(reader) == [b"GET a"]

    def test_finish_with_nothing_pending_adds_nothing(self):
        reader = LineReader(100)
        reader.feed(b"PING\n")
        reader.finish()
        assert drain(reader) == [b"PING"]
        reader.finish()  # idempotent
        assert drain(reader) == []

    def test_finish_keeps_lines_not_yet_taken(self):
        reader = LineReader(100)
        reader.feed(b"a\nb\nc")
        reader.finish()
        assert drain(reader) == [b"a", b"b", b"c"]

    def test_buffered_bytes(self):
        reader = LineReader(100)
        assert reader.buffered_bytes() == 0
        reader.feed(b"abc")
        assert reader.buffered_bytes() == 3
        reader.feed(b"de\nfg")
        assert reader.buffered_bytes() == len(b"abcde") + len(b"fg")
        assert reader.next_line() == b"abcde"
        assert reader.buffered_bytes() == 2
        reader.feed(b"\n")
        assert reader.buffered_bytes() == 2
        reader.next_line()
        assert reader.buffered_bytes() == 0

    def test_buffered_bytes_never_holds_an_over_long_line(self):
        reader = LineReader(10)
        for _ in range(100):
            reader.feed(b"x" * 7)
            assert reader.buffered_bytes() <= 10
        assert drain(reader) == ["TOO_LARGE"]
        assert reader.buffered_bytes() == 0

    @pytest.mark.parametrize("seed", range(20))
    def test_fuzz_random_splits_match_splitting_at_once(self, seed):
        rng = random.Random(seed)
        limit = rng.choice([1, 5, 16, 64, 300])
        # Bytes biased towards newlines so lines of every length, blank lines and over-long
        # ones all appear; plus some arbitrary binary bytes.
        alphabet = b"\n\n\r ab\t\xff\x00" + bytes(range(256))
        stream = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 3000)))
        if rng.random() < 0.3:
            stream += b"y" * rng.randrange(0, 2 * limit + 2)  # an unterminated tail
        finished = rng.random() < 0.5
        chunks = []
        pos = 0
        while pos < len(stream):
            size = rng.choice([1, 1, 2, 3, 7, 50, 400, 5000])
            chunks.append(stream[pos:pos + size])
            pos += size
        assert feed_all(chunks, limit=limit, finish=finished) == reference_lines(
            stream, limit, finished)

    @pytest.mark.parametrize("seed", range(20))
    def test_fuzz_taking_whole_reads_and_giving_some_back_keeps_the_stream(self, seed):
        """What the loop does: lines handed out by take_whole (or else feed), some run and the
        rest given back with unread, then taken again in order: the same lines as feeding
        everything, and the held bytes stay an upper bound of what is held."""
        rng = random.Random(seed)
        limit = rng.choice([5, 16, 64, 300])
        alphabet = b"\n\n\r ab\t\xff" + bytes(range(32, 127))
        stream = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 3000)))
        reader, got, pos = LineReader(limit), [], 0
        while pos < len(stream):
            size = rng.choice([1, 3, 7, 50, 400, 5000])
            chunk, pos = stream[pos:pos + size], pos + size
            lines = reader.take_whole(chunk)
            if lines is None:
                reader.feed(chunk)
                lines = reader.take_lines(rng.randrange(1, 20))
            run = rng.randrange(0, len(lines) + 1)
            got += map(shown, lines[:run])
            if run < len(lines):
                reader.unread(lines[run:])
            assert reader.held_bytes() >= reader.buffered_bytes()
            if rng.random() < 0.5:
                got += drain(reader)
        got += drain(reader)
        assert got == reference_lines(stream, limit, False)

    def test_take_whole_only_when_nothing_is_buffered_and_lines_are_whole(self):
        reader = LineReader(100)
        assert reader.take_whole(b"GET a\nGET b\n") == [b"GET a", b"GET b"]
        assert reader.take_whole(b"GET a\nGET") is None  # a partial line: feed it
        reader.feed(b"GET")
        assert reader.take_whole(b" c\n") is None  # a partial line waits in the reader
        assert LineReader(100).take_whole(b"x" * 100 + b"\n") is None  # could be over the limit


# -- parse_line, split_words, split_key_value -----------------------------------------------

class TestParseLine:
    """One line to (VERB, rest)."""

    @pytest.mark.parametrize("line,expected", [
        (b"PING", ("PING", "")),
        (b"ping", ("PING", "")),
        (b"pInG", ("PING", "")),
        (b"get key", ("GET", "key")),
        (b"PUT k v", ("PUT", "k v")),
        (b"PUT\tk\tv", ("PUT", "k\tv")),
        (b"PUT  \t k   two  words  ", ("PUT", "k   two  words  ")),
        (b"   GET a", ("GET", "a")),
        (b"\t\tGET a", ("GET", "a")),
        (b"GET a\r", ("GET", "a")),
        (b"PING\r", ("PING", "")),
        (b"PING   ", ("PING", "")),
        ("PUT clé välue €".encode(), ("PUT", "clé välue €")),
    ])
    def test_verb_and_rest(self, line, expected):
        assert parse_line(line) == expected

    @pytest.mark.parametrize("line", [b"", b" ", b"\t", b"  \t \t ", b"\r", b" \t\r"])
    def test_blank_lines_are_none(self, line):
        assert parse_line(line) is None

    @pytest.mark.parametrize("line", [b"\xff", b"PUT k \xc3", b"GET \x80abc", b"\xed\xa0\x80"])
    def test_invalid_utf8_is_bad_request(self, line):
        with pytest.raises(CommandError) as info:
            parse_line(line)
        assert info.value.code == errors.BAD_REQUEST
        assert "UTF-8" in info.value.mesg
        assert "offset" in info.value.mesg

    def test_invalid_utf8_names_the_offset(self):
        with pytest.raises(CommandError) as info:
            parse_line(b"PUT k \xff")
        assert "offset 6" in info.value.mesg


class TestSplitting:
    """Arguments to words, and PUT's key and value."""

    @pytest.mark.parametrize("rest,words", [
        ("", []),
        ("a", ["a"]),
        ("a b", ["a", "b"]),
        ("a \t  b\tc", ["a", "b", "c"]),
        ("a   ", ["a"]),
        ("a\t", ["a"]),
        ("read-committed", ["read-committed"]),
    ])
    def test_split_words(self, rest, words):
        assert split_words(rest) == words

    @pytest.mark.parametrize("rest,key,value", [
        ("k v", "k", "v"),
        ("k  v", "k", "v"),
        ("k\t \tv", "k", "v"),
        ("k a b  c", "k", "a b  c"),
        ("k a\tb ", "k", "a\tb "),
        ("k v   ", "k", "v   "),
        ('georgew {"first_name":"George", "last_name":"Washington"}',
         "georgew", '{"first_name":"George", "last_name":"Washington"}'),
        ("k", "k", ""),
        ("k ", "k", ""),
        ("", "", ""),
    ])
    def test_split_key_value_keeps_inner_and_trailing_blanks(self, rest, key, value):
        assert split_key_value(rest) == (key, value)

    def test_put_line_end_to_end(self):
        verb, rest = parse_line(b"put  k  x  y  \r")
        assert verb == "PUT"
        assert split_key_value(rest) == ("k", "x  y  ")


# -- encoding -----------------------------------------------------------------------------

def one_json_line(reply: bytes) -> dict:
    """Check ``reply`` is exactly one UTF-8 line of JSON ending in newline; return it parsed."""
    assert reply.endswith(b"\n")
    assert reply.count(b"\n") == 1
    assert b"\r" not in reply
    text = reply.decode("utf-8")
    assert all(ord(c) >= 0x20 for c in text[:-1])
    return json.loads(text)


class TestEncoding:
    """Replies: one line of UTF-8 JSON each, whatever they contain."""

    def test_ok(self):
        assert encode_ok() == b'{"status":"Ok"}\n'
        assert one_json_line(encode_ok()) == {"status": "Ok"}

    @pytest.mark.parametrize("result", [
        "PONG", "", "a b  c", {"seq": 3}, ["x", "y"], 0, None,
        '{"first_name":"George", "last_name":"Washington"}',
    ])
    def test_result_round_trips(self, result):
        assert one_json_line(encode_result(result)) == {"status": "Ok", "result": result}

    def test_result_non_ascii_is_utf8_not_escaped(self):
        reply = encode_result("héllo wörld € 日本 🙂")
        assert "héllo wörld € 日本 🙂".encode() in reply
        assert one_json_line(reply)["result"] == "héllo wörld € 日本 🙂"

    @pytest.mark.parametrize("value", [
        "a\nb", "a\rb", "a\r\nb", "\x00\x01\x1f", "tab\there", "\x7f", 'quote " and \\ back',
        "\n", "line\u2028sep",
    ])
    def test_control_characters_are_escaped_so_reply_is_one_line(self, value):
        assert one_json_line(encode_result(value))["result"] == value

    def test_error(self):
        reply = encode_error("NOT_FOUND", "Key not found")
        assert one_json_line(reply) == {
            "status": "Error", "code": "NOT_FOUND", "mesg": "Key not found"}

    def test_error_with_hostile_text_is_one_line(self):
        mesg = "bad key 'a\nb\r\x00' é"
        assert one_json_line(encode_error("BAD_REQUEST", mesg))["mesg"] == mesg

    def test_compact_separators(self):
        assert encode_result({"seq": 1}) == b'{"status":"Ok","result":{"seq":1}}\n'


@pytest.mark.parametrize("text", ["plain", 'quo"te \\ back', "tab\there", "é ünï 😀",
                                  "line\u2028sep", "nul\x00 and \x1f"])
def test_text_result_matches_the_general_encoder(text):
    """GET's fast path encodes exactly as the general JSON path does."""
    assert encode_text_result(text) == encode_result(text)
    assert json.loads(encode_text_result(text)) == {"status": "Ok", "result": text}


@pytest.mark.parametrize("line, expected", [
    (b"GET k", ("GET", "k")),
    (b"get  k", ("GET", "k")),
    (b"PUT \tk v ", ("PUT", "k v ")),
    (b"PUT\tk v", ("PUT", "k v")),
    (b"  PUT k v", ("PUT", "k v")),
    (b"QUIT", ("QUIT", "")),
    (b"QUIT ", ("QUIT", "")),
    (b" \t ", None),
])
def test_parse_line_shapes(line, expected):
    """Every spelling of blanks around the verb parses the same way."""
    assert parse_line(line) == expected
