"""`[progress]`: progress channels for long-running tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProgressOptions:
    """:param namespace: where clients `join_task` / `leave_task` / `cancel_task`.
    :param max_updates_per_second: most `task_progress` events per task (coalesced, last state
        wins; terminal events are never dropped).
    :param retain_seconds: how long a finished task stays (late subscribers get its result).
    :param subscriber_roles: roles that may watch (and cancel) any task; others only their own.
    :param allow_cancel: whether `cancel_task` is accepted.
    :param max_tasks: most tasks kept at once (the oldest finished ones go first).
    """

    enabled: bool = False
    namespace: str = "/"
    max_updates_per_second: float = 10.0
    retain_seconds: float = 300.0
    subscriber_roles: frozenset[str] = frozenset()
    allow_cancel: bool = True
    max_tasks: int = 10_000

    @classmethod
    def from_profile(cls, table: Mapping[str, Any]) -> ProgressOptions:
        return cls(
            enabled=bool(table["enabled"]),
            namespace=str(table["namespace"]),
            max_updates_per_second=float(table["max_updates_per_second"]),
            retain_seconds=float(table["retain_seconds"]),
            subscriber_roles=frozenset(table["subscriber_roles"]),
            allow_cancel=bool(table["allow_cancel"]),
            max_tasks=int(table["max_tasks"]),
        )


def serves_tasks(options: ProgressOptions, namespace: str) -> bool:
    """Whether `join_task` / `leave_task` / `cancel_task` are built-ins in `namespace` (elsewhere
    they are ordinary event names a profile may declare)."""
    return options.enabled and options.namespace == namespace
