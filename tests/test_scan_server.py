"""SCAN against the real server process: the wire reply, isolation between connections,
``kvloop.Client.scan`` paging lazily, ``python client.py --scan``, SCAN at the prompt, and
the API example that lists keys."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import ROOT, error_code, ok
from test_cli import err, needs_pty, out, run_client, terminal  # noqa: F401 (a fixture)

from kvloop import Client

TIMEOUT = 5.0


def test_wire_reply_exactly(server):
    conn = server.connect()
    conn.send(b"PUT b 2\nPUT a 1\nPUT \xc3\xa9t\xc3\xa9 summer\nPUT c x y\n")
    assert conn.replies(4) == [ok()] * 4
    conn.send(b"SCAN LIMIT 2\r\n")
    assert conn.read_line() == b'{"status":"Ok","result":{"keys":["a","b"],"more":true}}'
    conn.send(b"scan after b values\n")
    assert conn.read_line() == (
        '{"status":"Ok","result":{"keys":["c","été"],"more":false,"values":["x y","summer"]}}'
    ).encode()
    reply = conn.ask("SCAN LIMIT 10001")
    assert error_code(reply) == "BAD_REQUEST" and "10000" in reply["mesg"]
    assert "SCAN [PREFIX p]" in "\n".join(conn.ask("HELP")["result"])


def test_isolation_between_connections(server):
    writer, reader = server.connect(), server.connect()
    for line in ["PUT k1 a", "PUT k2 b", "START", "PUT k0 new", "DEL k1", "PUT k2 changed"]:
        assert writer.ask(line) == ok()
    committed = {"keys": ["k1", "k2"], "more": False, "values": ["a", "b"]}
    assert reader.ask("SCAN PREFIX k VALUES") == ok(committed)
    assert writer.ask("SCAN PREFIX k VALUES") == ok(
        {"keys": ["k0", "k2"], "more": False, "values": ["new", "changed"]})
    writer.close()  # the connection goes: its transaction is rolled back
    for _ in range(100):
        if reader.ask("STATS")["result"]["transactions"]["open"] == 0:
            break
    assert reader.ask("SCAN PREFIX k VALUES") == ok(committed)


def test_client_scan_fetches_pages_lazily(server):
    with Client("127.0.0.1", server.port, timeout=TIMEOUT) as db:
        db.pipeline([f"PUT user:{i:04d} name{i}" for i in range(250)] + ["PUT other x"])
        scans = lambda: db.stats()["commands"].get("SCAN", 0)  # noqa: E731
        keys = db.scan("user:", page_size=100)
        assert scans() == 0  # nothing sent until the iterator is used
        first = [next(keys) for _ in range(100)]
        assert scans() == 1
        assert next(keys) == "user:0100"
        assert scans() == 2
        rest = list(keys)
        assert [*first, "user:0100", *rest] == [f"user:{i:04d}" for i in range(250)]
        assert scans() == 3
        pairs = list(db.scan("user:00", values=True))
        assert pairs == [(f"user:{i:04d}", f"name{i}") for i in range(100)]
        assert list(db.scan()) == ["other", *(f"user:{i:04d}" for i in range(250))]
        assert list(db.scan("nobody")) == []
        page = db.scan_page("user:", after="user:0247", limit=2)
        assert page == {"keys": ["user:0248", "user:0249"], "more": False}
        with pytest.raises(ValueError):
            db.scan("bad prefix")
        with pytest.raises(ValueError):
            db.scan(page_size=0)


def test_client_scan_inside_a_transaction_sees_its_own_writes(server):
    with Client("127.0.0.1", server.port, timeout=TIMEOUT) as db, \
            Client("127.0.0.1", server.port, timeout=TIMEOUT) as other:
        db.put("t:a", "1")
        with db.transaction():
            db.put("t:b", "2")
            db.delete("t:a")
            assert list(db.scan("t:", values=True)) == [("t:b", "2")]
            assert list(other.scan("t:", values=True)) == [("t:a", "1")]
        assert list(other.scan("t:")) == ["t:b"]


def test_cli_scan_prints_every_key_of_every_page(server):
    with Client("127.0.0.1", server.port, timeout=TIMEOUT) as db:
        db.pipeline([f"PUT p{i:05d} v" for i in range(2500)] + ["PUT q1 v", "PUT é v"])
    result = run_client(server.port, "--scan", "p")
    assert result.returncode == 0, err(result)
    assert out(result) == "".join(f"p{i:05d}\n" for i in range(2500))
    assert err(result) == ""
    everything = run_client(server.port, "--scan", "")
    assert out(everything).splitlines()[-2:] == ["q1", "é"]
    assert len(out(everything).splitlines()) == 2502
    bad = run_client(server.port, "--scan", "two words")
    assert bad.returncode == 1 and "--scan" in err(bad) and "blank" in err(bad)
    assert run_client(server.port, "--scan", "p", "file.txt").returncode == 2


def test_script_mode_prints_scan_pages(server):
    script = b"PUT a 1\nPUT bb 22\nPUT c 3\nSCAN LIMIT 2 VALUES\nSCAN AFTER bb\nSCAN PREFIX z\n"
    result = run_client(server.port, stdin=script)
    assert result.returncode == 0, err(result)
    assert out(result) == (
        "OK\nOK\nOK\n"
        "a   1\n"
        "bb  22\n"
        "(more keys: add AFTER bb for the next page)\n"
        "c\n"
        "(1 key, no more)\n"
        "(0 keys, no more)\n"
    )


@needs_pty
def test_interactive_scan(server, terminal):  # noqa: F811
    term = terminal(server.port)
    prompt = f"127.0.0.1:{server.port}> "
    term.read_until(prompt)
    for line in ["PUT fruit:apple red", "PUT fruit:kiwi green", "PUT veg:leek white"]:
        assert "OK\n" in term.ask(line, prompt)
    shown = term.ask("scan prefix fruit: limit 1", prompt)
    assert "fruit:apple\n(more keys: add AFTER fruit:apple for the next page)\n" in shown
    shown = term.ask("SCAN PREFIX fruit: AFTER fruit:apple VALUES", prompt)
    assert "fruit:kiwi  green\n(1 key, no more)\n" in shown
    assert "(error) BAD_REQUEST" in term.ask("SCAN LIMIT many", prompt)
    term.type("exit")
    assert term.wait() == 0


def test_api_example_runs_and_lists_keys(server):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "api_example.py"), "--port", str(server.port)],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "  order:0001 = item 1\n" in result.stdout
    assert "every key: alice, bob, georgew, order:0000, order:0001, order:0002\n" in result.stdout
