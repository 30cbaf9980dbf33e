"""Persistence as the loop sees it: the write-ahead log with group commit, compaction, READONLY.

:class:`WriteAheadLog` is the store's commit hook. Each commit's record is appended to a
buffer in memory (:meth:`append`); once per loop turn the server calls :meth:`sync`, which
writes the whole buffer with one ``write`` and, with ``--fsync always``, one ``fsync``: the group
commit. The same call starts a compaction when one is due and reaps a finished one. Replies
made during the turn leave only after that, so a reply never announces a commit the disk does
not have. With ``everysec`` a written commit is fsynced within about a second (by the first
sync or :meth:`maintain` timer after it is a second old); with ``no`` the kernel decides.

If a write or fsync fails, the commits of the turn are taken back in memory (the store's undo
of unsynced commits), their replies become errors, the error is logged once, and the server
turns read-only until restarted: writes get ``READONLY``, reads keep working. Taking back
instead of exiting keeps reads available, as Redis does; a later fsync is never trusted after
one failed (the kernel may have dropped the dirty pages: PostgreSQL's "fsyncgate"), so the
state stays read-only rather than retrying.

Compaction (Redis's BGREWRITEAOF, in spirit): when the log passes ``--compact-min-bytes`` and
``--compact-ratio`` times the last snapshot, the log moves to a new segment and a forked child
writes the committed state as a snapshot while the parent goes on serving. The parent polls
the child from a loop timer (``waitpid`` with ``WNOHANG``: never blocking) and removes the old
segments once the child has made the snapshot durable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import NoReturn, Union

from . import errors, logformat
from .datafiles import TEMP_SUFFIX, DataFolder, Recovered, Segment, segment_name, snapshot_name
from .errors import CommandError
from .protocol import encode_error
from .store import Store, Write, text_bytes

log = logging.getLogger("kvloop.wal")

# How often maintain() wants to run: often enough to reap a compaction child promptly, and
# everysec's one-second promise; idle servers wake once a second at most.
IDLE_TICK_SECONDS = 1.0
# --fsync everysec: the oldest written, un-fsynced commit is fsynced within this long.
EVERYSEC_SECONDS = 1.0
CHILD_POLL_SECONDS = 0.02
# After a failed compaction, how long before trying again (a full disk should not be hammered).
COMPACT_RETRY_SECONDS = 10.0


class ReadOnlyError(CommandError):
    """A write refused because the log could not be written: READONLY, with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            errors.READONLY,
            f"the server is read-only: {reason}; writes are refused until it is restarted "
            "(reads keep working); nothing was changed",
        )


def unacknowledged_reply(reason: str) -> bytes:
    """The reply that replaces each reply held back by a failed group commit."""
    return encode_error(
        errors.READONLY,
        f"this command's reply was withheld because {reason}; any commit it made was not "
        "acknowledged and was taken back; the server is now read-only until restarted",
    )


class MemoryOnly:
    """Persistence for ``--in-memory``: nothing to write, sync or recover."""

    pending = False
    readonly: str | None = None

    def sync(self) -> str | None:
        """Nothing to make durable: always succeeds."""
        return None

    def maintain(self) -> float | None:
        """Nothing to do on a timer."""
        return None

    def close(self) -> None:
        """Nothing to close."""

    def stats(self) -> dict:
        """The persistence part of STATS."""
        return {"persistence": "memory", "log_bytes": 0, "fsyncs": 0, "readonly": False,
                "compacting": False}


