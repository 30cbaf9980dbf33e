"""The command-line client, ``python client.py`` (installed as ``kvloop-client``).

At a terminal it is an interactive prompt (``127.0.0.1:9999>``, with the isolation level shown
while a transaction is open), with line editing and history when ``readline`` is available.
Given files, or commands on a pipe, it runs them as a script: every line is sent pipelined
(blank lines and ``#`` comments skipped) and one reply is printed per command, in order.

This module only decides what to send and how to print it; connecting, the wire, pipelining
and reply parsing are :mod:`kvloop.client`'s. Exit status (SPEC §7): 0 if every command
succeeded, 1 if any failed, 2 if it could not connect, lost the connection, or was misused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import stat
import sys
import warnings
from collections.abc import Iterator
from typing import Any, BinaryIO, Callable, TextIO

from .client import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    MAX_REPLY_BYTES,
    READ_SIZE,
    Client,
    ConnectionLost,
    ServerError,
    command_verb,
    is_ok,
)
from .clientargs import add_auth_and_tls_options, password_from
from .protocol import LineReader, LineTooLarge

EXIT_OK = 0
EXIT_FAILED = 1  # some command got an error reply
EXIT_TROUBLE = 2  # could not connect, lost the connection, bad usage, unreadable file
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

HISTORY_FILE = "~/.kvloop_history"
HISTORY_LENGTH = 1000
# Dict results (COMMIT's {"seq": N}) up to this wide print on one line, larger ones (STATS)
# as indented JSON.
ONE_LINE_JSON = 60
LEAVE_WORDS = ("exit", "quit")
# Longest script line read from a pipe; far above what a server takes (1 MiB by default).
MAX_SCRIPT_LINE_BYTES = MAX_REPLY_BYTES


def build_parser() -> argparse.ArgumentParser:
    """The ``python client.py`` / ``kvloop-client`` command line."""
    p = argparse.ArgumentParser(
        description="Talk to a kvloop server: an interactive prompt at a terminal; with FILEs "
        "(or commands on stdin) run them pipelined and print one reply per command. "
        "Exit status: 0 all commands succeeded, 1 some failed, 2 could not connect, "
        "lost the connection, or bad usage.",
    )
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="command files to run, one command per line ('-' is stdin)")
    p.add_argument("--host", default=DEFAULT_HOST, help="server address (default %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help="server port (default %(default)s)")
    p.add_argument("--output", choices=("text", "json"), default="text",
                   help="text: human-readable replies (default); json: each reply line "
                   "exactly as the server sent it")
    p.add_argument("--echo", action="store_true",
                   help="print each command ('> GET x') before its reply")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT,
                   help="seconds to wait for the server to connect or answer; 0 waits "
                   "forever (default %(default)g)")
    p.add_argument("--scan", metavar="PREFIX",
                   help="print every key that starts with PREFIX ('' for all), one per "
                   "line, fetching page after page, then exit")
    add_auth_and_tls_options(p)
    p.add_argument("--cert", metavar="FILE",
                   help="this client's TLS certificate (PEM), for servers started with "
                   "--tls-ca; implies --tls")
    p.add_argument("--key", metavar="FILE",
                   help="the private key of --cert, if it is not in the same file")
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {value:g}")
    return value or None


# -- printing replies ---------------------------------------------------------------------

def format_reply(reply: dict[str, Any]) -> str:
    """A reply as a person wants to read it: ``OK``, a GET's value as is, HELP's lines,
    small results as one line of JSON, STATS as indented JSON, ``(error) CODE: mesg``."""
    if not is_ok(reply):
        return f"(error) {reply.get('code')}: {reply.get('mesg')}"
    if "result" not in reply:
        return "OK"
    result = reply["result"]
    if is_scan_page(result):
        return format_scan_page(result)
    if isinstance(result, str):
        return result
    if isinstance(result, list) and all(isinstance(item, str) for item in result):
        return "\n".join(result)
    one_line = json.dumps(result, ensure_ascii=False)
    if len(one_line) <= ONE_LINE_JSON:
        return one_line
    return json.dumps(result, ensure_ascii=False, indent=2)


def is_scan_page(result: Any) -> bool:
    """True if ``result`` has the shape of SCAN's: ``{"keys": [...], "more": bool, ...}``."""
    return (isinstance(result, dict) and isinstance(result.get("keys"), list)
            and isinstance(result.get("more"), bool))


