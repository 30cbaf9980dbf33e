"""The server's settings (one dataclass) and the command line that fills them in."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Callable

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
FSYNC_MODES = ("always", "everysec", "no")
# Compact once the log passes 1 MiB and twice the last snapshot: small enough that the folder
# stays a few times the live data, big enough that a busy server does not fork constantly.
DEFAULT_COMPACT_MIN_BYTES = 1024 * 1024
DEFAULT_COMPACT_RATIO = 2.0
# Connection limits (README "Security" explains each choice).
# As Redis's maxclients default; the descriptor limit (ulimit -n) may be lower.
DEFAULT_MAX_CLIENTS = 10_000
# 0 = never, as Redis's `timeout` and PostgreSQL's idle_session_timeout: pooled connections
# are often idle for long; --txn-timeout is what frees keys an idle transaction holds.
DEFAULT_IDLE_TIMEOUT = 0.0
# As Redis's tcp-keepalive: a vanished peer is noticed in about 5 + 5 minutes.
DEFAULT_TCP_KEEPALIVE = 300.0
# A client must finish its TLS handshake within this (nginx's ssl_handshake_timeout is 60 s;
# a handshake takes milliseconds on a working link).
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
# All clients' buffers together (unsent replies + unrun requests and partial lines):
# 64 connections with a full 1 MiB line each; past it the biggest client is disconnected.
DEFAULT_CLIENT_BUFFER_BUDGET = 64 * 1024 * 1024
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
    fsync: str = "always"
    compact_min_bytes: int = DEFAULT_COMPACT_MIN_BYTES
    compact_ratio: float = DEFAULT_COMPACT_RATIO
    password: str | None = field(default=None, repr=False)
    allow_insecure: bool = False
    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES
    txn_timeout: float = DEFAULT_TXN_TIMEOUT_SECONDS
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_clients: int = DEFAULT_MAX_CLIENTS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    tcp_keepalive: float = DEFAULT_TCP_KEEPALIVE
    client_buffer_budget: int = DEFAULT_CLIENT_BUFFER_BUDGET

    def describe(self) -> str:
        """The effective settings as one log-friendly line, secrets left out."""
        if self.in_memory:
            storage = "memory only (--in-memory: nothing is persisted)"
        else:
            storage = (f"{self.data_dir} fsync={self.fsync} "
                       f"compact_min_bytes={self.compact_min_bytes} "
                       f"compact_ratio={self.compact_ratio:g}")
        return (
            f"isolation={self.isolation} max_line_bytes={self.max_line_bytes} "
            f"max_key_bytes={self.max_key_bytes} password={'set' if self.password else 'none'} "
            f"tls={'on' if self.tls_cert else 'off'}"
            f"{' (client certificates required)' if self.tls_ca else ''} "
            f"max_clients={self.max_clients} idle_timeout={self.idle_timeout:g}s "
            f"tcp_keepalive={self.tcp_keepalive:g}s "
            f"client_buffer_budget={self.client_buffer_budget} "
            f"max_data_bytes={self.max_data_bytes} max_txn_bytes={self.max_txn_bytes} "
            f"txn_timeout={self.txn_timeout:g}s "
            f"data: {storage}"
        )


def _number(parse: Callable[[str], Any], what: str, accepts: Callable[[Any], bool],
            expected: str) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the text as ``what`` and refuse values ``accepts`` rejects,
    with a message that says what is ``expected``."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"{expected}, got {text}")
        return value

    return convert


_positive_int = _number(int, "a whole number", lambda v: v > 0, "expected a number above 0")
_non_negative_int = _number(int, "a whole number", lambda v: v >= 0,
                            "expected 0 (no limit) or more")
# ``not v >= 1`` style checks also refuse NaN.
_ratio = _number(float, "a number", lambda v: v >= 1.0, "expected a number of at least 1")
_seconds = _number(float, "a number of seconds", lambda v: 0 <= v < float("inf"),
                   "expected 0 or more seconds")
_port = _number(int, "a port number", lambda v: 0 <= v <= 65535,
                "port must be 0..65535 (0 picks a free one)")


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
                   help="level of START without one: read-committed (default), snapshot "
                        "or serializable")
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
                   help="keep data in memory only: nothing is written to disk")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="folder for the log and snapshots (default %(default)s)")
    p.add_argument("--fsync", choices=FSYNC_MODES, default="always", type=str.lower,
                   help="when the log is fsynced: always (before every reply; default), "
                   "everysec (once a second: a crash of the machine may lose the last second), "
                   "no (the kernel decides)")
    p.add_argument("--compact-min-bytes", type=_positive_int, default=DEFAULT_COMPACT_MIN_BYTES,
                   help="compact the log once it is over this size (default %(default)s) ...")
    p.add_argument("--compact-ratio", type=_ratio, default=DEFAULT_COMPACT_RATIO,
                   help="... and over this many times the last snapshot (default %(default)s)")
    p.add_argument("--password-file", metavar="FILE",
                   help=f"require AUTH with the password in FILE (or set ${PASSWORD_ENV})")
    p.add_argument("--allow-insecure", action="store_true",
                   help="allow listening on a non-loopback address without a password")
    p.add_argument("--max-clients", type=_positive_int, default=DEFAULT_MAX_CLIENTS,
                   help="most connections at once; one more gets a LIMIT error and is closed "
                        "(default %(default)s)")
    p.add_argument("--idle-timeout", type=_seconds, default=DEFAULT_IDLE_TIMEOUT,
                   metavar="SECONDS",
                   help="close a connection that sent and read nothing for this long "
                        "(default 0: never, as Redis and PostgreSQL)")
    p.add_argument("--tcp-keepalive", type=_seconds, default=DEFAULT_TCP_KEEPALIVE,
                   metavar="SECONDS",
                   help="TCP keepalive probes after this idle time, to notice vanished peers "
                        "(default %(default)g; 0 turns them off)")
    p.add_argument("--client-buffer-budget", type=_positive_int,
                   default=DEFAULT_CLIENT_BUFFER_BUDGET, metavar="BYTES",
                   help="most bytes held for all clients' unsent replies and unrun requests; "
                        "past it the biggest client is disconnected (default %(default)s)")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="serve TLS with this certificate chain (PEM); needs --tls-key")
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="require client certificates signed by these CAs (PEM)")
    p.add_argument("--handshake-timeout", type=_seconds, default=DEFAULT_HANDSHAKE_TIMEOUT,
                   metavar="SECONDS",
                   help="close a TLS connection whose handshake takes longer "
                        "(default %(default)g)")
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
        in_memory=args.in_memory, data_dir=args.data_dir, fsync=args.fsync,
        compact_min_bytes=args.compact_min_bytes, compact_ratio=args.compact_ratio,
        password=password,
        allow_insecure=args.allow_insecure,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
        handshake_timeout=args.handshake_timeout, max_clients=args.max_clients,
        idle_timeout=args.idle_timeout, tcp_keepalive=args.tcp_keepalive,
        client_buffer_budget=args.client_buffer_budget, max_data_bytes=args.max_data_bytes,
        max_txn_bytes=args.max_txn_bytes, txn_timeout=args.txn_timeout,
    )
    if bool(settings.tls_cert) != bool(settings.tls_key):
        parser.error("--tls-cert and --tls-key go together: give both or neither")
    if settings.tls_ca and not settings.tls_cert:
        parser.error("--tls-ca checks client certificates over TLS: it needs --tls-cert and "
                     "--tls-key")
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
