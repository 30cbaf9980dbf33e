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
import unicodedata
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
            lines = [LineTooLarge(limit) if self._too_long(line) else line for line in lines]
        self._ready_bytes = ((self._ready_bytes if self._ready else 0) + held + len(data)
                             - len(tail) + LINE_OVERHEAD_BYTES * len(lines))
        self._ready.extend(lines)
        self._add_partial(tail)

    def _too_long(self, line: bytes | bytearray) -> bool:
        """Over the limit, not counting a final ``\r`` (it is part of the line end)."""
        extra = len(line) - self.max_line_bytes
        return extra > 0 and not (extra == 1 and line.endswith(b"\r"))

    def _add_partial(self, data: bytes) -> None:
        if self._discarding or not data:
            return
        self._partial += data
        if self._too_long(self._partial):
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

    def take_whole(self, data: bytes) -> list[bytes] | None:
        """``data``'s lines, handed out at once without being kept, when nothing is buffered
        and ``data`` is whole lines none of which can be over the limit (the common case: a
        request, or a pipelined batch, that came in one read); else ``None``: :meth:`feed`
        it. Lines not run must be given back with :meth:`unread`."""
        if (data[-1:] != b"\n" or self._partial or self._ready or self._discarding
                or len(data) > self.max_line_bytes):
            return None
        lines = data.split(b"\n")
        lines.pop()
        return lines

    def take_lines(self, most: int) -> list[Line]:
        """Up to ``most`` of the complete lines ready, in order (an empty list if none is)."""
        ready = self._ready
        if most >= len(ready):
            lines = list(ready)
            ready.clear()
            return lines
        return [ready.popleft() for _ in range(most)]

    def unread(self, lines: list[Line]) -> None:
        """Put back lines taken but not run: they come out again first, in the same order."""
        if not self._ready:
            self._ready_bytes = 0
        self._ready_bytes += sum(len(line) for line in lines if isinstance(line, bytes)) + (
            LINE_OVERHEAD_BYTES * len(lines))
        self._ready.extendleft(reversed(lines))

    def idle(self) -> bool:
        """True when it holds nothing (no line, no partial line) and the stream goes on."""
        return not (self._ready or self._partial or self.finished)

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
# An HTTP request line: METHOD, a request target (a path, "*" or an absolute URL), HTTP/x.y.
_HTTP_REQUEST_LINE = re.compile(r"[A-Z]+ (?:/|\*|[a-zA-Z][a-zA-Z0-9+.-]*://)\S* HTTP/\d\.\d")
# Verbs whose mere presence means HTTP: kvloop has no such commands (Redis closes on these).
_HTTP_VERBS = frozenset({"POST", "HOST:"})


def find_bad_key_char(key: str) -> int | None:
    """The position of the first character a key may not hold, or ``None`` if there is none.

    A key is one word of printable characters: no blanks (a space, a tab, any Unicode space or
    line/paragraph separator), no control or format characters (C0, DEL, C1, U+200B, U+202E,
    ...), nothing private-use, unassigned or a lone surrogate: exactly the characters for
    which :meth:`str.isprintable` is false, plus the ASCII space.
    """
    if key.isprintable() and " " not in key:
        return None  # the common case, one pass in C
    for position, char in enumerate(key):
        if char == " " or not char.isprintable():
            return position
    return None  # unreachable: isprintable() was false for some character


def is_plain_key(key: str, max_key_bytes: int) -> bool:
    """True if ``key`` is valid by the cheap test: not empty, within the limit whatever its
    characters (4 UTF-8 bytes each at most), printable and without a space. A key that fails
    it may still be valid (a long key whose bytes fit): :func:`find_bad_key_char` and its
    byte count decide."""
    return 0 < len(key) <= max_key_bytes // 4 and key.isprintable() and " " not in key


def describe_char(char: str) -> str:
    """What kind of character ``char`` is and its code point, for error messages (the raw
    character may be invisible): ``a control character (U+0001, code 1)``."""
    category = unicodedata.category(char)
    kind = ("a control character" if category == "Cc" else
            "a blank" if category[0] == "Z" else
            "a format (invisible) character" if category == "Cf" else
            "an unassigned or private-use character")
    name = unicodedata.name(char, "")
    return f"{kind} (U+{ord(char):04X}{' ' + name if name else ''}, code {ord(char)})"


