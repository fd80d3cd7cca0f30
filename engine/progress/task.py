"""A task's state, its ETA and the coalescing rule. Pure: time is an argument."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Status = Literal["running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
EVENTS: dict[str, str] = {
    "running": "task_progress",
    "completed": "task_completed",
    "failed": "task_failed",
    "cancelled": "task_cancelled",
}
TASK_EVENTS: frozenset[str] = frozenset({"join_task", "leave_task", "cancel_task"})
TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def valid_task_id(value: object) -> bool:
    return isinstance(value, str) and TASK_ID.fullmatch(value) is not None


def task_id_of(args: Any) -> str | None:
    """The task a `join_task` / `leave_task` / `cancel_task` names: `"id"` or `{"task_id": id}`."""
    data = args[0] if args else None
    task_id = data.get("task_id") if isinstance(data, dict) else data
    return task_id if valid_task_id(task_id) else None


@dataclass(frozen=True, slots=True)
class TaskState:
    """What subscribers see of a task (`public()`), and what the ETA is computed from."""

    task_id: str
    owner: str | None
    status: Status = "running"
    percent: float | None = None
    message: str | None = None
    data: Any = None
    result: Any = None
    error: Any = None
    cancel_requested: bool = False
    started_at: float = 0.0
    updated_at: float = 0.0
    # first (time, percent) sample: the ETA is the average rate since then
    first_sample: tuple[float, float] | None = field(default=None, repr=False)
    eta_seconds: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def event(self) -> str:
        return EVENTS[self.status]

    def public(self, wall_now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "status": self.status,
            "percent": self.percent,
            "message": self.message,
            "eta_seconds": self.eta_seconds,
            "data": self.data,
            "cancel_requested": self.cancel_requested,
            "updated_at": wall_now,
        }
        if self.status == "completed":
            out["result"] = self.result
        if self.status == "failed":
            out["error"] = self.error
        return out

    def update(
        self,
        now: float,
        *,
        status: Status = "running",
        percent: float | None = None,
        message: str | None = None,
        data: Any = None,
        result: Any = None,
        error: Any = None,
    ) -> TaskState:
        """The next state; a finished task does not change (ValueError)."""
        if self.finished:
            raise ValueError(f"task {self.task_id!r} is already {self.status}")
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError("percent must be within 0..100")
        new_percent = percent if percent is not None else self.percent
        if status == "completed" and percent is None:
            new_percent = 100.0
        first = self.first_sample
        if first is None and percent is not None:
            first = (now, percent)
        return replace(
            self,
            status=status,
            percent=new_percent,
            message=message if message is not None else self.message,
            data=data if data is not None else self.data,
            result=result,
            error=error,
            updated_at=now,
            first_sample=first,
            eta_seconds=eta(first, now, new_percent) if status == "running" else 0.0,
        )


def eta(first: tuple[float, float] | None, now: float, percent: float | None) -> float | None:
    """Seconds to 100 % at the average rate since the first sample (None: no rate yet)."""
    if first is None or percent is None:
        return None
    started, start_percent = first
    elapsed, done = now - started, percent - start_percent
    if elapsed <= 0 or done <= 0:
        return None
    return round((100.0 - percent) * elapsed / done, 3)


def next_send(last_sent: float | None, now: float, rate: float) -> float:
    """When a coalesced progress update may go out: at once, or one interval after the last."""
    if last_sent is None:
        return now
    return max(now, last_sent + 1.0 / rate)
