"""The command-line options every kvloop client program shares (``python client.py`` and
``python -m kvloop.bench``): how to authenticate and how to use TLS."""

from __future__ import annotations

import argparse
import os


def add_auth_and_tls_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--password-env``, ``--tls``, ``--cafile`` and ``--insecure-skip-verify``."""
    parser.add_argument("--password-env", metavar="VAR",
                        help="authenticate with the password held in environment variable "
                        "VAR (for example KVLOOP_PASSWORD)")
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS, checking the server's certificate against the "
                        "system's CAs (or --cafile) and that it names --host")
    parser.add_argument("--cafile", metavar="FILE",
                        help="trust the CA certificates in FILE (PEM) for TLS; implies --tls")
    parser.add_argument("--insecure-skip-verify", action="store_true",
                        help="TLS without checking the server's certificate (tests only: "
                        "anyone on the path can then read and change the traffic); implies "
                        "--tls")


def password_from(args: argparse.Namespace) -> str | None:
    """The password named by ``--password-env`` (``None`` without it); ValueError, naming
    the variable, if that environment variable is not set or empty."""
    if not args.password_env:
        return None
    password = os.environ.get(args.password_env)
    if not password:
        raise ValueError(f"--password-env {args.password_env}: that environment variable "
                         "is not set")
    return password
