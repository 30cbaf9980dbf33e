"""The data folder on disk: its lock, log segments, snapshots, and recovery from them.

Files in the folder (``--data-dir``):

    LOCK                      held with flock() while a server uses the folder; holds its pid
    log-00000001.kvl          log segments, numbered upwards; each is a header plus records
    snapshot-00000007.kvs     the committed state as of the start of log segment 7
    *.tmp                     a snapshot being written; left over only by a crash, removed on start

The state is the newest snapshot (none means empty) plus every commit in the segments numbered
from the snapshot's number on, replayed in order. Older segments and snapshots are removed once
a newer snapshot is durable. Byte formats are in :mod:`kvloop.logformat`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from . import logformat
from .logformat import FormatError

log = logging.getLogger("kvloop.datafiles")

LOCK_NAME = "LOCK"
SEGMENT_PATTERN = re.compile(r"log-(\d{8})\.kvl")
SNAPSHOT_PATTERN = re.compile(r"snapshot-(\d{8})\.kvs")
TEMP_SUFFIX = ".tmp"


class DataDirError(Exception):
    """The data folder cannot be used; the message says why and what to do (no traceback)."""


def segment_name(number: int) -> str:
    """The file name of log segment ``number``."""
    return f"log-{number:08d}.kvl"


def snapshot_name(number: int) -> str:
    """The file name of the snapshot taken at the start of segment ``number``."""
    return f"snapshot-{number:08d}.kvs"


def fsync_folder(path: Path) -> None:
    """fsync a folder, making the creation, renaming and removal of its files durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive flock() on ``LOCK`` in the folder: one server per data folder.

    The kernel releases it when the process exits, however it exits (kill -9 included).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DataDirError naming the folder and the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise DataDirError(
                    f"data folder {self.path.parent} is in use by another kvloop server "
                    f"(pid {holder}); stop it or give this one another --data-dir"
                ) from None
            raise
        self._fd = fd

    def record_pid(self) -> None:
        """Write this process's pid into the lock file, for the message another server shows.
        (Done after recovery, so that a folder recovery refuses to open is left unchanged.)"""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self) -> None:
        """Give the lock up (closing the file)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close_in_child(self) -> None:
        """In a forked child: drop its copy of the descriptor, so that the lock goes away
        with the parent even while the child still runs."""
        self.release()


class Segment:
    """One log segment open for appending. Every write and fsync of the log goes through
    :meth:`write` and :meth:`sync` (tests inject disk failures there)."""

    def __init__(self, path: Path, number: int, fd: int, size: int) -> None:
        self.path = path
        self.number = number
        self.fd = fd
        self.size = size

    @classmethod
    def create(cls, folder: Path, number: int) -> Segment:
        """A new, empty segment with its header written and made durable."""
        path = folder / segment_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            header = logformat.file_header(logformat.LOG_MAGIC)
            _write_all(fd, header)
            os.fsync(fd)
            fsync_folder(folder)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, number, fd, len(header))

    @classmethod
    def reopen(cls, path: Path, number: int, size: int) -> Segment:
        """An existing segment (already checked by recovery), appended to from ``size`` on."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        return cls(path, number, fd, size)

    def write(self, data: bytes) -> None:
        """Append ``data`` (all of it, or OSError)."""
        _write_all(self.fd, data)
        self.size += len(data)

    def sync(self) -> None:
        """fsync the segment: everything written so far survives power loss."""
        os.fsync(self.fd)

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes (undoing a failed, partial write)."""
        os.ftruncate(self.fd, size)
        self.size = size

    def close(self) -> None:
        """Close the file descriptor."""
        os.close(self.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Recovered:
    """What :func:`recover` found: the committed state and where to go on appending."""

    def __init__(self) -> None:
        self.snapshot: logformat.Snapshot | None = None
        self.snapshot_number = 0
        self.snapshot_bytes = 0
        self.commits: list[tuple[int, list[logformat.Write]]] = []
        # (number, size after recovery) of every live segment, oldest first.
        self.segments: list[tuple[int, int]] = []
        self.warnings: list[str] = []


class DataFolder:
    """The data folder: lock, file names, recovery, snapshots, and retiring old files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = FolderLock(self.path)

    def open(self) -> None:
        """Create the folder if needed and take its lock (DataDirError if it is in use)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except OSError as exc:
            raise DataDirError(f"cannot use data folder {self.path}: "
                               f"{exc.strerror or exc}") from None

    def close(self) -> None:
        """Release the lock."""
        self.lock.release()

    def numbered(self, pattern: re.Pattern) -> list[int]:
        """The numbers of the files whose names match ``pattern``, ascending."""
        found = []
        for name in os.listdir(self.path):
            match = pattern.fullmatch(name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    # -- recovery -----------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Read the newest snapshot and every live segment after it.

        A torn tail of the last segment is cut off (with a warning); anything else that is
        not intact raises DataDirError naming the file and byte offset, before any file is
        changed. Stray temp files and files older than the snapshot are removed only after
        everything read well.
        """
        result = Recovered()
        snapshots = self.numbered(SNAPSHOT_PATTERN)
        if snapshots:
            number = snapshots[-1]
            path = self.path / snapshot_name(number)
            data = self._read(path)
            try:
                result.snapshot = logformat.decode_snapshot(data)
            except FormatError as exc:
                raise self._damaged(path, exc) from None
            result.snapshot_number = number
            result.snapshot_bytes = len(data)
        numbers = [n for n in self.numbered(SEGMENT_PATTERN) if n >= result.snapshot_number]
        expected = numbers[0] if numbers else 0
        cut: tuple[Path, int] | None = None
        for index, number in enumerate(numbers):
            path = self.path / segment_name(number)
            if number != expected:
                raise DataDirError(
                    f"log segment {segment_name(expected)} is missing from {self.path} "
                    f"(found {path.name} after it); refusing to start with commits missing"
                )
            expected += 1
            size = self._read_segment(path, index == len(numbers) - 1, result)
            if size < path.stat().st_size:
                cut = (path, size)
            result.segments.append((number, size))
        if cut is not None:
            path, size = cut
            os.truncate(path, size)
            if size == 0:
                path.unlink()
                result.segments.pop()
        self._remove_leftovers(result.snapshot_number)
        return result

    def _read_segment(self, path: Path, last: bool, result: Recovered) -> int:
        """Collect one segment's commits into ``result``; return the size to keep."""
        data = self._read(path)
        try:
            logformat.check_header(data, logformat.LOG_MAGIC)
        except FormatError as exc:
            # A crash while a new segment was being created leaves a short or zeroed header.
            if not last or (len(data) >= logformat.HEADER_SIZE and data.strip(b"\0")):
                raise self._damaged(path, exc) from None
            result.warnings.append(
                f"{path.name}: the last log segment has no complete header ({len(data)} "
                "bytes, left by a crash while it was created); removed"
            )
            return 0
        scan = logformat.scan_records(data)
        try:
            result.commits += logformat.decode_commits(scan.payloads)
        except FormatError as exc:
            raise self._damaged(path, exc) from None
        if scan.problem == "corrupt" or (scan.problem == "torn" and not last):
            raise self._damaged(path, FormatError(
                f"damaged record at byte offset {scan.problem_offset} with intact data after it"))
        if scan.problem == "torn":
            result.warnings.append(
                f"{path.name}: the last record is incomplete (torn write at byte offset "
                f"{scan.end}, {len(data) - scan.end} bytes); cut off, every commit before it "
                "was recovered"
            )
        return scan.end

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataDirError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _damaged(self, path: Path, exc: FormatError) -> DataDirError:
        return DataDirError(
            f"{path} is damaged: {exc}. Refusing to start; no file was changed. Restore the "
            "folder from a backup, or move the damaged file away to start without its data"
        )

    def _remove_leftovers(self, snapshot_number: int) -> None:
        removed = False
        for name in os.listdir(self.path):
            stale = name.endswith(TEMP_SUFFIX)
            for pattern in (SEGMENT_PATTERN, SNAPSHOT_PATTERN):
                match = pattern.fullmatch(name)
                if match and int(match.group(1)) < snapshot_number:
                    stale = True
            if stale:
                log.info("removing %s from %s (left over by an earlier run)", name, self.path)
                (self.path / name).unlink()
                removed = True
        if removed:
            fsync_folder(self.path)

    # -- snapshots and retiring ---------------------------------------------------------

    def write_snapshot(self, number: int, pieces: Iterable[bytes]) -> None:
        """Write a snapshot durably: temp file, fsync, rename into place, fsync the folder."""
        final = self.path / snapshot_name(number)
        temp = final.with_name(final.name + TEMP_SUFFIX)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for piece in pieces:
                _write_all(fd, piece)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.publish_snapshot(temp, final)

    def publish_snapshot(self, temp: Path, final: Path) -> None:
        """Rename a complete, fsynced snapshot into place and make the rename durable."""
        os.replace(temp, final)
        fsync_folder(self.path)

    def retire_before(self, number: int) -> None:
        """Remove every segment and snapshot older than snapshot ``number`` (now durable)."""
        for old in self.numbered(SEGMENT_PATTERN):
            if old < number:
                self.remove_file(segment_name(old))
        for old in self.numbered(SNAPSHOT_PATTERN):
            if old < number:
                self.remove_file(snapshot_name(old))
        fsync_folder(self.path)

    def remove_file(self, name: str) -> None:
        """Remove one file of the folder (a missing one is fine)."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / name).unlink()
