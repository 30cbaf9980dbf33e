"""What sits between the event loop and a client's socket: plain TCP, or TLS.

Both transports offer the same calls on a non-blocking socket, with the socket's own
meaning: ``recv(size)`` returns bytes, ``b""`` at end of stream, or raises BlockingIOError
when nothing is ready; ``send(data)`` returns how many bytes of ``data`` it took, or raises
BlockingIOError; any other OSError means the connection failed. ``pending`` counts bytes
taken but not yet on the wire, ``buffered_input`` says that ``recv`` has something to return
without the socket becoming readable again, and ``handshake()`` advances the TLS handshake.

:class:`PlainTransport` hands the socket's own ``recv`` and ``send`` to the loop, so plain
text costs nothing extra. :class:`TlsTransport` runs the standard ``ssl`` module on an
``ssl.SSLObject`` with two ``ssl.MemoryBIO`` s: the socket IO stays here and stays
non-blocking, and ``SSLWantReadError`` / ``SSLWantWriteError`` never leave this module.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

# Plaintext encrypted per send: bounds the ciphertext held while the socket is full to about
# one chunk (plus TLS record overhead), whatever the size of the connection's output buffer.
TLS_SEND_CHUNK = 64 * 1024
# Plaintext taken out of the TLS object per read call (a TLS record holds at most 16 KiB).
TLS_READ_CHUNK = 64 * 1024


def tune_socket(sock: socket.socket, keepalive: float) -> None:
    """Set up an accepted socket: non-blocking, no Nagle delay (replies go out at once), and
    TCP keepalive probes after ``keepalive`` idle seconds (0 leaves keepalive off) so a peer
    that vanished without a word is noticed. Raises OSError if the peer is already gone."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's timings apply
            idle = max(1, int(keepalive))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            # As Redis does: probes a third of that apart, given up after three.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class PlainTransport:
    """Plain TCP: the socket's own ``recv`` and ``send``, nothing in between."""

    __slots__ = ("sock", "recv", "send")

    pending = 0
    buffered_input = False
    handshaking = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recv = sock.recv
        self.send = sock.send

    def handshake(self) -> bool:
        """Plain TCP has no handshake: always done."""
        return True

    def flush(self) -> None:
        """Nothing is ever held back."""

    def close_notify(self) -> None:
        """Nothing to say before closing."""


def server_context(certfile: str, keyfile: str, cafile: str | None = None) -> ssl.SSLContext:
    """The server's TLS settings: TLS 1.2 or later, the certificate chain and key, and, with
    ``cafile``, client certificates required and checked against it.

    Raises OSError / ssl.SSLError if a file cannot be read or the key does not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(certfile, keyfile)
    if cafile:
        context.load_verify_locations(cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(cafile: str | None = None, insecure_skip_verify: bool = False,
                   certfile: str | None = None, keyfile: str | None = None) -> ssl.SSLContext:
    """A client's TLS settings: the server's certificate checked against the system's CAs
    (or ``cafile``) and its name, unless ``insecure_skip_verify``; with ``certfile``, this
    client's own certificate for servers that require one.

    Raises OSError / ssl.SSLError if a file cannot be read.
    """
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TlsTransport:
    """TLS over a non-blocking socket, through an ``ssl.SSLObject`` and two memory BIOs.

    Ciphertext from the socket goes into the incoming BIO; plaintext comes out of the TLS
    object. Outgoing plaintext is encrypted a chunk at a time, and only once the previous
    chunk's ciphertext is on the wire, so at most about one chunk waits here.
    """

    __slots__ = ("sock", "_incoming", "_outgoing", "_tls", "_cipher", "_eof", "handshaking")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._cipher = bytearray()  # ciphertext taken from the BIO that the socket did not take
        self._eof = False  # the peer's close_notify (or its TCP end) has been read
        self.handshaking = True

    @property
    def pending(self) -> int:
        """Bytes of ciphertext made but not yet sent."""
        return len(self._cipher) + self._outgoing.pending

    @property
    def buffered_input(self) -> bool:
        """True if ``recv`` has an end of stream to report without reading the socket."""
        return self._eof

    def handshake(self) -> bool:
        """Advance the handshake with what the socket holds; True once it is complete.

        Raises OSError (ssl.SSLError, ConnectionError) if the peer does not speak TLS, fails
        certificate checks or goes away; then nothing should be sent to it, not even the
        alert that OpenSSL prepared.
        """
        self._fill()
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self.flush()
            return False
        self.handshaking = False
        self.flush()
        return True

    def _fill(self) -> None:
        """Move what the socket has into the incoming BIO (once)."""
        try:
            data = self.sock.recv(TLS_READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self._incoming.write(data)
        elif self.handshaking:
            raise ConnectionAbortedError("the peer closed the connection during the TLS handshake")
        else:
            self._incoming.write_eof()

    def recv(self, size: int) -> bytes:
        """Plaintext the peer sent (what one read of ``size`` socket bytes decrypts to), ``b""``
        at end of stream, or BlockingIOError if none is ready yet."""
        if not self._eof:
            try:
                data = self.sock.recv(size)
            except (BlockingIOError, InterruptedError):
                data = None
            if data:
                self._incoming.write(data)
            elif data is not None:
                self._incoming.write_eof()
        plain = self._read_plain()
        if plain:
            return plain
        if self._eof:
            return b""
        raise BlockingIOError("no TLS record complete yet")

    def _read_plain(self) -> bytes:
        chunks = []
        read = self._tls.read
        try:
            while True:
                chunk = read(TLS_READ_CHUNK)
                if not chunk:  # the peer's close_notify
                    self._eof = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # close_notify, or a TCP end without it: taken as the end of the stream, as
            # Python's own SSLSocket does by default (suppress_ragged_eofs).
            self._eof = True
        if self._outgoing.pending:  # TLS 1.3 may answer (key update, tickets)
            self.flush()
        return b"".join(chunks)

    def send(self, data: bytes | bytearray) -> int:
        """Encrypt up to one chunk of ``data`` and send what the socket takes; returns how
        many plaintext bytes were taken. BlockingIOError while earlier ciphertext waits."""
        if self.pending:
            self.flush()
            if self._cipher:
                raise BlockingIOError("earlier TLS records are still waiting for the socket")
        if not data:
            return 0
        chunk = data if len(data) <= TLS_SEND_CHUNK else bytes(data[:TLS_SEND_CHUNK])
        taken = self._tls.write(chunk)
        self.flush()
        return taken

    def flush(self) -> None:
        """Send the ciphertext made so far, as much as the socket takes now."""
        if self._outgoing.pending:
            self._cipher += self._outgoing.read()
        if not self._cipher:
            return
        try:
            sent = self.sock.send(self._cipher)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # The connection failed: what waits can never be sent, and keeping it pending
            # would keep the connection waiting to write, retried every loop turn.
            self._cipher.clear()
            raise
        del self._cipher[:sent]

    def close_notify(self) -> None:
        """Tell the peer, best effort and without waiting, that nothing more will come."""
        if self.handshaking:
            return
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._tls.unwrap()
        with contextlib.suppress(OSError):
            self.flush()
