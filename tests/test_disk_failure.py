"""A disk that fails under the real server (SPEC §5): the affected commits are not
acknowledged, the error is logged once, the server turns READONLY (reads keep working, STATS
says so), and no acknowledged commit is lost."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path

import pytest
from support import error_code, ok

FAULT_SERVER = Path(__file__).resolve().parent / "disk_fault_server.py"


def test_failing_log_write_turns_the_server_readonly(start_server, tmp_path):
    trigger = tmp_path / "disk-is-broken"
    folder = tmp_path / "data"
    server = start_server("--data-dir", str(folder), script=FAULT_SERVER,
                          env={"KVLOOP_DISK_FAULT": str(trigger)})
    c, other = server.connect(), server.connect()
    assert c.ask("PUT safe 1") == ok()
    assert c.ask("START") == ok()
    assert c.ask("PUT in-txn before-failure") == ok()
    trigger.touch()
    # One turn: a commit the disk refuses and a read after it. Neither reply may claim it.
    c2 = server.connect()
    c2.send(b"PUT lost 1\nGET lost\n")
    for reply in c2.replies(2):
        assert error_code(reply) == "READONLY", reply
        assert "withheld" in reply["mesg"] and "not acknowledged" in reply["mesg"]
    # From now on: writes and COMMIT with writes get READONLY; reads work.
    for command in ("PUT x 1", "DEL safe"):
        reply = other.ask(command)
        assert error_code(reply) == "READONLY", reply
        assert "read-only" in reply["mesg"] and "restart" in reply["mesg"]
    reply = c.ask("COMMIT")
    assert error_code(reply) == "READONLY" and "rolled back" in reply["mesg"]
    assert other.ask("GET safe") == ok("1")
    assert error_code(other.ask("GET lost")) == "NOT_FOUND"
    assert other.ask("START") == ok()
    assert other.ask("GET safe") == ok("1")
    assert other.ask("COMMIT")["status"] == "Ok"  # a read-only transaction still commits
    stats = other.ask("STATS")["result"]
    assert stats["readonly"] is True
    assert "injected disk failure" in stats["readonly_reason"]
    log = server.log()
    assert log.count("not acknowledged and taken back") == 1
    assert "ERROR" in log
    # A restart (disk fixed) finds every acknowledged commit and none of the others.
    server.kill()
    trigger.unlink()
    again = start_server("--data-dir", str(folder))
    d = again.connect()
    assert d.ask("GET safe") == ok("1")
    assert error_code(d.ask("GET lost")) == "NOT_FOUND"
    assert error_code(d.ask("GET in-txn")) == "NOT_FOUND"
    assert d.ask("STATS")["result"]["readonly"] is False


@contextlib.contextmanager
def tiny_filesystem(mountpoint: Path, size: str):
    """A tmpfs of ``size`` at ``mountpoint``, or skip if mounting is not allowed here."""
    mountpoint.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                                 f"kvloop-test-{uuid.uuid4().hex[:8]}", str(mountpoint)],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=10)


def test_full_disk_turns_the_server_readonly_and_loses_no_acknowledged_commit(start_server,
                                                                               tmp_path):
    with tiny_filesystem(tmp_path / "tiny", "256k") as mount:
        folder = mount / "data"
        # No compaction: the log must run into the end of the filesystem.
        server = start_server("--data-dir", str(folder), "--compact-min-bytes", str(1 << 30))
        c = server.connect()
        acknowledged = {}
        value = "v" * 4000
        for i in range(200):
            reply = c.ask(f"PUT k{i} {i}{value}")
            if reply != ok():
                assert error_code(reply) == "READONLY", reply
                assert "No space left on device" in reply["mesg"]
                break
            acknowledged[f"k{i}"] = f"{i}{value}"
        else:
            pytest.fail("the 256 KiB filesystem never filled up")
        assert 10 < len(acknowledged) < 200
        assert error_code(c.ask("PUT more 1")) == "READONLY"
        assert c.ask("GET k0") == ok(f"0{value}")
        assert c.ask("STATS")["result"]["readonly"] is True
        server.kill()
        again = start_server("--data-dir", str(folder))
        d = again.connect()
        for key, expected in acknowledged.items():
            assert d.ask(f"GET {key}") == ok(expected), key
        assert error_code(d.ask(f"GET k{len(acknowledged)}")) == "NOT_FOUND"
        again.stop()
