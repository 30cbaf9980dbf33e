"""SCAN after a restart: recovery from the log, and from a compaction snapshot plus the log,
rebuilds the key index (SCAN itself writes nothing)."""

from __future__ import annotations

import time

from support import ServerProcess, ok

from kvloop import Client

TIMEOUT = 10.0


def every_page(server: ServerProcess, prefix: str = "") -> list[tuple[str, str]]:
    """Every (key, value) under ``prefix``, paged 7 at a time through SCAN ... VALUES."""
    with Client("127.0.0.1", server.port, timeout=TIMEOUT) as db:
        return list(db.scan(prefix, values=True, page_size=7))


def restart(start_server, server: ServerProcess, *args: str) -> ServerProcess:
    """A new server on the same data folder (the old one must be gone)."""
    return start_server("--data-dir", str(server.workdir / "data"), *args)


def test_scan_after_kill_9_and_restart_from_the_log(start_server):
    first = start_server()
    conn = first.connect()
    expected: dict[str, str] = {}
    for i in range(60):
        assert conn.ask(f"PUT k{i:03d} v{i}") == ok()
        expected[f"k{i:03d}"] = f"v{i}"
    for i in range(0, 60, 3):
        assert conn.ask(f"DEL k{i:03d}") == ok()
        del expected[f"k{i:03d}"]
    for line in ["START", "PUT k001 changed", "PUT new1 x", "DEL k002", "COMMIT"]:
        assert conn.ask(line)["status"] == "Ok"
    expected.update({"k001": "changed", "new1": "x"})
    del expected["k002"]
    for line in ["START", "PUT uncommitted 1", "DEL k004"]:  # never committed
        assert conn.ask(line) == ok()
    assert every_page(first) == sorted(expected.items())
    first.kill()
    second = restart(start_server, first)
    assert every_page(second) == sorted(expected.items())
    assert every_page(second, "k00") == [(k, v) for k, v in sorted(expected.items())
                                        if k.startswith("k00")]
    assert second.connect().ask("SCAN PREFIX new") == ok({"keys": ["new1"], "more": False})


def test_scan_after_compaction_and_restart(start_server):
    flags = ("--compact-min-bytes", "4096", "--compact-ratio", "1.5")
    first = start_server(*flags)
    conn = first.connect()
    expected: dict[str, str] = {}
    # An open transaction's writes are held across the compaction: the snapshot must take
    # their before-images, and the index must not see them after the restart.
    holder = first.connect()
    for line in ["PUT held before", "START", "PUT held during", "PUT phantom x"]:
        assert holder.ask(line) == ok()
    expected["held"] = "before"
    deadline = time.monotonic() + 20
    round_ = 0
    while not list((first.workdir / "data").glob("snapshot-*.kvs")):
        assert time.monotonic() < deadline, "no compaction happened"
        for i in range(50):
            key = f"r{round_:03d}:{i:02d}"
            assert conn.ask(f"PUT {key} {'x' * 40}") == ok()
            expected[key] = "x" * 40
        for i in range(0, 50, 2):
            assert conn.ask(f"DEL r{round_:03d}:{i:02d}") == ok()
            del expected[f"r{round_:03d}:{i:02d}"]
        round_ += 1
    time.sleep(0.5)  # let the child finish (or not: recovery must be right either way)
    assert conn.ask("PUT after compaction") == ok()
    expected["after"] = "compaction"
    assert every_page(first) == sorted(expected.items())
    first.kill()
    second = restart(start_server, first, *flags)
    assert every_page(second) == sorted(expected.items())
    assert second.connect().ask("SCAN PREFIX phantom") == ok({"keys": [], "more": False})
    stats = second.connect().ask("STATS")["result"]
    assert stats["keys"] == len(expected)
