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
from typing import Any

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from engine.app import Engine, build_app
from engine.lifecycle import Lifecycle, Phase
from engine.profile.model import Profile

log = logging.getLogger("engine")


def parse_bind(bind: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port); ValueError with a readable message."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--bind expects HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def open_listener(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def hypercorn_config(profile: Profile, fd: int) -> Config:
    server = profile.server
    config = Config()
    config.bind = [f"fd://{fd}"]
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

    def stop(self) -> None:
        self.stop_requested.set()

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
    task_status: TaskStatus[Running] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `profile` until stopped; returns after a graceful drain."""
    host, port = parse_bind(bind) if bind else (profile.server.host, profile.server.port)
    lifecycle = Lifecycle()
    engine = build_app(profile, lifecycle)
    sock = open_listener(host, port, profile.server.listen_backlog)
    running = Running(engine, host, sock.getsockname()[1])
    config = hypercorn_config(profile, sock.detach())
    hypercorn_stop = anyio.Event()
    assert engine.app is not None

    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT) if signals else ()
    for signum in handled:
        loop.add_signal_handler(signum, running.on_signal, signum)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_drain_on_stop, running, hypercorn_stop)
            lifecycle.advance(Phase.SERVING)
            log.info(summary(running))
            task_status.started(running)
            app: Any = engine.app  # hypercorn types ASGI with its own TypedDicts
            await hypercorn_serve(app, config, shutdown_trigger=hypercorn_stop.wait, mode="asgi")
            running.stop()  # hypercorn may also end on its own (listener error)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    lifecycle.advance(Phase.STOPPED)
    log.info("engine stopped")


async def _drain_on_stop(running: Running, hypercorn_stop: anyio.Event) -> None:
    engine = running.engine
    await running.stop_requested.wait()
    engine.lifecycle.advance(Phase.DRAINING)
    log.info("engine draining: closing %d sessions", len(engine.sio.eio.sockets))
    with running.drain_scope:
        running.drain_scope.deadline = (
            anyio.current_time() + engine.profile.server.shutdown_grace_seconds
        )
        await engine.sio.close_all()
        await engine.sio.drained()
        log.info("engine drained")
    hypercorn_stop.set()