def format_scan_page(result: dict[str, Any]) -> str:
    """A SCAN page: one key per line (with its value beside it, keys padded to one width),
    then whether more keys follow and how to get them."""
    keys = result["keys"]
    values = result.get("values")
    if isinstance(values, list) and len(values) == len(keys):
        width = max((len(key) for key in keys), default=0)
        lines = [f"{key:<{width}}  {value}" for key, value in zip(keys, values)]
    else:
        lines = list(keys)
    if result["more"]:
        lines.append(f"(more keys: add AFTER {keys[-1]} for the next page)" if keys
                     else "(more keys)")
    else:
        lines.append(f"({len(keys)} key{'s' if len(keys) != 1 else ''}, no more)")
    return "\n".join(lines)


def run_scan(client: Client, prefix: str, out: TextIO, err: TextIO, prog: str) -> int:
    """``--scan PREFIX``: print every key under ``prefix``, one per line, all pages."""
    try:
        out.writelines(key + "\n" for key in client.scan(prefix))
    except (ValueError, ServerError) as exc:
        out.flush()
        err.write(f"{prog}: --scan {prefix!r}: {exc}\n")
        return EXIT_FAILED
    return EXIT_OK


def reply_printer(output: str) -> Callable[[bytes, dict[str, Any]], str]:
    """How to print a reply, given its raw line and its parse: text or json output."""
    if output == "json":
        return lambda raw, reply: raw.decode("utf-8", "replace")
    return lambda raw, reply: format_reply(reply)


# -- script mode --------------------------------------------------------------------------

class ScriptError(Exception):
    """A command file (or stdin) could not be read to the end."""


class Script:
    """The command lines of some files (or stdin), blank lines and ``#`` comments left out.

    Iterating yields each command line as bytes without its line end, in the form
    :meth:`Client.stream` takes: a pipe or terminal is read as its lines arrive, yielding its
    file descriptor while no complete line is there yet. ``where`` says which file and line
    the last command came from. A read error raises :class:`ScriptError`.
    """

    def __init__(self, sources: list[tuple[str, BinaryIO]]) -> None:
        self.sources = sources
        self.where = ""

    def __iter__(self) -> Iterator[bytes | int]:
        for name, source in self.sources:
            try:
                yield from self._commands(name, source)
            except OSError as exc:
                raise ScriptError(f"cannot read {name}: {exc.strerror or exc}") from None

    def _commands(self, name: str, source: BinaryIO) -> Iterator[bytes | int]:
        number = 0
        for line in _arriving_lines(source) if _is_pipe(source) else source:
            if isinstance(line, int):
                yield line  # nothing ready yet
                continue
            number += 1
            line = line.rstrip(b"\n")
            if line.endswith(b"\r"):
                line = line[:-1]
            stripped = line.strip(b" \t")
            if not stripped or stripped.startswith(b"#"):
                continue
            self.where = f"{name} line {number}"
            yield line


