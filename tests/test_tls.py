"""TLS on the server's own loop, against the real server process, with certificates made at
test time: the client API and client.py over TLS, pipelining and half-close, plaintext
clients and stalled handshakes on a TLS port, and required client certificates."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from support import ROOT, ok
from tls_support import RawTls, make_certificate

from kvloop import Client, ConnectionLost


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """``(server cert, server key, client cert, client key)``, each pair self-signed."""
    folder = tmp_path_factory.mktemp("certs")
    return (*make_certificate(folder, "server"), *make_certificate(folder, "client"))


@pytest.fixture
def tls_server(start_server, certs):
    cert, key, _, _ = certs
    return start_server("--in-memory", "--tls-cert", str(cert), "--tls-key", str(key))


def test_client_api_over_tls_with_pipelining(tls_server, certs):
    with Client("127.0.0.1", tls_server.port, cafile=str(certs[0])) as db:
        db.put("greeting", "hello over TLS")
        assert db.get("greeting") == "hello over TLS"
        # Thousands of pipelined commands: replies span many TLS records and sends.
        lines = [f"PUT k{i} {'v' * 200}{i}" for i in range(3000)] + [
            f"GET k{i}" for i in range(3000)]
        replies = db.pipeline(lines)
        assert replies[:3000] == [ok()] * 3000
        assert replies[3000:] == [ok("v" * 200 + str(i)) for i in range(3000)]


def test_the_servers_certificate_is_checked(tls_server, certs):
    with pytest.raises(ConnectionLost, match="certificate"):
        Client("127.0.0.1", tls_server.port, tls=True)  # self-signed: not in the system CAs
    with pytest.warns(RuntimeWarning, match="insecure_skip_verify"), \
            Client("127.0.0.1", tls_server.port, insecure_skip_verify=True) as db:
        assert db.ping() == "PONG"


def test_half_close_over_tls_answers_every_line_then_closes(tls_server, certs):
    conn = RawTls(tls_server.port, certs[0])
    conn.send(b"PUT a 1\nGET a\nPING last")  # the unterminated last line counts too
    conn.close_write()
    replies = conn.read_until_closed().decode().splitlines()
    assert replies == ['{"status":"Ok"}', '{"status":"Ok","result":"1"}',
                       '{"status":"Ok","result":"last"}']
    conn.close()


def test_plaintext_client_on_a_tls_port_gets_nothing_and_blocks_nobody(tls_server, certs):
    stalled = socket.create_connection(("127.0.0.1", tls_server.port), timeout=5)
    stalled.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
    plain = socket.create_connection(("127.0.0.1", tls_server.port), timeout=5)
    plain.sendall(b"PING\nPUT k v\n")
    assert plain.recv(4096) == b""  # closed without a byte: not even a TLS alert
    plain.close()
    with Client("127.0.0.1", tls_server.port, cafile=str(certs[0])) as db:
        assert db.ping() == "PONG"
        assert db.execute("GET k")["code"] == "NOT_FOUND"  # the plaintext PUT never ran
    stalled.close()


def test_a_handshake_that_does_not_finish_in_time_is_closed(start_server, certs):
    cert, key, _, _ = certs
    server = start_server("--in-memory", "--tls-cert", str(cert), "--tls-key", str(key),
                          "--handshake-timeout", "0.3")
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    started = time.monotonic()
    assert stalled.recv(4096) == b""
    assert time.monotonic() - started < 4
    stalled.close()


def test_client_certificates_are_required_with_tls_ca(start_server, certs):
    cert, key, client_cert, client_key = certs
    server = start_server("--in-memory", "--tls-cert", str(cert), "--tls-key", str(key),
                          "--tls-ca", str(client_cert))
    with Client("127.0.0.1", server.port, cafile=str(cert), certfile=str(client_cert),
                keyfile=str(client_key)) as db:
        assert db.ping() == "PONG"
    # Without one (TLS 1.3: the server's refusal arrives after the client's handshake ends).
    with pytest.raises(ConnectionLost), Client("127.0.0.1", server.port, cafile=str(cert)) as db:
        db.ping()
    # With a certificate the server does not trust (its own).
    with pytest.raises(ConnectionLost), Client("127.0.0.1", server.port, cafile=str(cert),
                                               certfile=str(cert), keyfile=str(key)) as db:
        db.ping()


def test_max_clients_over_tls_the_extra_client_gets_a_limit_line(start_server, certs):
    cert, key, _, _ = certs
    server = start_server("--in-memory", "--tls-cert", str(cert), "--tls-key", str(key),
                          "--max-clients", "1")
    with Client("127.0.0.1", server.port, cafile=str(cert)) as first:
        assert first.ping() == "PONG"
        extra = RawTls(server.port, cert)  # its handshake completes, then it is told
        lines = extra.read_until_closed().splitlines()
        extra.close()
        assert len(lines) == 1, lines
        assert b'"code":"LIMIT"' in lines[0] and b"--max-clients" in lines[0]
        assert first.ping() == "PONG"


def test_client_program_over_tls(tls_server, certs):
    client = [sys.executable, str(ROOT / "client.py"), "--port", str(tls_server.port)]
    run = {"capture_output": True, "timeout": 20, "cwd": str(ROOT), "env": dict(os.environ)}
    result = subprocess.run([*client, "--cafile", str(certs[0])],
                            input=b"PUT x 1\nGET x\n", **run)
    assert (result.returncode, result.stdout) == (0, b"OK\n1\n")
    result = subprocess.run([*client, "--tls"], input=b"PING\n", **run)
    assert result.returncode == 2
    assert b"certificate" in result.stderr
    result = subprocess.run([*client, "--insecure-skip-verify"], input=b"PING\n", **run)
    assert (result.returncode, result.stdout) == (0, b"PONG\n")
    assert b"warning: --insecure-skip-verify" in result.stderr


def test_tls_flags_are_checked_at_start(tmp_path, certs):
    cert, _, _, client_key = certs

    def start(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "server.py"), "--port", "0",
                               "--in-memory", *flags], capture_output=True, timeout=20,
                              cwd=str(tmp_path))

    result = start("--tls-cert", str(cert))
    assert result.returncode == 2
    assert b"--tls-cert and --tls-key go together" in result.stderr
    result = start("--tls-cert", str(cert), "--tls-key", str(client_key))  # not its key
    assert result.returncode == 1
    assert b"cannot set up TLS" in result.stderr
