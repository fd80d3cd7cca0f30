"""The engine's namespace wrapper and the thin base class users may subclass.

Each declared namespace is served by one `EngineNamespace`. It joins the declared rooms,
answers the built-in `join_room` / `leave_room` events, and forwards everything else to the
user's handler: any plain `socketio.AsyncNamespace` subclass, used unchanged.
"""

from __future__ import annotations

import importlib
from typing import Any

import socketio

from engine.auth import ANONYMOUS, Identity
from engine.chain.rooms import BUILTIN_EVENTS, room_of
from engine.profile.model import NamespaceSpec
from engine.progress import task_id_of, task_room
from engine.progress.options import serves_tasks
from engine.progress.task import TASK_EVENTS
from engine.refusal import Refusal
from engine.runtime import RuntimeRef

__all__ = ["BUILTIN_EVENTS", "EngineNamespace", "Namespace", "import_handler"]


class Namespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Optional base class for handlers: a plain AsyncNamespace plus engine facts.

    Handlers need not inherit from it; `socketio.AsyncNamespace` subclasses work unchanged.
    """

    def rooms_of(self, sid: str) -> list[str]:
        """Rooms `sid` is in within this namespace (including its own sid room)."""
        rooms: list[str] = self.server.rooms(sid, namespace=self.namespace)
        return rooms

    def identity(self, sid: str) -> Identity:
        """Who `sid` authenticated as (`user_id` None when anonymous)."""
        member = self.server.guard.member(self.namespace, sid)
        return member.identity if member is not None else ANONYMOUS


def import_handler(target: str) -> type[Any]:
    module_name, _, class_name = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module_name), class_name)
    return cls


class EngineNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Serves one declared namespace; the user's handler (if any) sits behind it."""

    def __init__(self, name: str, ref: RuntimeRef) -> None:
        super().__init__(name)
        self.name = name
        self.ref = ref
        self._last_spec = ref.runtime.namespaces[name]
        self.handler: socketio.AsyncNamespace | None = None
        if self._last_spec.handler:
            self.handler = import_handler(self._last_spec.handler)(name)
        self.client_rooms: dict[str, set[str]] = {}

    @property
    def spec(self) -> NamespaceSpec:
        """This namespace's rules in the current runtime (the last ones once it is removed)."""
        spec = self.ref.runtime.namespaces.get(self.name)
        if spec is not None:
            self._last_spec = spec
        return self._last_spec

    def joined_count(self, sid: str) -> int:
        return len(self.client_rooms.get(sid, ()))

    def _set_server(self, server: Any) -> None:
        super()._set_server(server)
        if self.handler is not None:
            self.handler._set_server(server)

    def facts(self, sid: str) -> dict[str, str | None]:
        member = self.server.guard.member(self.name, sid)
        user = member.identity.user_id if member is not None else None
        return {"sid": sid, "namespace": self.name, "user.id": user}

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect":
            return await self._connect(*args)
        if event == "disconnect":
            await self.server.suspend(self, args[0], self.client_rooms.get(args[0], set()))
            self.client_rooms.pop(args[0], None)
            return await self._forward(event, *args)
        if event == "join_room":
            return await self._join(args[0], args[1] if len(args) > 1 else None)
        if event == "leave_room":
            return await self._leave(args[0], args[1] if len(args) > 1 else None)
        if event in TASK_EVENTS and serves_tasks(self.ref.runtime.profile.progress, self.name):
            return await self._task(event, args[0], args[1] if len(args) > 1 else None)
        return await self._forward(event, *args)

    async def _forward(self, event: str, *args: Any) -> Any:
        if self.handler is None:
            return self.server.not_handled
        return await self.handler.trigger_event(event, *args)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
        await self.server.admit(self, sid, environ, auth)
        if self.handler is not None:
            try:
                result = await self._user_connect(sid, environ, auth)
            except BaseException:
                await self.server.guard.disconnected(self.name, sid)
                raise
            if result is False:
                await self.server.guard.disconnected(self.name, sid)
                return False
        # a recovered session gets its rooms and missed events once nothing can refuse it
        joined = await self.server.resume(self, sid)
        facts = self.facts(sid)
        for template in self.spec.auto_join:
            room = template.render(facts)
            if room is not None:
                await self.enter_room(sid, room)
        self.client_rooms[sid] = set(joined or ())
        self.server.monitor.connection_opened(self.name)
        return None

    async def _user_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> Any:
        """The handler's `on_connect`, with or without the `auth` argument (both are legal)."""
        assert self.handler is not None
        try:
            return await self.handler.trigger_event("connect", sid, environ, auth)
        except TypeError:
            if auth is not None:
                raise
            return await self.handler.trigger_event("connect", sid, environ)

    def _room_from(self, data: Any) -> str:
        room = room_of([data])
        if room is None:  # the chain's rooms policy refused it already; kept for safety
            raise Refusal("invalid_payload", "room must be a non-empty printable string")
        return room

    async def _join(self, sid: str, data: Any) -> dict[str, Any]:
        """The chain's `rooms` policy has allowed this room; only bookkeeping is left."""
        room = self._room_from(data)
        self.client_rooms.setdefault(sid, set()).add(room)
        await self.enter_room(sid, room)
        return {"ok": True, "room": room}

    async def _task(self, event: str, sid: str, data: Any) -> dict[str, Any]:
        """`join_task` / `leave_task` / `cancel_task`, once the chain's `progress` policy has
        allowed them; whether the task may be watched is the hub's to say (owner or role)."""
        task_id = task_id_of([data])
        if task_id is None:  # the chain refused it already; kept for safety
            raise Refusal("invalid_payload", "task_id must be 1-128 of A-Za-z0-9_.:-")
        hub = self.server.progress
        member = self.server.guard.member(self.name, sid)
        identity = member.identity if member is not None else ANONYMOUS
        room = task_room(task_id)
        joined = self.client_rooms.setdefault(sid, set())
        if event == "leave_task":
            if room not in joined:
                raise Refusal(
                    "forbidden", f"task '{task_id[:64]}' was not joined", policy="progress"
                )
            joined.discard(room)
            await self.leave_room(sid, room)
            return {"ok": True, "task_id": task_id}
        if event == "cancel_task":
            state = hub.request_cancel(task_id, identity)
            return {"ok": True, "task_id": task_id, "cancel_requested": state.cancel_requested}
        state = hub.watch(task_id, identity)
        joined.add(room)
        await self.enter_room(sid, room)
        latest = state.public(hub.wall_clock())
        await self.server.emit(state.event, latest, to=sid, namespace=self.name)
        return {"ok": True, "task_id": task_id, "state": latest}

    async def _leave(self, sid: str, data: Any) -> dict[str, Any]:
        room = self._room_from(data)
        joined = self.client_rooms.get(sid, set())
        if room not in joined:
            raise Refusal("forbidden", f"room '{room[:64]}' was not joined with join_room")
        joined.discard(room)
        await self.leave_room(sid, room)
        return {"ok": True, "room": room}