def looks_like_http(verb: str, rest: str) -> bool:
    """True if a request line ``verb rest`` is HTTP rather than kvloop's protocol.

    A browser can be made to send a request to any host and port, with a body of the page's
    choosing (cross-protocol scripting): the server must not run what follows such a line.
    ``verb`` is already in upper case.
    """
    if verb in _HTTP_VERBS:
        return True
    # Cheap test first: every HTTP request line ends with "HTTP/x.y".
    return rest[-8:-3] == "HTTP/" and _HTTP_REQUEST_LINE.fullmatch(f"{verb} {rest}") is not None


Request = tuple[str, str]
"""A parsed request line: the verb in upper case, and the rest of the line after its blanks."""


def parse_line(line: bytes) -> Request | None:
    """Parse one request line into ``(VERB, rest)``; ``None`` for a blank line.

    Raises :class:`CommandError` (BAD_REQUEST) if the line is not valid UTF-8.
    ``rest`` keeps inner and trailing blanks, because PUT's value is the rest of the line.
    The verb is upper-cased by ASCII rules only: a verb with any other character is left as is,
    so it matches no command (Unicode case rules would turn ``\\u017ftats``, long s, into STATS).
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
        rest = rest.lstrip(" \t") if rest[:1] in (" ", "\t") else rest
    else:
        match = _VERB.match(text)
        if match is None:
            return None
        verb, rest = match.group(1), text[match.end():]
    return (verb.upper() if verb.isascii() else verb), rest


def split_words(rest: str, most: int | None = None) -> list[str]:
    """Split the arguments of a command into words (runs of spaces or tabs separate them).

    With ``most``, stop after that many words: the last item is then the unsplit remainder,
    so ``len(result) > most`` tells there were too many without splitting a long line whole.
    """
    rest = rest.strip(" \t")
    if not rest:
        return []
    return _BLANKS.split(rest) if most is None else _BLANKS.split(rest, most)


def split_key_value(rest: str) -> tuple[str, str]:
    """Split PUT's arguments into the key and the value: the rest after the key's blanks.

    The value keeps every inner and trailing blank; it is empty if there is none.
    """
    key, _, value = rest.partition(" ")
    if "\t" not in key and value[:1] not in (" ", "\t"):
        return key, value  # the common shape: one space between the key and the value
    parts = _BLANKS.split(rest, 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# Characters JSON may carry raw but str.splitlines() (and JavaScript before ES2019) treat as
# line breaks: escaped, so that a reply is always exactly one line to every reader.
_LINE_BREAK_ESCAPES = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _json_text(encoded: str) -> bytes:
    """JSON text as reply bytes, with the non-ASCII line breaks escaped."""
    if not encoded.isascii():
        encoded = encoded.translate(_LINE_BREAK_ESCAPES)
    return encoded.encode("utf-8")

OK = b'{"status":"Ok"}\n'


def encode_ok() -> bytes:
    """The reply of a command that succeeded with no result."""
    return OK


def encode_result(result: object) -> bytes:
    """The reply of a command that succeeded with a JSON-serializable result."""
    return b'{"status":"Ok","result":' + _json_text(_ENCODER.encode(result)) + b"}\n"


def encode_commit_result(seq: int) -> bytes:
    """The reply of a COMMIT: ``{"seq": N}`` (what :func:`encode_result` makes of it)."""
    return b'{"status":"Ok","result":{"seq":%d}}\n' % seq


def encode_text_result(text: str) -> bytes:
    """The reply of a command whose result is a string (GET's value): the hot path."""
    return b'{"status":"Ok","result":' + _json_text(encode_basestring(text)) + b"}\n"


def encode_error(code: str, mesg: str) -> bytes:
    """The reply of a command that failed: a machine code and a sentence a person can act on."""
    body = {"status": "Error", "code": code, "mesg": mesg}
    return _json_text(_ENCODER.encode(body)) + b"\n"
