"""TLS helpers for tests: certificates made at test time with ``openssl``, and a raw TLS
client that can half-close (send close_notify and keep reading), which ``ssl.SSLSocket``
cannot do."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh self-signed certificate and key for ``localhost`` / ``127.0.0.1``, valid for a
    day; skips the test if the ``openssl`` command is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


class RawTls:
    """A TLS connection driven by hand over a blocking socket, through an ``ssl.SSLObject``."""

    def __init__(self, port: int, cafile: Path, certfile: Path | None = None,
                 keyfile: Path | None = None, timeout: float = 5.0) -> None:
        context = ssl.create_default_context(cafile=str(cafile))
        if certfile is not None:
            context.load_cert_chain(str(certfile), str(keyfile))
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._in, self._out, server_hostname="127.0.0.1")
        self._until_done(self.tls.do_handshake)
        self.buf = b""

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)

    def _until_done(self, step):
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
                continue
            self._flush()
            return result

    def send(self, data: bytes) -> None:
        """Send ``data`` as TLS records."""
        self.tls.write(data)
        self._flush()

    def close_write(self) -> None:
        """Half-close: send close_notify, keep the socket open for reading."""
        with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the server's reply
            self.tls.unwrap()
        self._flush()

    def read_until_closed(self) -> bytes:
        """All plaintext until the server's close_notify or the end of the TCP stream."""
        data = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self._until_done(lambda: self.tls.read(65536))
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return data
            if not chunk:  # the server's close_notify
                return data
            data += chunk

    def reply(self) -> dict:
        """The next reply line, parsed."""
        while b"\n" not in self.buf:
            chunk = self._until_done(lambda: self.tls.read(65536))
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
