"""`build_app(profile)`: the ASGI application, Socket.IO plus the engine's HTTP routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import socketio

from engine.cluster.broker import RedisBroker, build_client_manager
from engine.cluster.workers import node_identity
from engine.fastpath import install_socket
from engine.hardening import handshake_gate, install_frame_limit, set_websocket_compression
from engine.http_routes import (
    ASGIApp,
    DashboardRoutes,
    Receive,
    Request,
    Response,
    Route,
    Router,
    Scope,
    Send,
    dispatch,
    metrics_binds,
    metrics_routes,
)
from engine.lifecycle import Lifecycle
from engine.monitoring import Monitor
from engine.profile.model import Profile
from engine.runtime import Runtime, RuntimeRef
from engine.server import EngineServer


@dataclass(slots=True)
class Engine:
    """One assembled engine: the Socket.IO server, its lifecycle and its ASGI app.

    `ref` is the one reference to the current `Runtime`; everything that decides reads it.
    """

    ref: RuntimeRef
    sio: EngineServer
    monitor: Monitor
    lifecycle: Lifecycle
    routes: dict[str, Route] = field(default_factory=dict)
    app: ASGIApp | None = None
    metrics_listeners: dict[str, Router] = field(default_factory=dict)
    broker: RedisBroker | None = None  # the cluster broker (adapter = "redis")

    @property
    def profile(self) -> Profile:
        return self.ref.runtime.profile

    @property
    def runtime(self) -> Runtime:
        return self.ref.runtime

    def status(self) -> dict[str, Any]:
        return {
            "profile": self.profile.engine.name,
            "environment": self.profile.engine.environment,
            "config_hash": self.profile.config_hash,
            "phase": self.lifecycle.phase.value,
        }

    def health(self) -> dict[str, Any]:
        """`status` is the health status (healthy | degraded | unhealthy), `ready` the phase's."""
        report = self.monitor.health(self.monitor.now())
        return {
            "status": report.status,
            "reasons": list(report.reasons),
            "ready": self.lifecycle.ready and report.status != "unhealthy",
            **self.status(),
        }

    async def healthz(self, request: Request) -> Response:
        """Liveness: 200 unless unhealthy."""
        body = self.health()
        return Response.json(503 if body["status"] == "unhealthy" else 200, body)

    async def readyz(self, request: Request) -> Response:
        """Readiness: 503 while starting, draining or unhealthy."""
        body = self.health()
        return Response.json(200 if body["ready"] else 503, body)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await dispatch(self.routes, scope, receive, send)


def declared_events(profile: Profile) -> dict[str, frozenset[str]]:
    return {
        name: frozenset(spec.events or ()) | {"join_room", "leave_room"}
        for name, spec in profile.namespaces.items()
    }


def secure_admin_cookie(profile: Profile) -> bool:
    """The admin cookie is `Secure` unless a development profile serves plain HTTP."""
    return profile.server.tls_cert_file is not None or profile.engine.environment != "development"


def build_app(profile: Profile, lifecycle: Lifecycle | None = None) -> Engine:
    """Assemble the engine for `profile`; `engine.app` is what hypercorn serves."""
    monitor = Monitor(
        profile.monitoring,
        profile_name=profile.engine.name,
        config_hash=profile.config_hash,
        declared_events=declared_events(profile),
    )
    ref = RuntimeRef(Runtime.build(profile))
    # cluster broker: None keeps python-socketio's in-memory manager
    broker = build_client_manager(profile.cluster, monitor, node_identity(profile.cluster))
    sio = EngineServer(ref, monitor, client_manager=broker)
    engine = Engine(ref=ref, sio=sio, monitor=monitor, lifecycle=lifecycle or Lifecycle())
    engine.broker = broker
    dashboard = DashboardRoutes(monitor, secure_cookie=secure_admin_cookie(profile))
    engine.routes = {
        **metrics_routes(monitor, None),
        **dashboard.routes(),
        "/healthz": Route(engine.healthz),
        "/readyz": Route(engine.readyz),
    }
    engine.metrics_listeners = {
        bind: Router(metrics_routes(monitor, bind)) for bind in metrics_binds(monitor)
    }
    socketio_app = socketio.ASGIApp(
        sio, other_asgi_app=engine.http, socketio_path=profile.server.path.strip("/")
    )
    install_frame_limit()
    install_socket()
    set_websocket_compression(profile.server.websocket_compression)
    engine.app = handshake_gate(
        socketio_app, sio.guard, profile.server.path, profile.server.max_payload_bytes
    )
    return engine
