"""The server's settings (one dataclass) and the command line that fills them in."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field

from .transaction import LEVELS, READ_COMMITTED, parse_level

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9999
# A request line holds one command; 1 MiB leaves room for big JSON values while bounding
# what one client can make the server hold for a half-sent line.
DEFAULT_MAX_LINE_BYTES = 1024 * 1024
# Keys are identifiers, not data; 1 KiB is generous and keeps key scans cheap.
DEFAULT_MAX_KEY_BYTES = 1024
DEFAULT_DATA_DIR = "./kvloop-data"
# Memory budget for committed data plus open transactions' writes; 0 = unlimited, as Redis's
# maxmemory: the count is of key and value bytes, not of the process's memory, so a default
# fraction of RAM would promise what it cannot keep. Set it when memory is shared.
DEFAULT_MAX_DATA_BYTES = 0
# One transaction's writes; FoundationDB's limit. Bounds how long its COMMIT or ROLLBACK can
# block everyone (each write also counts limits.WRITE_OVERHEAD_BYTES).
DEFAULT_MAX_TXN_BYTES = 10_000_000
# A transaction with no command for this long is rolled back (PostgreSQL's
# idle_in_transaction_session_timeout, but on by default): its write intents block writers.
DEFAULT_TXN_TIMEOUT_SECONDS = 60.0
PASSWORD_ENV = "KVLOOP_PASSWORD"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class Settings:
    """Everything that configures one server. Defaults are SPEC's defaults."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    isolation: str = READ_COMMITTED
    log_level: str = "info"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES
    in_memory: bool = False
    data_dir: str = DEFAULT_DATA_DIR
    password: str | None = field(default=None, repr=False)
    allow_insecure: bool = False
    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES
    txn_timeout: float = DEFAULT_TXN_TIMEOUT_SECONDS

    def describe(self) -> str:
        """The effective settings as one log-friendly line, secrets left out."""
        storage = "memory only"
        if not self.in_memory:
            storage += f" (--data-dir {self.data_dir} is not used yet: nothing is persisted)"
        return (
            f"isolation={self.isolation} max_line_bytes={self.max_line_bytes} "
            f"max_key_bytes={self.max_key_bytes} max_data_bytes={self.max_data_bytes} "
            f"max_txn_bytes={self.max_txn_bytes} txn_timeout={self.txn_timeout:g} "
            f"password={'set' if self.password else 'none'} "
            f"data: {storage}"
        )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (no limit) or more, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected 0 (off) or more seconds, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535 (0 picks a free one), got {value}")
    return value


def _level(text: str) -> str:
    level = parse_level(text)
    if level is None:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LEVELS)}, got {text!r}")
    return level


def build_parser() -> argparse.ArgumentParser:
    """The ``kvloop-server`` / ``python server.py`` command line."""
    p = argparse.ArgumentParser(
        prog="kvloop-server",
        description="kvloop: a key/value server with transactions, one JSON reply per line.",
    )
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help="TCP port (default %(default)s; 0 picks a free port and logs it)")
    p.add_argument("--isolation", type=_level, default=READ_COMMITTED,
                   help="level of START without one: read-committed (default) or serializable")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", type=str.lower,
                   help="log verbosity (default %(default)s)")
    p.add_argument("--max-line-bytes", type=_positive_int, default=DEFAULT_MAX_LINE_BYTES,
                   help="longest request line accepted (default %(default)s)")
    p.add_argument("--max-key-bytes", type=_positive_int, default=DEFAULT_MAX_KEY_BYTES,
                   help="longest key accepted (default %(default)s)")
    p.add_argument("--max-data-bytes", type=_non_negative_int, default=DEFAULT_MAX_DATA_BYTES,
                   help="memory budget: key and value bytes of the data plus open transactions' "
                        "writes; a PUT that would pass it gets LIMIT (default 0: unlimited)")
    p.add_argument("--max-txn-bytes", type=_non_negative_int, default=DEFAULT_MAX_TXN_BYTES,
                   help="most one transaction may write (keys, values and 100 bytes per write; "
                        "default %(default)s; 0: unlimited)")
    p.add_argument("--txn-timeout", type=_seconds, default=DEFAULT_TXN_TIMEOUT_SECONDS,
                   metavar="SECONDS",
                   help="roll back a transaction that sent no command for this long "
                        "(default %(default)g; 0: never)")
    p.add_argument("--in-memory", action="store_true",
                   help="keep data in memory only (this version always does)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="folder for the data files (default %(default)s; not used yet)")
    p.add_argument("--password-file", metavar="FILE",
                   help=f"require AUTH with the password in FILE (or set ${PASSWORD_ENV})")
    p.add_argument("--allow-insecure", action="store_true",
                   help="allow listening on a non-loopback address without a password")
    return p


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from the command line (and ``KVLOOP_PASSWORD``); exits with usage on error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV, "").strip() or None
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        except OSError as exc:
            parser.error(f"cannot read --password-file: {exc.strerror} ({args.password_file})")
        if not password:
            parser.error(f"--password-file {args.password_file} is empty")
    settings = Settings(
        host=args.host, port=args.port, isolation=args.isolation, log_level=args.log_level,
        max_line_bytes=args.max_line_bytes, max_key_bytes=args.max_key_bytes,
        in_memory=args.in_memory, data_dir=args.data_dir, password=password,
        allow_insecure=args.allow_insecure, max_data_bytes=args.max_data_bytes,
        max_txn_bytes=args.max_txn_bytes, txn_timeout=args.txn_timeout,
    )
    if not is_loopback(settings.host) and not settings.password and not settings.allow_insecure:
        parser.error(
            f"refusing to listen on non-loopback address {settings.host} without a password; "
            f"set --password-file or ${PASSWORD_ENV}, or pass --allow-insecure"
        )
    return settings


def format_address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True if ``host`` names only this machine (a loopback address or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
