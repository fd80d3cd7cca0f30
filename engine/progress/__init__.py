"""Progress channels: tasks with a state, coalesced updates, retention and cancellation.

- `options`: `[progress]`;
- `task`: the pure state (`TaskState`), the ETA and the coalescing rule;
- `hub`: `ProgressHub`, the engine's tasks (`engine.progress.publish(...)`).
"""

from engine.progress.hub import ProgressHub, TaskHandle, TooManyTasks, task_room
from engine.progress.options import ProgressOptions
from engine.progress.task import EVENTS, TERMINAL, TaskState, task_id_of

__all__ = [
    "EVENTS",
    "TERMINAL",
    "ProgressHub",
    "ProgressOptions",
    "TaskHandle",
    "TaskState",
    "TooManyTasks",
    "task_id_of",
    "task_room",
]
