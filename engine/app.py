"""`build_app(profile)`: the ASGI application, Socket.IO plus the engine's HTTP routes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import socketio

from engine.lifecycle import Lifecycle
from engine.monitoring import Monitor
from engine.profile.model import Profile
from engine.server import EngineServer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Route = Callable[[Scope], Awaitable[tuple[int, dict[str, Any]]]]


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@dataclass(slots=True)
class Engine:
    """One assembled engine: the Socket.IO server, its lifecycle and its ASGI app."""

    profile: Profile
    sio: EngineServer
    monitor: Monitor
    lifecycle: Lifecycle
    routes: dict[str, Route] = field(default_factory=dict)
    app: ASGIApp | None = None

    def status(self) -> dict[str, Any]:
        return {
            "profile": self.profile.engine.name,
            "environment": self.profile.engine.environment,
            "config_hash": self.profile.config_hash,
            "phase": self.lifecycle.phase.value,
        }

    async def healthz(self, scope: Scope) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "healthy", **self.status()}

    async def readyz(self, scope: Scope) -> tuple[int, dict[str, Any]]:
        if self.lifecycle.ready:
            return 200, {"status": "ready", **self.status()}
        return 503, {"status": self.lifecycle.phase.value, **self.status()}

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Readiness is driven by `engine.serve`, so lifespan only has to be acknowledged."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        route = self.routes.get(scope["path"])
        if route is None:
            await send_json(send, 404, {"error": {"code": "not_found", "message": "not found"}})
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(
                send, 405, {"error": {"code": "method_not_allowed", "message": "GET only"}}
            )
            return
        status, body = await route(scope)
        await send_json(send, status, body)


def declared_events(profile: Profile) -> dict[str, frozenset[str]]:
    return {
        name: frozenset(spec.events or ()) | {"join_room", "leave_room"}
        for name, spec in profile.namespaces.items()
    }


def build_app(profile: Profile, lifecycle: Lifecycle | None = None) -> Engine:
    """Assemble the engine for `profile`; `engine.app` is what hypercorn serves."""
    monitor = Monitor(
        profile.monitoring,
        profile_name=profile.engine.name,
        config_hash=profile.config_hash,
        declared_events=declared_events(profile),
    )
    sio = EngineServer(profile, monitor)
    engine = Engine(profile=profile, sio=sio, monitor=monitor, lifecycle=lifecycle or Lifecycle())
    engine.routes = {"/healthz": engine.healthz, "/readyz": engine.readyz}
    engine.app = socketio.ASGIApp(
        sio, other_asgi_app=engine.http, socketio_path=profile.server.path.strip("/")
    )
    return engine