class WriteAheadLog:
    """The open log of one data folder, bound to the store it makes durable."""

    def __init__(self, folder: DataFolder, store: Store, recovered: Recovered,
                 fsync: str = "always", compact_min_bytes: int = 1 << 20,
                 compact_ratio: float = 2.0) -> None:
        self.folder = folder
        self.store = store
        self.fsync_mode = fsync
        self.compact_min_bytes = compact_min_bytes
        self.compact_ratio = compact_ratio
        self.fsyncs = 0
        self.readonly: str | None = None
        self._buffer: list[bytes] = []
        # True while commits wait in the buffer: replies made now must wait for sync(). A plain
        # attribute, not a property: the loop asks several times per request.
        self.pending = False
        self._unsynced_since: float | None = None  # when the oldest un-fsynced write was made
        self._segments = [number for number, _ in recovered.segments]
        self._old_bytes = sum(size for _, size in recovered.segments[:-1])
        self._snapshot_bytes = recovered.snapshot_bytes
        self._child: int | None = None
        self._child_snapshot = 0
        self._next_compact_try = 0.0
        self._closing = False
        if recovered.segments:
            number, size = recovered.segments[-1]
            self._segment = Segment.reopen(folder.path / segment_name(number), number, size)
        else:
            number = max(recovered.snapshot_number, 1)
            self._segment = Segment.create(folder.path, number)
            self._segments.append(number)
        store.on_commit = self.append
        store.keep_undo_until_synced()

    # -- the hot path ----------------------------------------------------------------------

    def append(self, seq: int, writes: list[Write]) -> None:
        """The store's commit hook: queue the commit's record (raises READONLY when failed)."""
        if self.readonly is not None:
            raise ReadOnlyError(self.readonly)
        record = logformat.encode_commit(seq, writes)
        if len(record) > logformat.MAX_RECORD_BYTES:
            raise CommandError(errors.TOO_LARGE,
                               f"this commit's log record would be {len(record)} bytes; the "
                               f"limit is {logformat.MAX_RECORD_BYTES}; nothing was changed")
        self._buffer.append(record)
        self.pending = True

    def sync(self) -> str | None:
        """Group commit: write every queued record at once (and fsync, per ``--fsync``).

        Returns ``None`` when every commit so far may be acknowledged, else the reason they may
        not: the commits were taken back in memory and the log is now read-only.
        """
        if not self._buffer:
            return None
        data = b"".join(self._buffer)
        self._buffer.clear()
        self.pending = False
        segment = self._segment
        size_before = segment.size
        try:
            segment.write(data)
            if self.fsync_mode == "always":
                self._fsync()
            elif self._unsynced_since is None:
                self._unsynced_since = time.monotonic()
            elif self._everysec_due(time.monotonic()):
                self._fsync()
        except OSError as exc:
            return self._fail(exc, size_before)
        self.store.synced()
        if self._child is not None:
            self._reap_child()
        elif self._compaction_due():
            self._start_compaction()
        return None

    def _fsync(self) -> None:
        self._segment.sync()
        self.fsyncs += 1
        self._unsynced_since = None

    def _fail(self, exc: OSError, size_before: int) -> str:
        reason = f"writing the log {self._segment.path} failed: {exc.strerror or exc}"
        undone = self.store.undo_unsynced()
        log.error("%s; %d commit(s) not acknowledged and taken back; the server is now "
                  "read-only (restart it once the disk is fixed)", reason, undone)
        self.readonly = reason
        with contextlib.suppress(OSError):  # best effort: no partial record left behind
            self._segment.truncate(size_before)
        return reason

    # -- on a timer --------------------------------------------------------------------------

    def maintain(self) -> float | None:
        """Timer work: everysec's fsync, reaping a compaction child, starting compaction.

        Returns the seconds until it wants to run again.
        """
        if self.readonly is not None:
            return None
        now = time.monotonic()
        if self._everysec_due(now):
            try:
                self._fsync()
            except OSError as exc:
                self._fail(exc, self._segment.size)
                return None
        if self._child is not None:
            self._reap_child()
        elif self._compaction_due():
            self._start_compaction()
        delay = CHILD_POLL_SECONDS if self._child is not None else IDLE_TICK_SECONDS
        if self._unsynced_since is not None and self.fsync_mode == "everysec":
            delay = min(delay, max(0.0, self._unsynced_since + EVERYSEC_SECONDS - now))
        return delay

    def _everysec_due(self, now: float) -> bool:
        since = self._unsynced_since
        return (since is not None and self.fsync_mode == "everysec"
                and now - since >= EVERYSEC_SECONDS)

    def log_bytes(self) -> int:
        """Bytes in the live log segments (what the next snapshot would make redundant)."""
        return self._old_bytes + self._segment.size + sum(map(len, self._buffer))

    def _compaction_due(self) -> bool:
        size = self.log_bytes()
        return (size > self.compact_min_bytes and size > self.compact_ratio * self._snapshot_bytes
                and time.monotonic() >= self._next_compact_try and not self._closing)

    def _start_compaction(self) -> None:
        """Move the log to a new segment and fork a child that snapshots the state up to it."""
        if self._buffer:
            return  # only between loop turns, when every commit is written: try next tick
        try:
            self._rotate()
        except OSError as exc:
            self._fail(exc, self._segment.size)
            return
        number = self._segment.number
        try:
            pid = os.fork()
        except OSError as exc:
            log.warning("compaction: cannot fork the snapshot child: %s; trying again in "
                        "%.0f s", exc, COMPACT_RETRY_SECONDS)
            self._next_compact_try = time.monotonic() + COMPACT_RETRY_SECONDS
            return
        if pid == 0:  # the child: never returns
            _snapshot_child(self.folder, self.store, number)
        self._child = pid
        self._child_snapshot = number
        log.info("compaction: writing snapshot %d in child process %d", number, pid)

    def _rotate(self) -> None:
        old = self._segment
        old.sync()  # the old segment is complete and durable before the new one exists
        self.fsyncs += 1
        self._unsynced_since = None
        self._segment = Segment.create(self.folder.path, old.number + 1)
        self._segments.append(old.number + 1)
        self._old_bytes += old.size
        old.close()

    def _reap_child(self, block: bool = False) -> None:
        pid, status = os.waitpid(self._child, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        self._child = None
        number = self._child_snapshot
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.warning("compaction: the snapshot child failed (exit status %d); the log is "
                        "kept and compaction will be tried again in %.0f s", code,
                        COMPACT_RETRY_SECONDS)
            self.folder.remove_file(snapshot_name(number) + TEMP_SUFFIX)
            self._next_compact_try = time.monotonic() + COMPACT_RETRY_SECONDS
            return
        try:
            self._snapshot_bytes = os.path.getsize(self.folder.path / snapshot_name(number))
            self.folder.retire_before(number)
        except OSError as exc:
            log.warning("compaction: removing the old log segments failed: %s", exc)
            return
        self._segments = [n for n in self._segments if n >= number]
        self._old_bytes = 0
        log.info("compaction: snapshot %d is durable (%d bytes); older log segments removed",
                 number, self._snapshot_bytes)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Clean stop: write and fsync what is queued, wait for a compaction child, unlock."""
        self._closing = True  # no new compaction now
        if self.readonly is None:
            self.sync()
            if self.readonly is None and self.fsync_mode != "always":
                try:
                    self._fsync()
                except OSError as exc:
                    log.error("the final fsync of the log failed: %s", exc)
        if self._child is not None:
            self._reap_child(block=True)
        self._segment.close()
        self.folder.close()

    def stats(self) -> dict:
        """The persistence part of STATS."""
        return {
            "persistence": f"wal (fsync {self.fsync_mode})",
            "log_bytes": self.log_bytes(),
            "fsyncs": self.fsyncs,
            "readonly": self.readonly is not None,
            **({"readonly_reason": self.readonly} if self.readonly else {}),
            "compacting": self._child is not None,
        }



Persistence = Union[WriteAheadLog, MemoryOnly]


def _snapshot_child(folder: DataFolder, store: Store, number: int) -> NoReturn:
    """In the forked compaction child: write the committed state as snapshot ``number``, exit.

    The child owns nothing of the parent's: it never returns into the loop and leaves with
    ``os._exit``. It gives up (exit 1, temp file removed) if the parent dies meanwhile.
    """
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        folder.lock.close_in_child()
        # Drop every inherited descriptor but stdio: a client socket the parent closes must
        # not stay open (no FIN sent) until the snapshot is written, nor the listening port.
        os.closerange(3, _max_fd())
        parent = os.getppid()
        items = store.committed_items()
        data_bytes = sum(text_bytes(k) + text_bytes(v) for k, v in items)
        pieces = logformat.encode_snapshot(store.seq, items, len(items), data_bytes)
        folder.write_snapshot(number, _while_parent_lives(pieces, parent))
        code = 0
    except BaseException:
        log.exception("compaction: writing snapshot %d failed", number)
        folder.remove_file(snapshot_name(number) + TEMP_SUFFIX)
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def _while_parent_lives(pieces, parent: int):
    for piece in pieces:
        if os.getppid() != parent:
            raise RuntimeError("the server process is gone; abandoning the snapshot")
        yield piece
    if os.getppid() != parent:
        raise RuntimeError("the server process is gone; abandoning the snapshot")


def replay(state: logformat.Snapshot, commits: list[tuple[int, list[Write]]]) -> int:
    """Apply the log's commits after ``state.seq`` to ``state`` (in place); return how many.

    Plain dict work, with the data bytes kept as STATS counts them: the store takes the
    result in one piece (:meth:`Store.install_committed`).
    """
    values, data_bytes, seq = state.values, state.data_bytes, state.seq
    replayed = 0
    for commit_seq, writes in commits:
        if commit_seq <= seq:
            continue  # already in the snapshot
        for key, value in writes:
            old = values.get(key)
            if old is not None:
                data_bytes -= text_bytes(key) + text_bytes(old)
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
                data_bytes += text_bytes(key) + text_bytes(value)
        seq = commit_seq
        replayed += 1
    state.data_bytes, state.seq = data_bytes, seq
    return replayed


def open_persistence(settings, store: Store) -> Persistence:
    """Persistence per ``settings``: lock the data folder, recover ``store`` from it, open the
    log. Raises :class:`~kvloop.datafiles.DataDirError` (with a message for the operator) when
    the folder is in use or damaged. ``--in-memory`` gives :class:`MemoryOnly`."""
    if settings.in_memory:
        return MemoryOnly()
    folder = DataFolder(settings.data_dir)
    folder.open()
    try:
        started = time.monotonic()
        recovered = folder.recover()
        for warning in recovered.warnings:
            log.warning("recovery: %s", warning)
        snapshot = recovered.snapshot
        if snapshot is None:
            snapshot = logformat.Snapshot(0, {}, 0)
        replayed = replay(snapshot, recovered.commits)
        store.install_committed(snapshot.values, snapshot.seq, snapshot.data_bytes)
        recovered.commits = []
        folder.lock.record_pid()
        wal = WriteAheadLog(folder, store, recovered, fsync=settings.fsync,
                            compact_min_bytes=settings.compact_min_bytes,
                            compact_ratio=settings.compact_ratio)
    except BaseException:
        folder.close()
        raise
    log.info("recovered %d keys up to commit %d from %s (%s, %d log records) in %.3f s",
             store.committed_key_count(), store.seq, folder.path,
             f"snapshot {recovered.snapshot_number}" if recovered.snapshot else "no snapshot",
             replayed, time.monotonic() - started)
    return wal
