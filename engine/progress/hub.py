"""`ProgressHub`: the engine's tasks, their subscribers' rooms and the coalesced emission.

Publishers call `publish` (synchronous, cheap: a tight loop only replaces the pending state);
at most `max_updates_per_second` `task_progress` events per task go out, each with the latest
state, and a terminal state goes out at once and is never dropped. Events are sent in order by
one sender task, to the room `@task:<id>` of the progress namespace, through the server's
`emit`, so they are recoverable events when that namespace declares recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from engine.auth import Identity
from engine.progress.options import ProgressOptions
from engine.progress.task import Status, TaskState, next_send, valid_task_id
from engine.refusal import Refusal

log = logging.getLogger("engine.progress")

ROOM_PREFIX = "@task:"
Emit = Callable[[str, dict[str, Any], str, str], Awaitable[None]]


def task_room(task_id: str) -> str:
    """The room a task's subscribers are in (`@` rooms cannot be joined with join_room)."""
    return ROOM_PREFIX + task_id


class TooManyTasks(Exception):
    """`max_tasks` tasks are running: a new one is refused."""


@dataclass(slots=True)
class _Task:
    state: TaskState
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    last_sent: float | None = None
    timer: asyncio.TimerHandle | None = None
    forget: asyncio.TimerHandle | None = None
    sent: int = 0


@dataclass(frozen=True, slots=True)
class TaskHandle:
    """What a publisher holds: the task's id and its cancellation request."""

    hub: ProgressHub
    task_id: str

    @property
    def cancel_requested(self) -> bool:
        state = self.hub.get(self.task_id)
        return state is not None and state.cancel_requested

    async def wait_cancelled(self) -> None:
        """Return once a subscriber (or the API) asked to cancel the task."""
        task = self.hub.tasks.get(self.task_id)
        if task is not None:
            await task.cancelled.wait()


class ProgressHub:
    """Tasks of one engine.

    :param options: the current runtime's `[progress]`.
    :param emit: `(event, payload, room, namespace)` -> sends it (the server's emit).
    """

    def __init__(
        self,
        options: Callable[[], ProgressOptions],
        emit: Emit,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self._emit = emit
        self.clock = clock
        self.wall_clock = wall_clock
        self.tasks: dict[str, _Task] = {}
        self._outbox: asyncio.Queue[tuple[str, TaskState]] | None = None
        self._sender: asyncio.Task[None] | None = None

    # -- publishing --------------------------------------------------------------------------

    def publish(
        self,
        task_id: str,
        *,
        owner: str | None = None,
        percent: float | None = None,
        message: str | None = None,
        data: Any = None,
        status: Status = "running",
        result: Any = None,
        error: Any = None,
    ) -> TaskHandle:
        """Create or update a task; ValueError for a bad id, percent or a finished task."""
        options = self.options()
        if not options.enabled:
            raise ValueError("[progress] is not enabled in the profile")
        if not valid_task_id(task_id):
            raise ValueError("task_id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        now = self.clock()
        task = self.tasks.get(task_id)
        if task is None:
            self._make_room(options)
            task = self.tasks[task_id] = _Task(TaskState(task_id, owner, started_at=now))
        elif owner is not None and task.state.owner is not None and owner != task.state.owner:
            raise ValueError(f"task {task_id!r} belongs to another owner")
        task.state = task.state.update(
            now,
            status=status,
            percent=percent,
            message=message,
            data=data,
            result=result,
            error=error,
        )
        if task.state.finished:
            self._finish(task, options, now)
        else:
            self._schedule(task, options, now)
        return TaskHandle(self, task_id)

    def complete(self, task_id: str, result: Any = None) -> TaskHandle:
        return self.publish(task_id, status="completed", result=result)

    def fail(self, task_id: str, error: Any = None) -> TaskHandle:
        return self.publish(task_id, status="failed", error=error)

    def cancelled(self, task_id: str, message: str | None = None) -> TaskHandle:
        return self.publish(task_id, status="cancelled", message=message)

    def get(self, task_id: str) -> TaskState | None:
        task = self.tasks.get(task_id)
        return task.state if task is not None else None

    def _make_room(self, options: ProgressOptions) -> None:
        if len(self.tasks) < options.max_tasks:
            return
        finished = [t for t in self.tasks.values() if t.state.finished]
        if not finished:
            raise TooManyTasks(f"{options.max_tasks} tasks are running")
        self._forget(min(finished, key=lambda t: t.state.updated_at).state.task_id)

    def _schedule(self, task: _Task, options: ProgressOptions, now: float) -> None:
        if task.timer is not None:
            return  # a send is already due: it will carry this (latest) state
        when = next_send(task.last_sent, now, options.max_updates_per_second)
        if when <= now:
            self._send(task, now)
        else:
            loop = asyncio.get_running_loop()
            task.timer = loop.call_later(when - now, self._flush, task.state.task_id)

    def _flush(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is not None:
            task.timer = None
            self._send(task, self.clock())

    def _finish(self, task: _Task, options: ProgressOptions, now: float) -> None:
        if task.timer is not None:  # the pending update is superseded by the terminal state
            task.timer.cancel()
            task.timer = None
        self._send(task, now)
        loop = asyncio.get_running_loop()
        task.forget = loop.call_later(options.retain_seconds, self._forget, task.state.task_id)

    def _forget(self, task_id: str) -> None:
        task = self.tasks.pop(task_id, None)
        if task is not None:
            for timer in (task.timer, task.forget):
                if timer is not None:
                    timer.cancel()

    def _send(self, task: _Task, now: float) -> None:
        task.last_sent = now
        task.sent += 1
        if self._outbox is None:
            self._outbox = asyncio.Queue()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._run_sender())
        self._outbox.put_nowait((self.options().namespace, task.state))

    async def _run_sender(self) -> None:
        assert self._outbox is not None
        while True:
            namespace, state = await self._outbox.get()
            try:
                await self._emit(
                    state.event,
                    state.public(self.wall_clock()),
                    task_room(state.task_id),
                    namespace,
                )
            except Exception:
                log.exception("sending %s of task %s failed", state.event, state.task_id)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        for task_id in list(self.tasks):
            self._forget(task_id)

    # -- subscribers -------------------------------------------------------------------------

    def _allowed(self, task_id: str, identity: Identity) -> _Task:
        task = self.tasks.get(task_id)
        options = self.options()
        if task is not None and (
            (task.state.owner is not None and task.state.owner == identity.user_id)
            or bool(identity.roles & options.subscriber_roles)
        ):
            return task
        raise Refusal(
            "forbidden", f"task '{task_id[:64]}' is unknown or not yours", policy="progress"
        )

    def watch(self, task_id: str, identity: Identity) -> TaskState:
        """May `identity` subscribe? The latest state (Refusal `forbidden` otherwise)."""
        return self._allowed(task_id, identity).state

    def request_cancel(self, task_id: str, identity: Identity | None) -> TaskState:
        """A cancellation request (from a subscriber, or the API when `identity` is None)."""
        task = self.tasks[task_id] if identity is None else self._allowed(task_id, identity)
        if task.state.finished:
            raise Refusal(
                "forbidden",
                f"task '{task_id[:64]}' is already {task.state.status}",
                policy="progress",
            )
        if not task.state.cancel_requested:
            task.state = replace(task.state, cancel_requested=True)
            task.cancelled.set()
            self._schedule(task, self.options(), self.clock())
        return task.state
