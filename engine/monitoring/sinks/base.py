"""Sink base class: a bounded queue drained by a background task, never blocking callers."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

import anyio

from engine.monitoring.records import STREAMS, Record, Stream
from engine.registry import Registry

__all__ = ["SINKS", "Sink", "SinkConfig", "SinkOptions"]

_log = logging.getLogger("engine.monitoring")

MAX_BATCH = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkOptions:
    """Options shared by every sink type.

    :param streams: which record streams the sink takes.
    :param queue_size: bound of the sink's queue; records beyond it are dropped and counted.
    """

    streams: tuple[Stream, ...] = ("security", "errors", "lifecycle")
    queue_size: int = 10_000

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> Self:
        """Build from a schema-valid ``[monitoring.sinks.<id>]`` table."""
        return cls(**cls._common(mapping))

    @classmethod
    def _common(cls, mapping: Mapping[str, object]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        streams = mapping.get("streams")
        if streams is not None:
            if not isinstance(streams, list | tuple):
                raise TypeError("streams must be a list")
            bad = [s for s in streams if s not in STREAMS]
            if bad:
                raise ValueError(f"unknown streams {bad!r}; expected any of {list(STREAMS)}")
            out["streams"] = tuple(streams)
        queue_size = mapping.get("queue_size")
        if queue_size is not None:
            if not isinstance(queue_size, int) or queue_size < 1:
                raise ValueError("queue_size must be an integer >= 1")
            out["queue_size"] = queue_size
        return out


OptT = TypeVar("OptT", bound=SinkOptions)

DropCallback = Callable[[str, int], None]


class Sink(abc.ABC, Generic[OptT]):
    """A destination for monitoring records.

    :meth:`offer` is synchronous and never blocks: a full queue drops the record and reports it
    through ``on_drop(sink_id, n)``. :meth:`run` drains the queue in batches into :meth:`write`.
    """

    type_name: ClassVar[str]
    options_type: ClassVar[type[SinkOptions]]
    EXAMPLE: ClassVar[str]

    def __init__(self, sink_id: str, options: OptT, on_drop: DropCallback | None = None) -> None:
        self.id = sink_id
        self.options = options
        self.streams: frozenset[str] = frozenset(options.streams)
        self._on_drop = on_drop
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=options.queue_size)
        self._write_lock: anyio.Lock | None = None
        self.dropped = 0
        self.write_errors = 0
        self.closed = False

    @property
    def queued(self) -> int:
        """Records waiting in the queue."""
        return self._queue.qsize()

    def accepts(self, stream: str) -> bool:
        """Whether this sink takes ``stream``."""
        return stream in self.streams

    def offer(self, record: Record) -> bool:
        """Enqueue ``record`` without blocking; drop and count it when the queue is full."""
        if self.closed:
            self._drop(1)
            return False
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._drop(1)
            return False
        return True

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self._on_drop is not None:
            self._on_drop(self.id, n)

    async def run(self) -> None:
        """Drain the queue forever (until cancelled); write errors are logged, never raised."""
        while True:
            first = await self._queue.get()
            batch = self._take(first)
            with anyio.CancelScope(shield=True):  # a taken batch is always written
                await self._write_batch(batch)

    def _take(self, first: Record | None = None) -> list[Record]:
        batch: list[Record] = [] if first is None else [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _write_batch(self, batch: Sequence[Record]) -> None:
        if not batch:
            return
        if self._write_lock is None:
            self._write_lock = anyio.Lock()
        async with self._write_lock:
            try:
                await self.write(batch)
            except Exception:
                self.write_errors += 1
                _log.exception("monitoring sink %r failed to write %d records", self.id, len(batch))

    async def flush(self) -> None:
        """Write everything still queued (shielded from cancellation)."""
        with anyio.CancelScope(shield=True):
            while True:
                batch = self._take()
                if not batch:
                    return
                await self._write_batch(batch)

    async def aclose(self) -> None:
        """Flush, then release resources; further offers are dropped."""
        if self.closed:
            return
        await self.flush()
        self.closed = True
        try:
            self.close_resources()
        except Exception:
            _log.exception("monitoring sink %r failed to close", self.id)

    @abc.abstractmethod
    async def write(self, records: Sequence[Record]) -> None:
        """Deliver one batch; may raise (the caller logs and counts)."""

    def close_resources(self) -> None:
        """Release files, sockets, handlers."""


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """One ``[monitoring.sinks.<id>]`` entry: id, type and its typed options."""

    id: str
    type: str
    options: SinkOptions


SINKS: Registry[type[Sink[Any]]] = Registry("sink")
