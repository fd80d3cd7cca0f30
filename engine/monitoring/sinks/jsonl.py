"""``jsonl`` sink: one JSON object per line, size-based rotation, safe across threads and processes.

Concurrency protocol (every writer, in any thread or process, follows it):

- each line is written with a single ``os.write`` on an ``O_APPEND`` descriptor, so concurrent
  appends never interleave inside a line;
- writes hold a *shared* ``flock`` on ``<path>.lock``; rotation holds it *exclusively*, so no
  write is in flight while files are renamed;
- under the shared lock a writer first checks that its descriptor is still ``<path>`` (same inode)
  and reopens it otherwise, so after another writer's rotation lines go to the new file.

``max_bytes`` is a soft bound: writers appending at the same moment may overshoot it by their
in-flight lines. Files are ``path``, ``path.1`` (newest rotated) ... ``path.<retention>``.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import anyio.to_thread

from engine.monitoring.records import Record
from engine.monitoring.sinks.base import SINKS, DropCallback, Sink, SinkOptions

__all__ = ["JsonlOptions", "JsonlSink", "JsonlWriter"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonlOptions(SinkOptions):
    """Options of a ``jsonl`` sink.

    :param path: file to append to.
    :param max_bytes: rotate before a line would make the file larger than this (0: never).
    :param retention: how many rotated files to keep.
    """

    path: str
    max_bytes: int = 100 * 1024 * 1024
    retention: int = 5

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> Self:
        """Build from a schema-valid ``[monitoring.sinks.<id>]`` table of type ``jsonl``."""
        path = mapping.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("jsonl sink needs a non-empty path")
        max_bytes = mapping.get("max_bytes", 100 * 1024 * 1024)
        retention = mapping.get("retention", 5)
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError("max_bytes must be an integer >= 0")
        if not isinstance(retention, int) or retention < 0:
            raise ValueError("retention must be an integer >= 0")
        return cls(path=path, max_bytes=max_bytes, retention=retention, **cls._common(mapping))


class JsonlWriter:
    """Synchronous, thread- and process-safe appender with rotation (see module docstring).

    :param path: the log file.
    :param max_bytes: rotation size (0 disables rotation).
    :param retention: rotated files kept.
    """

    def __init__(self, path: str, max_bytes: int, retention: int) -> None:
        self.path = os.path.abspath(path)
        self.max_bytes = max_bytes
        self.retention = retention
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._mutex = threading.Lock()

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append complete lines (each must end with ``\\n``), rotating as needed."""
        with self._mutex:
            if self._lock_fd is None:
                parent = os.path.dirname(self.path)
                if parent:
                    os.makedirs(parent, exist_ok=True)
                self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o640)
            i = 0
            while i < len(lines):
                i = self._write_some(lines, i)
                if i < len(lines):
                    self._rotate_if_needed(len(lines[i]))

    def _write_some(self, lines: Sequence[bytes], start: int) -> int:
        """Write lines from ``start`` under the shared lock; stop at one that needs rotation."""
        assert self._lock_fd is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        try:
            fd = self._current_fd()
            i = start
            while i < len(lines):
                line = lines[i]
                if self.max_bytes:
                    size = os.fstat(fd).st_size  # others append too: re-read every line
                    if size > 0 and size + len(line) > self.max_bytes:
                        break
                _write_all(fd, line)
                i += 1
            return i
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _rotate_if_needed(self, incoming: int) -> None:
        assert self._lock_fd is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            fd = self._current_fd()
            size = os.fstat(fd).st_size
            if size > 0 and size + incoming > self.max_bytes:
                self._rotate()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _rotate(self) -> None:
        """Shift ``path.k`` to ``path.k+1`` and ``path`` to ``path.1``; caller holds LOCK_EX."""
        if self.retention <= 0:
            os.unlink(self.path)
        else:
            last = 0
            while last < self.retention and os.path.exists(f"{self.path}.{last + 1}"):
                last += 1
            if last == self.retention:
                os.unlink(f"{self.path}.{last}")
                last -= 1
            for k in range(last, 0, -1):
                os.replace(f"{self.path}.{k}", f"{self.path}.{k + 1}")
            os.replace(self.path, f"{self.path}.1")
        self._reopen()

    def _current_fd(self) -> int:
        """Descriptor for the file now at ``path`` (reopened if someone rotated it away)."""
        if self._fd is not None:
            try:
                on_disk = os.stat(self.path)
                mine = os.fstat(self._fd)
                if (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev):
                    return self._fd
            except FileNotFoundError:
                pass
        return self._reopen()

    def _reopen(self) -> int:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return self._fd

    def close(self) -> None:
        """Close descriptors."""
        with self._mutex:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = None
            self._lock_fd = None


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # only on errors such as a full disk; cannot be atomic then
        written += os.write(fd, data[written:])


def encode_line(record: Record) -> bytes:
    """One record as a compact JSON line."""
    text = json.dumps(record.to_json(), separators=(",", ":"), default=str, ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


@SINKS.register("jsonl")
class JsonlSink(Sink[JsonlOptions]):
    """Appends records as JSON lines to a rotating file, off the event loop."""

    type_name = "jsonl"
    options_type = JsonlOptions
    EXAMPLE = (
        '[monitoring.sinks.audit]\ntype = "jsonl"\npath = "logs/security.jsonl"\n'
        'max_bytes = 10485760\nretention = 5\nstreams = ["security", "errors", "lifecycle"]\n'
    )

    def __init__(
        self, sink_id: str, options: JsonlOptions, on_drop: DropCallback | None = None
    ) -> None:
        super().__init__(sink_id, options, on_drop)
        self.writer = JsonlWriter(options.path, options.max_bytes, options.retention)

    async def write(self, records: Sequence[Record]) -> None:
        """Encode on the loop (cheap), write in a worker thread."""
        lines = [encode_line(r) for r in records]
        await anyio.to_thread.run_sync(self.writer.write_lines, lines)

    def close_resources(self) -> None:
        """Close the file."""
        self.writer.close()