def _is_pipe(source: BinaryIO) -> bool:
    """True for a pipe, terminal or socket: a source whose next line may be a while coming.
    (Windows cannot wait for those with select; there they are read like files.)"""
    if os.name == "nt":
        return False
    try:
        return not stat.S_ISREG(os.fstat(source.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _arriving_lines(source: BinaryIO) -> Iterator[bytes | int]:
    """The lines of a pipe as they arrive; its file descriptor while none is complete."""
    fd = source.fileno()
    reader = LineReader(MAX_SCRIPT_LINE_BYTES)
    while True:
        line = reader.next_line()
        if isinstance(line, LineTooLarge):
            raise OSError(f"a line is longer than {line.limit} bytes")
        if line is not None:
            yield line
        elif reader.finished:
            return
        elif not select.select([fd], [], [], 0)[0]:
            yield fd
        else:
            chunk = os.read(fd, READ_SIZE)
            if chunk:
                reader.feed(chunk)
            else:
                reader.finish()


def open_sources(paths: list[str], stdin: BinaryIO) -> list[tuple[str, BinaryIO]]:
    """Open every command file up front (``-`` or none: stdin); ScriptError names a file
    that cannot be opened. The caller closes them (see :func:`close_sources`)."""
    if not paths:
        return [("stdin", stdin)]
    sources: list[tuple[str, BinaryIO]] = []
    for path in paths:
        if path == "-":
            sources.append(("stdin", stdin))
            continue
        try:
            sources.append((path, open(path, "rb")))  # noqa: SIM115
        except OSError as exc:
            close_sources(sources, stdin)
            raise ScriptError(f"cannot read {path}: {exc.strerror or exc}") from None
    return sources


def close_sources(sources: list[tuple[str, BinaryIO]], stdin: BinaryIO) -> None:
    """Close the files :func:`open_sources` opened (not stdin)."""
    for _, source in sources:
        if source is not stdin:
            source.close()


def run_script(client: Client, script: Script, out: TextIO, err: TextIO, prog: str,
               output: str = "text", echo: bool = False) -> int:
    """Send the script's commands pipelined, print one reply per command; the exit status."""
    show = reply_printer(output)
    failed = False

    def on_reply(line: bytes, raw: bytes, reply: dict[str, Any]) -> None:
        nonlocal failed
        if echo:
            out.write("> " + line.decode("utf-8", "replace") + "\n")
        out.write(show(raw, reply) + "\n")
        failed = failed or not is_ok(reply)

    commands = iter(script)
    try:
        client.stream(commands, on_reply, on_wait=out.flush)
    except ConnectionLost as exc:
        out.flush()
        err.write(f"{prog}: {exc}\n")
        return EXIT_TROUBLE
    except ScriptError as exc:
        out.flush()
        err.write(f"{prog}: {exc}\n")
        return EXIT_TROUBLE
    if not client.closed:
        return EXIT_FAILED if failed else EXIT_OK
    quit_at = script.where
    with contextlib.suppress(ScriptError):
        left = next(commands, None)  # (from a pipe, only what has arrived already)
        if left is not None and not isinstance(left, int):
            err.write(f"{prog}: warning: QUIT at {quit_at} closed the connection; "
                      "the commands after it were not sent\n")
    return EXIT_FAILED if failed else EXIT_OK


# -- interactive mode ---------------------------------------------------------------------

def prompt(client: Client) -> str:
    """``host:port> ``, or ``host:port (serializable)> `` while a transaction is open."""
    if client.in_transaction:
        level = client.transaction_level or client.default_isolation() or "transaction"
        return f"{client.address} ({level})> "
    return f"{client.address}> "


class History:
    """Line editing and history in ``~/.kvloop_history``, when ``readline`` is available.

    Without it (Windows, or a Python built without it) plain ``input()`` still works.
    """

    def __init__(self) -> None:
        try:
            import readline
        except ImportError:
            self.readline = None
            return
        self.readline = readline
        self.path = os.path.expanduser(HISTORY_FILE)
        with contextlib.suppress(OSError):
            readline.read_history_file(self.path)
        readline.set_history_length(HISTORY_LENGTH)

    def entered(self, line: str) -> None:
        """Called with each line entered: an AUTH line, which holds a password, is forgotten."""
        readline = self.readline
        if readline is not None and command_verb(line.encode("utf-8", "replace"))[0] == "AUTH":
            length = readline.get_current_history_length()
            if length:
                readline.remove_history_item(length - 1)

    def save(self) -> None:
        """Write the history file, readable by its owner only (it holds keys and values)."""
        if self.readline is not None:
            with contextlib.suppress(OSError):
                self.readline.write_history_file(self.path)
                os.chmod(self.path, 0o600)


def run_interactive(client: Client, out: TextIO, err: TextIO, prog: str,
                    output: str = "text") -> int:
    """The prompt: read a command, print its reply, until exit, quit, Ctrl-D or QUIT."""
    show = reply_printer(output)
    history = History()
    out.write(f"connected to kvloop at {client.address}. "
              "HELP lists the commands; exit, quit or Ctrl-D leaves.\n")
    try:
        while True:
            try:
                line = input(prompt(client))
            except EOFError:
                out.write("\n")
                break
            except KeyboardInterrupt:  # drop the line being typed, as shells do
                out.write("\n")
                continue
            history.entered(line)
            command = line.strip()
            if not command or command.startswith("#"):
                continue
            if command.lower() in LEAVE_WORDS:
                break
            try:
                raw, reply = client.execute_raw(line)
            except ConnectionLost as exc:
                err.write(f"{prog}: {exc}\n")
                return EXIT_TROUBLE
            except KeyboardInterrupt:
                err.write(f"{prog}: interrupted while waiting for the reply; "
                          "the connection is closed\n")
                return EXIT_INTERRUPTED
            out.write(show(raw, reply) + "\n")
            if client.closed:  # QUIT: the server has closed the connection
                return EXIT_OK
    finally:
        history.save()
    if client.in_transaction:
        out.write("(the open transaction is rolled back as the connection closes)\n")
    return EXIT_OK


# -- main ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run the client from the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return exc.code if isinstance(exc.code, int) else EXIT_TROUBLE
    prog = parser.prog
    out, err = sys.stdout, sys.stderr
    if hasattr(out, "reconfigure"):  # a value the terminal cannot show must not crash us
        out.reconfigure(errors="backslashreplace")
    try:
        password = password_from(args)
    except ValueError as exc:
        err.write(f"{prog}: {exc}\n")
        return EXIT_TROUBLE
    interactive = not args.files and args.scan is None and sys.stdin.isatty()
    if args.scan is not None and args.files:
        err.write(f"{prog}: --scan lists keys and exits; it takes no FILEs\n")
        return EXIT_TROUBLE
    sources: list[tuple[str, BinaryIO]] = []
    if not interactive and args.scan is None:
        try:
            sources = open_sources(args.files, sys.stdin.buffer)
        except ScriptError as exc:
            err.write(f"{prog}: {exc}\n")
            return EXIT_TROUBLE
    if args.insecure_skip_verify:
        err.write(f"{prog}: warning: --insecure-skip-verify: the server's TLS certificate is "
                  "not checked; anyone on the network path can read and change this "
                  "session\n")
    try:
        with warnings.catch_warnings():  # warned above, in the CLI's own words
            warnings.simplefilter("ignore", RuntimeWarning)
            client = Client(args.host, args.port, timeout=args.timeout, password=password,
                            tls=args.tls, cafile=args.cafile,
                            insecure_skip_verify=args.insecure_skip_verify,
                            certfile=args.cert, keyfile=args.key)
        with client:
            if args.scan is not None:
                return run_scan(client, args.scan, out, err, prog)
            if interactive:
                return run_interactive(client, out, err, prog, args.output)
            return run_script(client, Script(sources), out, err, prog, args.output, args.echo)
    except ConnectionLost as exc:
        err.write(f"{prog}: {exc}\n")
        return EXIT_TROUBLE
    except ServerError as exc:  # AUTH refused at connect
        err.write(f"{prog}: cannot authenticate to {args.host}:{args.port}: {exc}\n")
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        err.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # our output was closed (| head): stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_TROUBLE
    finally:
        close_sources(sources, sys.stdin.buffer)
