"""The write-ahead log and data folder as objects (kvloop/wal.py, datafiles.py): group commit,
recovery, undo of commits the disk refused, and READONLY, with disk failures injected."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from kvloop import errors
from kvloop.commands import CommandExecutor
from kvloop.config import Settings
from kvloop.datafiles import DataDirError, DataFolder, Segment
from kvloop.logformat import HEADER_SIZE, encode_commit
from kvloop.store import Store
from kvloop.transaction import READ_COMMITTED
from kvloop.wal import ReadOnlyError, open_persistence


def open_log(folder: Path, **settings):
    store = Store()
    wal = open_persistence(Settings(data_dir=str(folder), **settings), store)
    return store, wal


def reopen(folder: Path, wal) -> Store:
    wal.close()
    store, again = open_log(folder)
    again.close()
    return store


class Failing:
    """Make Segment.write or Segment.sync raise OSError while ``on``."""

    def __init__(self, monkeypatch, method: str, code: int = errno.EIO) -> None:
        self.on = False
        original = getattr(Segment, method)

        def failing(segment, *args):
            if self.on:
                raise OSError(code, os.strerror(code))
            return original(segment, *args)

        monkeypatch.setattr(Segment, method, failing)


def test_group_commit_one_write_and_fsync_for_many_commits(tmp_path):
    store, wal = open_log(tmp_path)
    for i in range(100):
        store.put(f"k{i}", str(i))
    assert wal.pending
    assert wal.fsyncs == 0
    assert wal.sync() is None
    assert not wal.pending
    assert wal.fsyncs == 1
    assert reopen(tmp_path, wal).get("k99") == "99"


def test_records_reach_the_file_only_at_sync(tmp_path):
    store, wal = open_log(tmp_path)
    store.put("a", "1")
    segment = tmp_path / "log-00000001.kvl"
    assert segment.stat().st_size == HEADER_SIZE
    wal.sync()
    assert segment.read_bytes()[HEADER_SIZE:] == encode_commit(1, [("a", "1")])
    wal.close()


@pytest.mark.parametrize("method", ["write", "sync"])
def test_failed_write_or_fsync_takes_the_turns_commits_back_and_turns_readonly(
        tmp_path, monkeypatch, caplog, method):
    failing = Failing(monkeypatch, method)
    store, wal = open_log(tmp_path)
    store.put("kept", "1")
    store.put("changed", "before")
    assert wal.sync() is None  # acknowledged
    # An open transaction, and a turn of commits the disk will refuse.
    open_txn = store.begin(READ_COMMITTED)
    store.put("mine", "uncommitted", open_txn)
    store.put("changed", "after")
    store.delete("kept")
    txn = store.begin(READ_COMMITTED)
    store.put("t1", "x", txn)
    store.put("t2", "y", txn)
    assert store.commit(txn) == 5
    store.put("new", "1")
    store.put("mine-too", "z")
    failing.on = True
    reason = wal.sync()
    assert reason is not None and "Input/output error" in reason
    # Every commit of the turn is taken back; the earlier ones and the open transaction stay.
    assert store.seq == 2
    assert store.get("kept") == "1"
    assert store.get("changed") == "before"
    for key in ("t1", "t2", "new", "mine-too"):
        assert store.get(key) is None, key
    assert store.get("mine", open_txn) == "uncommitted"
    assert store.committed_key_count() == 2
    assert store.data_bytes == len("kept1changedbefore")
    # Read-only from now on: commits with writes are refused and change nothing.
    assert wal.readonly == reason
    with pytest.raises(ReadOnlyError) as refused:
        store.put("later", "1")
    assert refused.value.code == errors.READONLY
    assert store.get("later") is None
    with pytest.raises(ReadOnlyError):
        store.commit(open_txn)
    assert store.get("mine") is None and store.open_intents() == 0
    assert caplog.text.count("not acknowledged and taken back") == 1
    assert wal.stats()["readonly"] is True
    # After a restart only the acknowledged commits are there.
    failing.on = False
    again = reopen(tmp_path, wal)
    assert again.committed_items() == [("changed", "before"), ("kept", "1")]


def test_undo_restores_before_images_under_a_later_transactions_intent(tmp_path, monkeypatch):
    failing = Failing(monkeypatch, "write")
    store, wal = open_log(tmp_path)
    store.put("k", "v1")
    wal.sync()
    store.put("k", "v2")  # taken back below
    txn = store.begin(READ_COMMITTED)
    store.put("k", "txn", txn)  # its before-image is v2
    failing.on = True
    assert wal.sync() is not None
    assert store.get("k") == "v1"  # others see the restored committed value
    assert store.get("k", txn) == "txn"
    store.rollback(txn)
    assert store.get("k") == "v1"
    assert store.committed_key_count() == 1


def test_failed_append_of_a_partial_write_is_cut_back(tmp_path, monkeypatch):
    store, wal = open_log(tmp_path)
    store.put("a", "1")
    wal.sync()
    size = (tmp_path / "log-00000001.kvl").stat().st_size
    original = Segment.write

    def half_then_fail(segment, data):
        original(segment, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Segment, "write", half_then_fail)
    store.put("b", "2" * 100)
    assert "No space left" in wal.sync()
    assert (tmp_path / "log-00000001.kvl").stat().st_size == size
    monkeypatch.undo()
    assert reopen(tmp_path, wal).committed_items() == [("a", "1")]


def test_executor_refuses_writes_with_readonly_and_reads_keep_working(tmp_path, monkeypatch):
    failing = Failing(monkeypatch, "sync")
    store, wal = open_log(tmp_path)
    executor = CommandExecutor(Settings(), store, persistence=wal)
    session = executor.open_session()
    assert executor.execute(session, b"PUT a 1") == b'{"status":"Ok"}\n'
    wal.sync()
    executor.execute(session, b"START")
    executor.execute(session, b"PUT b 2")
    failing.on = True
    executor.execute(executor.open_session(), b"PUT c 3")
    assert wal.sync() is not None
    for line in (b"PUT x 1", b"DEL a", b"COMMIT"):
        reply = executor.execute(session, line)
        assert b'"code":"READONLY"' in reply, line
    assert b"rolled back" in reply  # the COMMIT's transaction
    assert executor.execute(session, b"GET a") == b'{"status":"Ok","result":"1"}\n'
    assert executor.execute(session, b"START") == b'{"status":"Ok"}\n'
    assert executor.execute(session, b"GET a") == b'{"status":"Ok","result":"1"}\n'
    assert executor.execute(session, b"COMMIT").startswith(b'{"status":"Ok"')  # read-only
    stats = executor.execute(session, b"STATS")
    assert b'"readonly":true' in stats and b"readonly_reason" in stats
    wal.close()


def test_everysec_writes_every_turn_and_fsyncs_once_a_second(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("kvloop.wal.time.monotonic", lambda: clock[0])
    store, wal = open_log(tmp_path, fsync="everysec")
    store.put("a", "1")
    assert wal.sync() is None
    assert wal.fsyncs == 0
    assert (tmp_path / "log-00000001.kvl").stat().st_size > HEADER_SIZE  # written
    clock[0] += 0.5
    assert wal.maintain() == pytest.approx(0.5)  # wakes when the write is a second old
    assert wal.fsyncs == 0
    store.put("b", "2")
    assert wal.sync() is None
    assert wal.fsyncs == 0  # the oldest unsynced write is only 0.5 s old
    clock[0] += 0.6
    wal.maintain()
    assert wal.fsyncs == 1
    assert wal.maintain() == 1.0  # nothing new to sync
    assert wal.fsyncs == 1
    clock[0] += 5
    store.put("c", "3")
    wal.sync()  # first write after a quiet spell: fsynced within the next second
    clock[0] += 1.0
    store.put("d", "4")
    wal.sync()  # a busy server fsyncs from the group commit itself
    assert wal.fsyncs == 2
    wal.close()


def test_folder_lock_refuses_a_second_opener(tmp_path):
    first = DataFolder(tmp_path)
    first.open()
    second = DataFolder(tmp_path)
    with pytest.raises(DataDirError, match="is in use by another kvloop server"):
        second.open()
    first.close()
    second.open()
    second.close()


def test_recovery_cuts_every_torn_tail_of_a_segment(tmp_path):
    store, wal = open_log(tmp_path / "src")
    for i in range(3):
        store.put(f"k{i}", "v" * i)
    wal.sync()
    wal.close()
    data = (tmp_path / "src" / "log-00000001.kvl").read_bytes()
    last = encode_commit(3, [("k2", "vv")])
    assert data.endswith(last)
    for cut in range(len(data) - len(last) + 1, len(data)):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / "log-00000001.kvl").write_bytes(data[:cut])
        recovered = DataFolder(folder).recover()
        assert [seq for seq, _ in recovered.commits] == [1, 2], cut
        assert "torn write" in recovered.warnings[0]
        assert (folder / "log-00000001.kvl").stat().st_size == len(data) - len(last)


def test_missing_segment_in_the_middle_refuses(tmp_path):
    store, wal = open_log(tmp_path, compact_min_bytes=1 << 30)
    store.put("a", "1")
    wal.sync()
    wal._rotate()
    store.put("b", "2")
    wal.sync()
    wal._rotate()
    wal.close()
    (tmp_path / "log-00000002.kvl").unlink()
    with pytest.raises(DataDirError, match=r"log-00000002\.kvl is missing"):
        DataFolder(tmp_path).recover()
