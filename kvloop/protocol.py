"""The wire protocol, without any IO: bytes in, requests out; results in, reply bytes out.

Requests are lines of UTF-8 text ending in ``\\n`` (a ``\\r`` before it is dropped). Words are
separated by runs of spaces or tabs; the first word is the verb, case-insensitive. Replies are
one line of JSON each. See SPEC §2 and the README's protocol reference.

:class:`LineReader` frames a byte stream into lines, bounded by a maximum line length;
:func:`parse_line` turns one line into ``(VERB, rest)``; the ``encode_*`` functions build replies.
"""

from __future__ import annotations

import json
import re
from collections import deque
from json.encoder import encode_basestring  # the C string encoder json.dumps uses
from typing import Union

from . import errors
from .errors import CommandError


class LineTooLarge:
    """Marker that :meth:`LineReader.next_line` returns in place of an over-long line."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit


Line = Union[bytes, LineTooLarge]

# What holding one line costs beyond its bytes: the bytes object's header and its deque slot.
LINE_OVERHEAD_BYTES = 40


class LineReader:
    """Frames a byte stream into complete lines, never holding more than one line's limit.

    ``feed`` takes bytes as they arrive; ``next_line`` hands out complete lines (without the
    ``\\n``) in order, or ``None`` when more bytes are needed. A line longer than
    ``max_line_bytes`` comes out as a single :class:`LineTooLarge` at the point where it
    started, and the rest of it is discarded as it arrives, so the stream stays usable.
    ``finish`` marks the end of the stream: an unterminated last line becomes a line.
    Each byte is scanned for ``\\n`` once, so a line trickled in byte by byte costs O(n).
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._ready: deque[Line] = deque()
        self._partial = bytearray()
        self._discarding = False
        self._ready_bytes = 0  # bytes made ready since _ready was last empty (an upper bound)
        self.finished = False

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer."""
        if b"\n" not in data:
            self._add_partial(data)
            return
        held = len(self._partial)
        lines = data.split(b"\n")
        tail = lines.pop()
        if self._discarding:
            # The first piece ends a line that was already reported as too large.
            self._discarding = False
            del lines[0]
        elif self._partial:
            self._partial += lines[0]
            lines[0] = bytes(self._partial)
            self._partial.clear()
        limit = self.max_line_bytes
        if held + len(data) > limit:  # only then can a line be over the limit
            lines = [line if len(line) <= limit else LineTooLarge(limit) for line in lines]
        self._ready_bytes = ((self._ready_bytes if self._ready else 0) + held + len(data)
                             - len(tail) + LINE_OVERHEAD_BYTES * len(lines))
        self._ready.extend(lines)
        self._add_partial(tail)

    def _add_partial(self, data: bytes) -> None:
        if self._discarding or not data:
            return
        self._partial += data
        if len(self._partial) > self.max_line_bytes:
            self._partial.clear()
            self._discarding = True
            self._ready.append(LineTooLarge(self.max_line_bytes))

    def finish(self) -> None:
        """Mark the end of the stream; an unterminated last line becomes a complete line."""
        if self.finished:
            return
        self.finished = True
        if self._partial and not self._discarding:
            self._ready_bytes = (self._ready_bytes if self._ready else 0) + len(self._partial)
            self._ready.append(bytes(self._partial))
        self._partial.clear()
        self._discarding = False

    def next_line(self) -> Line | None:
        """The next complete line (or :class:`LineTooLarge`), or ``None`` if none is ready."""
        return self._ready.popleft() if self._ready else None

    def has_lines(self) -> bool:
        """True when complete lines are waiting to be taken."""
        return bool(self._ready)

    def held_bytes(self) -> int:
        """An upper bound, in O(1), of the memory held for lines not yet taken: the partial
        line plus, while lines wait, what was made ready since none did (each line counted
        with the size of the object that holds it)."""
        return len(self._partial) + (self._ready_bytes if self._ready else 0)

    def buffered_bytes(self) -> int:
        """Bytes held for lines not yet taken (the connection's input buffer size)."""
        return len(self._partial) + sum(
            len(line) for line in self._ready if isinstance(line, bytes)
        )


_VERB = re.compile(r"[ \t]*([^ \t]+)[ \t]*")
_BLANKS = re.compile(r"[ \t]+")
_KEY_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")


def find_bad_key_char(key: str) -> int | None:
    """The position of the first character a key may not hold (a blank or a C0, DEL or C1
    control character), or ``None`` if there is none."""
    if key.isascii() and key.isprintable() and " " not in key:
        return None  # the common case, without the regex
    bad = _KEY_FORBIDDEN.search(key)
    return bad.start() if bad else None


Request = tuple[str, str]
"""A parsed request line: the verb in upper case, and the rest of the line after its blanks."""


def parse_line(line: bytes) -> Request | None:
    """Parse one request line into ``(VERB, rest)``; ``None`` for a blank line.

    Raises :class:`CommandError` (BAD_REQUEST) if the line is not valid UTF-8.
    ``rest`` keeps inner and trailing blanks, because PUT's value is the rest of the line.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            errors.BAD_REQUEST,
            f"request is not valid UTF-8 (bad byte at offset {exc.start}); "
            "send commands as UTF-8 text",
        ) from None
    text = text.removesuffix("\r")
    verb, _, rest = text.partition(" ")
    if verb and "\t" not in verb:  # the common shape: "VERB args", one space
        return verb.upper(), rest.lstrip(" \t") if rest[:1] in (" ", "\t") else rest
    match = _VERB.match(text)
    if match is None:
        return None
    return match.group(1).upper(), text[match.end():]


def split_words(rest: str) -> list[str]:
    """Split the arguments of a command into words (runs of spaces or tabs separate them)."""
    rest = rest.rstrip(" \t")
    return _BLANKS.split(rest) if rest else []


def split_key_value(rest: str) -> tuple[str, str]:
    """Split PUT's arguments into the key and the value: the rest after the key's blanks.

    The value keeps every inner and trailing blank; it is empty if there is none.
    """
    parts = _BLANKS.split(rest, 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

OK = b'{"status":"Ok"}\n'


def encode_ok() -> bytes:
    """The reply of a command that succeeded with no result."""
    return OK


def encode_result(result: object) -> bytes:
    """The reply of a command that succeeded with a JSON-serializable result."""
    return b'{"status":"Ok","result":' + _ENCODER.encode(result).encode("utf-8") + b"}\n"


def encode_text_result(text: str) -> bytes:
    """The reply of a command whose result is a string (GET's value): the hot path."""
    return b'{"status":"Ok","result":' + encode_basestring(text).encode("utf-8") + b"}\n"


def encode_error(code: str, mesg: str) -> bytes:
    """The reply of a command that failed: a machine code and a sentence a person can act on."""
    body = {"status": "Error", "code": code, "mesg": mesg}
    return _ENCODER.encode(body).encode("utf-8") + b"\n"
