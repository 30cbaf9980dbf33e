"""Snapshot transactions and durability (issue 8, item 8): the log holds committed values only.

Older versions live in memory for the open snapshots that need them; the write-ahead log and
recovery never see them. Both tests run persistent servers (the default) over real sockets.
"""

from __future__ import annotations

from support import ServerProcess, ok

NOT_FOUND = {"status": "Error", "code": "NOT_FOUND", "mesg": "Key not found"}


def workload(server: ServerProcess) -> None:
    """Overwrites of one key, creations and deletions: the same commits on every server."""
    conn = server.connect()
    for n in range(100):
        assert conn.ask(f"PUT x v{n:03d}") == ok()
    for n in range(20):
        assert conn.ask(f"PUT k{n:02d} created") == ok()
    for n in range(0, 20, 2):
        assert conn.ask(f"DEL k{n:02d}") == ok()
    conn.close()


def test_log_is_the_same_with_a_snapshot_open(start_server):
    """The same commits take the same log bytes whether or not an idle snapshot keeps older
    versions, and the snapshot still reads its versions from memory."""
    plain, watched = start_server("--fsync", "no"), start_server("--fsync", "no")
    reader = watched.connect()
    assert reader.ask("PUT x first") == ok()
    plain.connect().ask("PUT x first")
    assert reader.ask("START snapshot") == ok()
    assert reader.ask("GET x") == ok("first")
    workload(plain)
    workload(watched)
    sizes = [server.connect().ask("STATS")["result"]["log_bytes"] for server in (plain, watched)]
    assert sizes[0] == sizes[1] > 0
    versions = watched.connect().ask("STATS")["result"]["transactions"]["versions"]
    assert versions["old_values"] >= 1
    assert reader.ask("GET x") == ok("first")
    assert reader.ask("SCAN PREFIX k")["result"] == {"keys": [], "more": False}


def test_restart_with_a_snapshot_open_recovers_committed_values(start_server):
    """kill -9 while a snapshot transaction holds older versions and ghost keys: recovery
    gives exactly the latest committed state (no old value, no deleted key in SCAN)."""
    first = start_server("--fsync", "no")  # a process crash: the OS keeps what was written
    reader = first.connect()
    assert reader.ask("PUT x first") == ok()
    assert reader.ask("PUT k00 before") == ok()
    assert reader.ask("START snapshot") == ok()
    assert reader.ask("GET x") == ok("first")
    workload(first)
    assert reader.ask("SCAN PREFIX k LIMIT 3")["result"] == {"keys": ["k00"], "more": False}
    first.kill()
    second = start_server("--data-dir", str(first.workdir / "data"))
    conn = second.connect()
    assert conn.ask("GET x") == ok("v099")
    assert conn.ask("GET k00") == NOT_FOUND
    expected = [f"k{n:02d}" for n in range(1, 20, 2)]
    assert conn.ask("SCAN PREFIX k")["result"] == {"keys": expected, "more": False}
    assert conn.ask("STATS")["result"]["transactions"]["versions"] == {
        "open_snapshots": 0, "tracked_keys": 0, "old_values": 0}
