"""`build_app(profile)`: the ASGI application, Socket.IO plus the engine's HTTP routes."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio

from engine.client import client_routes
from engine.cluster.broker import RedisBroker, build_client_manager
from engine.cluster.workers import node_identity
from engine.lifecycle import Lifecycle
from engine.monitoring import Monitor
from engine.monitoring.sinks.prometheus import bearer_ok
from engine.policies.access import BUILTIN_EVENTS
from engine.profile.model import Profile
from engine.progress import ProgressHub
from engine.progress.options import serves_tasks
from engine.progress.task import TASK_EVENTS
from engine.publish import HISTORY_PATH, PUBLISH_PATH, PublishAPI
from engine.recovery import build_recovery_store
from engine.reload import ReloadReport, plan
from engine.runtime import Runtime, RuntimeRef
from engine.server import EngineServer
from engine.state import StateStore, build_store
from engine.transport.direct import DirectWebSockets
from engine.transport.direct import register as register_direct
from engine.transport.hardening import ACCEPT, WEBSOCKET, handshake_gate
from engine.transport.http import (
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
from engine.transport.patches import install as install_patches


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
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    store: StateStore | None = None  # policy state; `serve` starts and closes it
    broker: RedisBroker | None = None  # the cluster broker (adapter = "redis")

    @property
    def profile(self) -> Profile:
        return self.ref.runtime.profile

    @property
    def runtime(self) -> Runtime:
        return self.ref.runtime

    @property
    def progress(self) -> ProgressHub:
        """The engine's tasks: `engine.progress.publish(task_id, owner=..., percent=...)`."""
        return self.sio.progress

    def status(self) -> dict[str, Any]:
        return {
            "profile": self.profile.engine.name,
            "environment": self.profile.engine.environment,
            "config_hash": self.profile.config_hash,
            "phase": self.lifecycle.phase.value,
        }

    def health(self) -> dict[str, Any]:
        """`status` is the health status (healthy | degraded | unhealthy), `ready` the phase's.

        Under maintenance the node stays ready (it serves what is admitted) and says so.
        """
        report = self.monitor.health(self.monitor.now())
        reasons = list(report.reasons)
        maintenance = self.runtime.maintenance.enabled
        if maintenance:
            reasons.append("maintenance")
        return {
            "status": report.status,
            "reasons": reasons,
            "maintenance": maintenance,
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

    async def reload(self, path: Path | None = None) -> ReloadReport:
        """Re-read a profile (default: the running one's file) and swap it in if it is live.

        One reload at a time; the swap is one assignment, so no decision ever mixes profiles.
        """
        async with self._reload_lock:
            current = self.profile
            target = path or current.path
            if target is None:
                report = ReloadReport("invalid", current.config_hash, errors=("no profile file",))
            else:
                planned = plan(current, target)
                report = planned.report
                if planned.runtime is not None:
                    old = self.ref.swap(planned.runtime)
                    await self.sio.runtime_changed(old, planned.runtime, report)
                    apply_log_level(planned.runtime.server.log_level)
            runtime = self.runtime
            self.monitor.config_reloaded(
                report.outcome,
                runtime.config_hash,
                declared_events(runtime.profile),
                runtime.profile.engine.name,
                changes=len(report.live) + len(report.restart),
            )
            log.log(logging.INFO if report.ok else logging.WARNING, "%s", report.render())
            return report

    async def reload_route(self, request: Request) -> Response:
        """`POST [admin] path`: bearer token; body `{"profile": "path.toml"}` or empty."""
        token = self.runtime.profile.admin.token
        if token is None:
            return Response.error(404, "not_found", "the admin API is off (no [admin] token)")
        if not bearer_ok(request.headers, token):
            return Response.error(
                401, "unauthorized", "bearer token required", (("www-authenticate", "Bearer"),)
            )
        path: Path | None = None
        if request.body.strip():
            try:
                body = json.loads(request.body)
            except ValueError:
                return Response.error(400, "invalid_payload", "the body must be JSON")
            given = body.get("profile") if isinstance(body, dict) else None
            if given is not None:
                if not isinstance(given, str) or not given.endswith(".toml"):
                    return Response.error(400, "invalid_payload", "profile must be a .toml path")
                path = Path(given)
        report = await self.reload(path)
        status = {"applied": 200, "unchanged": 200, "refused": 409, "invalid": 422}
        return Response.json(status[report.outcome], report.as_json())

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await dispatch(self.routes, scope, receive, send)


log = logging.getLogger("engine")


def apply_log_level(level: str) -> None:
    """`server.log_level` is live: the engine's loggers follow the current runtime."""
    logging.getLogger("engine").setLevel(level.upper())


def declared_events(profile: Profile) -> dict[str, frozenset[str]]:
    return {
        name: frozenset(spec.events or ())
        | BUILTIN_EVENTS
        | (TASK_EVENTS if serves_tasks(profile.progress, name) else frozenset())
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
    store = build_store(profile.cluster, max_keys=profile.security.max_tracked_keys)
    monitor.add_health_check(lambda: store.degraded)
    # cluster broker: None keeps python-socketio's in-memory manager
    broker = build_client_manager(profile.cluster, monitor, node_identity(profile.cluster))
    sio = EngineServer(
        ref, monitor, store, build_recovery_store(profile.cluster), client_manager=broker
    )
    engine = Engine(ref=ref, sio=sio, monitor=monitor, lifecycle=lifecycle or Lifecycle())
    engine.store = store
    engine.broker = broker
    dashboard = DashboardRoutes(monitor, secure_cookie=secure_admin_cookie(profile))
    publish = PublishAPI(engine)
    engine.routes = {
        **metrics_routes(monitor, None),
        **dashboard.routes(),
        "/healthz": Route(engine.healthz),
        "/readyz": Route(engine.readyz),
        profile.admin.path: Route(
            engine.reload_route, methods=frozenset({"POST"}), max_body_bytes=4096
        ),
        PUBLISH_PATH: Route(
            publish.publish,
            methods=frozenset({"POST"}),
            max_body_bytes=profile.publish.max_body_bytes,
        ),
        HISTORY_PATH: Route(publish.history),
        **client_routes(lambda: engine.profile),
    }
    engine.metrics_listeners = {
        bind: Router(metrics_routes(monitor, bind)) for bind in metrics_binds(monitor)
    }
    socketio_app = socketio.ASGIApp(
        sio, other_asgi_app=engine.http, socketio_path=profile.server.path.strip("/")
    )
    install_patches()
    WEBSOCKET.compression = profile.server.websocket_compression
    ACCEPT.bans = sio.guard.banned_peers
    engine.app = handshake_gate(
        socketio_app,
        sio.guard,
        profile.server.path,
        profile.server.max_payload_bytes,
        close_session=sio.close_session,
    )
    if profile.server.websocket_server == "engine":
        register_direct(
            engine.app,
            DirectWebSockets(
                sio.eio,
                sio.guard,
                profile.server.path,
                profile.server.max_payload_bytes,
                compression=profile.server.websocket_compression,
            ),
        )
    return engine
