"""Run an engine: listener, hypercorn on anyio's asyncio backend, readiness, graceful drain.

Shutdown (SIGTERM/SIGINT, or `Running.stop()`): /readyz turns 503 and new Engine.IO sessions
are refused, every session is closed cleanly (clients see a transport close and reconnect,
elsewhere behind a balancer), in-flight handlers get up to `shutdown_grace_seconds`, then the
listener closes. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from engine.app import Engine, build_app
from engine.lifecycle import Lifecycle, Phase
from engine.monitoring import Monitor
from engine.monitoring.sinks.prometheus import parse_bind as parse_metrics_bind
from engine.profile.model import Profile
from engine.transport.fastpath import freeze_survivors, tune_gc
from engine.transport.http import Router

log = logging.getLogger("engine")


def parse_bind(bind: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port); ValueError with a readable message."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--bind expects HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def open_listener(host: str, port: int, backlog: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket; `reuse_port` lets several worker processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock


def hypercorn_config(profile: Profile, fd: int, *more_fds: int) -> Config:
    server = profile.server
    config = Config()
    config.bind = [f"fd://{n}" for n in (fd, *more_fds)]
    config.backlog = server.listen_backlog
    config.graceful_timeout = max(server.shutdown_grace_seconds, 0.1)
    config.websocket_max_message_size = server.max_payload_bytes
    config.include_server_header = False
    config.accesslog = logging.getLogger("engine.access") if server.access_log else None
    config.errorlog = logging.getLogger("engine.http")
    if server.tls_cert_file and server.tls_key_file:
        config.certfile = str(server.tls_cert_file)
        config.keyfile = str(server.tls_key_file)
        config.keyfile_password = server.tls_key_password
        if server.tls_ca_file:
            config.ca_certs = str(server.tls_ca_file)
            config.verify_mode = ssl.CERT_REQUIRED
    return config


@dataclass(slots=True)
class Running:
    """Handle on a serving engine, given to `task_status.started` and to tests."""

    engine: Engine
    host: str
    port: int
    stop_requested: anyio.Event = field(default_factory=anyio.Event)
    drain_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    signals_received: int = 0
    metrics_urls: dict[str, str] = field(default_factory=dict)
    reloads: set[asyncio.Task[Any]] = field(default_factory=set)
    started_from: Path | None = None  # the profile file given at start (what SIGHUP re-reads)

    def stop(self) -> None:
        self.stop_requested.set()

    def on_reload_signal(self) -> None:
        """SIGHUP: re-read the file the engine was started with (also after `engine reload
        --profile OTHER` swapped in another file); the outcome is logged and counted."""
        log.info("engine received SIGHUP: reloading %s", self.started_from)
        task = asyncio.get_running_loop().create_task(self.engine.reload(self.started_from))
        self.reloads.add(task)
        task.add_done_callback(self.reloads.discard)

    def on_signal(self, signum: int) -> None:
        """First SIGTERM/SIGINT drains gracefully; a second one skips the wait."""
        self.signals_received += 1
        log.info("engine received %s", signal.Signals(signum).name)
        self.stop()
        if self.signals_received > 1:
            self.drain_scope.cancel()

    @property
    def url(self) -> str:
        scheme = "https" if self.engine.profile.server.tls_cert_file else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def summary(running: Running) -> str:
    profile = running.engine.profile
    return (
        f"engine serving profile={profile.engine.name} "
        f"environment={profile.engine.environment} "
        f"namespaces={','.join(profile.namespaces)} "
        f"bind={running.host}:{running.port} "
        f"config_hash={profile.config_hash} source={profile.source}"
    )


async def serve(
    profile: Profile,
    *,
    bind: str | None = None,
    signals: bool = True,
    worker: int | None = None,
    task_status: TaskStatus[Running] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `profile` until stopped; returns after a graceful drain.

    `worker` (1..N, from `engine.cluster.workers`): share the port with the other workers
    (SO_REUSEPORT) and also listen on the worker's own port, port + worker.
    """
    host, port = parse_bind(bind) if bind else (profile.server.host, profile.server.port)
    lifecycle = Lifecycle()
    engine = build_app(profile, lifecycle)
    tune_gc(profile.server.gc_threshold_objects)
    thaw = freeze_survivors() if profile.server.gc_freeze_survivors else None
    monitor = engine.monitor
    backlog = profile.server.listen_backlog
    sock = open_listener(host, port, backlog, reuse_port=worker is not None)
    own = [open_listener(host, port + worker, backlog)] if worker is not None else []
    running = Running(engine, host, sock.getsockname()[1], started_from=profile.path)
    config = hypercorn_config(profile, sock.detach(), *(s.detach() for s in own))
    metrics = [_metrics_listener(bind, app) for bind, app in engine.metrics_listeners.items()]
    running.metrics_urls = {bind: url for bind, url, _, _ in metrics}
    hypercorn_stop = anyio.Event()
    assert engine.app is not None

    loop = asyncio.get_running_loop()
    handled: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT) if signals else ()
    for signum in handled:
        loop.add_signal_handler(signum, running.on_signal, signum)
    if signals:
        loop.add_signal_handler(signal.SIGHUP, running.on_reload_signal)
    store = engine.store
    try:
        if store is not None:
            await store.start()  # shared policy state: registers this node, starts its heartbeat
        async with anyio.create_task_group() as background:
            monitor_scope = anyio.CancelScope()
            background.start_soon(_run_monitor, monitor, monitor_scope)
            monitor.lifecycle("started", bind=f"{running.host}:{running.port}")
            for _, _, app, metrics_config in metrics:
                background.start_soon(_serve_asgi, app, metrics_config, hypercorn_stop)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_drain_on_stop, running, hypercorn_stop)
                if engine.broker is not None:
                    engine.broker.start()  # subscribe and probe before the first client
                lifecycle.advance(Phase.SERVING)
                monitor.lifecycle("ready")
                log.info(summary(running))
                task_status.started(running)
                await _serve_asgi(engine.app, config, hypercorn_stop)
                running.stop()  # hypercorn may also end on its own (listener error)
            lifecycle.advance(Phase.STOPPED)
            monitor.lifecycle("stopped")
            hypercorn_stop.set()  # also ends the metrics listeners
            monitor_scope.cancel()  # Monitor.run flushes its sinks when cancelled
    finally:
        if thaw is not None:
            thaw()
        for signum in handled:
            loop.remove_signal_handler(signum)
        if signals:
            loop.remove_signal_handler(signal.SIGHUP)
        lifecycle.advance(Phase.STOPPED)
        if engine.broker is not None:
            with anyio.CancelScope(shield=True):
                await engine.broker.aclose()
        if store is not None:
            await store.aclose()
        await engine.sio.recovery.store.aclose()
        await monitor.aclose()
    log.info("engine stopped")


