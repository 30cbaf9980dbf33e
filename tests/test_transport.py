"""The TLS transport on a socket pair, without the server: the handshake driven step by step,
ciphertext held back bounded while the peer reads nothing, and end of stream."""

from __future__ import annotations

import contextlib
import socket
import ssl

import pytest
from tls_support import make_certificate

from kvloop.transport import TLS_SEND_CHUNK, TlsTransport, server_context


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("certs"), "server")


class Peer:
    """The client end: an SSLObject pumped by hand over a non-blocking socket."""

    def __init__(self, sock: socket.socket, cafile) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = ssl.create_default_context(cafile=str(cafile))
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def pump(self) -> None:
        """Send what the TLS object made; take in what the socket has."""
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)
        try:
            received = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        if received:
            self.incoming.write(received)

    def handshake_step(self) -> bool:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True


def connected(cert) -> tuple[TlsTransport, Peer]:
    server_sock, client_sock = socket.socketpair()
    server_sock.setblocking(False)
    client_sock.setblocking(False)
    transport = TlsTransport(server_sock, server_context(str(cert[0]), str(cert[1])))
    peer = Peer(client_sock, cert[0])
    server_done = client_done = False
    for _ in range(50):
        client_done = client_done or peer.handshake_step()
        peer.pump()
        with contextlib.suppress(BlockingIOError):
            server_done = server_done or transport.handshake()
        peer.pump()
        if server_done and client_done:
            break
    assert server_done and client_done and not transport.handshaking
    return transport, peer


def test_plaintext_flows_both_ways_and_nothing_ready_is_blocking_io(cert):
    transport, peer = connected(cert)
    with pytest.raises(BlockingIOError):
        transport.recv(65536)  # no record yet: the loop's usual "would block"
    peer.tls.write(b"PING\n")
    peer.pump()
    assert transport.recv(65536) == b"PING\n"
    assert transport.send(b"PONG\n") == 5
    assert transport.pending == 0
    peer.pump()
    assert peer.tls.read(100) == b"PONG\n"


def test_ciphertext_held_back_stays_about_one_chunk_while_the_peer_reads_nothing(cert):
    transport, peer = connected(cert)
    out = bytearray(b"x" * (16 * 1024 * 1024))
    most_pending = 0
    for _ in range(10_000):
        try:
            taken = transport.send(out)
        except BlockingIOError:
            break
        del out[:taken]
        most_pending = max(most_pending, transport.pending)
    else:
        pytest.fail("the socket never filled up")
    assert out  # most of it still waits as plaintext, in the caller's buffer
    assert 0 < transport.pending <= TLS_SEND_CHUNK + 4096
    assert most_pending <= TLS_SEND_CHUNK + 4096
    peer.sock.close()


def test_close_notify_is_the_end_of_the_stream_even_with_data_before_it(cert):
    transport, peer = connected(cert)
    peer.tls.write(b"GET a\nPING last")
    with contextlib.suppress(ssl.SSLWantReadError):
        peer.tls.unwrap()
    peer.pump()
    assert transport.recv(65536) == b"GET a\nPING last"
    assert transport.buffered_input  # the end came along: no socket event will say so
    assert transport.recv(65536) == b""
