"""What connected clients experience when the runtime or the lifecycle changes.

- A reload adds namespaces (they start accepting connections) and removes them (their
  clients get an `error` event with code `namespace_removed`, then a disconnect).
- Maintenance turned on by a reload: connected clients that the new profile does not admit
  receive a `maintenance` event; under `existing = "disconnect"` they are disconnected after
  `grace_seconds` (Socket.IO-level, so the official clients do not hammer the node with
  reconnects), unless maintenance is turned off first. Admitted clients notice nothing.
- Drain (SIGTERM): every client receives `server_draining`, then its transport is closed at
  the Engine.IO level (the official clients reconnect, to another node behind a balancer),
  the closes spread evenly over `drain_seconds` so the other nodes see no reconnect storm.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from engine.refusal import Refusal
from engine.reload import ReloadReport
from engine.runtime import Runtime

if TYPE_CHECKING:
    from engine.server import EngineServer

log = logging.getLogger("engine.lifecycle")


class Transitions:
    """The server's client-facing side of reloads, maintenance and drain."""

    def __init__(self, sio: EngineServer) -> None:
        self.sio = sio
        self.maintenance_disconnects: asyncio.Task[None] | None = None
        self.drain_closes: list[float] = []  # loop time of each drain close (measured spread)

    async def runtime_changed(self, old: Runtime, new: Runtime, report: ReloadReport) -> None:
        sio = self.sio
        for name in report.namespaces_added:
            sio.add_namespace(name)
        for name in report.namespaces_removed:
            count = await sio.remove_namespace(
                name, "namespace_removed", f"namespace {name} was removed by a reload"
            )
            log.info("namespace %s removed by a reload: %d clients disconnected", name, count)
        before, after = old.maintenance, new.maintenance
        if not after.enabled:
            self._cancel_disconnects()
        elif before != after:
            await self.maintenance_started(new)

    def _cancel_disconnects(self) -> None:
        task, self.maintenance_disconnects = self.maintenance_disconnects, None
        if task is not None:
            task.cancel()

    def _not_admitted(self, runtime: Runtime) -> list[tuple[str, str]]:
        maintenance = runtime.maintenance
        return [
            (member.namespace, member.sid)
            for member in list(self.sio.guard.members.values())
            if not maintenance.admits(member.namespace, member.identity.roles)
        ]

    async def maintenance_started(self, runtime: Runtime) -> None:
        maintenance = runtime.maintenance
        notice = maintenance.notice()
        targets = self._not_admitted(runtime)
        for namespace, sid in targets:
            await self.sio.notify(namespace, sid, "maintenance", notice)
        log.info("maintenance on: %d connections notified", len(targets))
        self._cancel_disconnects()
        if maintenance.existing == "disconnect":
            self.maintenance_disconnects = asyncio.get_running_loop().create_task(
                self._disconnect_after(maintenance.grace_seconds)
            )

    async def _disconnect_after(self, grace: float) -> None:
        await asyncio.sleep(grace)  # the declared grace period, not a race cover
        runtime = self.sio.runtime
        if not runtime.maintenance.enabled:
            return
        targets = self._not_admitted(runtime)
        message = runtime.maintenance.message
        retry = runtime.maintenance.retry_after_seconds
        for namespace, sid in targets:
            refusal = Refusal("maintenance", message, retry)
            await self.sio.notify_and_disconnect(namespace, sid, refusal)
        log.info("maintenance: %d connections disconnected after the grace period", len(targets))

    async def drain(self, seconds: float) -> None:
        """Notify everyone, then close the transports spread evenly over `seconds`."""
        sio = self.sio
        loop = asyncio.get_running_loop()
        notice = {
            "message": "this node is shutting down; reconnect to continue",
            "reconnect": True,
            "drain_seconds": seconds,
        }
        for namespace in list(sio.engine_namespaces):
            await sio.broadcast("server_draining", notice, namespace)
        sessions = list(sio.eio.sockets)
        interval = seconds / len(sessions) if sessions else 0.0
        started = loop.time()
        for index, eio_sid in enumerate(sessions):
            due = started + index * interval
            if due > loop.time():
                await asyncio.sleep(due - loop.time())  # the declared spread, not a race cover
            self.drain_closes.append(loop.time())
            await sio.close_transport(eio_sid)