async def _serve_asgi(app: Any, config: Config, stop: anyio.Event) -> None:
    """hypercorn on `config` until `stop` (hypercorn types ASGI with its own TypedDicts)."""
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait, mode="asgi")


async def _run_monitor(monitor: Monitor, scope: anyio.CancelScope) -> None:
    with scope:
        await monitor.run()


def _metrics_listener(bind: str, app: Router) -> tuple[str, str, Router, Config]:
    """A separate plain-HTTP listener for prometheus sinks with `bind`: (bind, url, app, config)."""
    host, port = parse_metrics_bind(bind)
    sock = open_listener(host, port, 128)
    actual = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.include_server_header = False
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = logging.getLogger("engine.http")
    url_host = f"[{host}]" if ":" in host else host
    return bind, f"http://{url_host}:{actual}", app, config


async def _drain_on_stop(running: Running, hypercorn_stop: anyio.Event) -> None:
    engine = running.engine
    await running.stop_requested.wait()
    engine.lifecycle.advance(Phase.DRAINING)
    engine.monitor.lifecycle("draining", sessions=len(engine.sio.eio.sockets))
    log.info("engine draining: closing %d sessions", len(engine.sio.eio.sockets))
    server = engine.profile.server
    with running.drain_scope:
        running.drain_scope.deadline = (
            anyio.current_time() + server.drain_seconds + server.shutdown_grace_seconds
        )
        await engine.sio.close_all(server.drain_seconds)
        await engine.sio.drained()
        log.info("engine drained")
    hypercorn_stop.set()
