"""`progress`: the built-in `join_task` / `leave_task` / `cancel_task` events.

Where `[progress]` serves them (elsewhere they are ordinary event names), the static rules are
decided here (, a valid task id, cancelling
allowed); whether the task is the client's own (or its roles may watch any task) is decided by
`ProgressHub` after the chain, like a `leave_room` of a room never joined.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.chain import POLICIES
from engine.chain.base import EventScope, Request, Stage
from engine.policies.decision import ALLOW, Decision, Deny
from engine.profile.model import NamespaceSpec, Profile
from engine.progress.options import ProgressOptions, serves_tasks
from engine.progress.task import TASK_EVENTS, task_id_of
from engine.state import StateStore


@dataclass(frozen=True, slots=True)
class ProgressPolicy:
    options: ProgressOptions
    name: str = "progress"
    stages: frozenset[Stage] = frozenset({"event"})

    def event_scope(self, spec: NamespaceSpec) -> EventScope:
        """The task events, where `[progress]` serves them; elsewhere nothing."""
        served = serves_tasks(self.options, spec.name)
        return EventScope(TASK_EVENTS if served else frozenset())

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        if request.event not in TASK_EVENTS or request.namespace is None:
            return ALLOW
        options = self.options
        if not serves_tasks(options, request.namespace.name):
            return ALLOW  # an ordinary event name here
        if task_id_of(request.args) is None:
            return Deny(
                "invalid_payload", "task_id must be 1-128 of A-Z a-z 0-9 _ . : -", strike=True
            )
        if request.event == "cancel_task" and not options.allow_cancel:
            return Deny("forbidden", "tasks cannot be cancelled here", strike=True)
        if (
            request.event == "join_task"
            and request.joined_rooms >= request.namespace.max_client_rooms
        ):
            return Deny(
                "forbidden",
                f"at most {request.namespace.max_client_rooms} rooms per connection",
                strike=True,
            )
        return ALLOW


def _progress(profile: Profile) -> ProgressPolicy:
    return ProgressPolicy(profile.progress)


POLICIES.register("progress")(_progress)
