"""Every process-wide change the engine makes to hypercorn and python-engineio, in one place.

Installed once per process by `install()`, which first checks that each patched library has
the shape the patches were written against (the versions in `constraints.txt`): an upgrade
that moves a class or a method fails loudly at start, not silently at run time. The patches
capture no profile: what they need per engine they read from module-level state the engine
sets: WebSocket compression from `hardening.WEBSOCKET` (the profile), the bans to refuse at
accept from `hardening.ACCEPT` (the guard's view).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.metadata import version
from typing import Any

from hypercorn.asyncio import run as hypercorn_run
from hypercorn.asyncio import task_group, tcp_server
from hypercorn.protocol import ws_stream

from engine.transport.direct import take_connection
from engine.transport.fastpath import install_socket
from engine.transport.hardening import (
    ByteCountingBuffer,
    accept_without_deflate,
    serve_accepted,
    start_server,
)
from engine.transport.lean import LeanQueue
from engine.transport.protocol import LEAN_QUEUE, check_engineio

SUPPORTED = {"hypercorn": ("0.17", "0.18"), "python-engineio": ("4.",), "wsproto": ("1.",)}

_installed = False
_SPAWN_APP_PARAMETERS = ("self", "app", "config", "scope", "send")


class IncompatibleLibrary(RuntimeError):
    """A patched library does not have the shape the engine's patches expect."""


def check_shapes() -> None:
    problems = []
    for package, prefixes in SUPPORTED.items():
        found = version(package)
        if not found.startswith(prefixes):
            problems.append(f"{package} {found} (tested: {', '.join(p + '*' for p in prefixes)})")
    buffer = getattr(ws_stream, "WebsocketBuffer", None)
    if not (inspect.isclass(buffer) and callable(getattr(buffer, "extend", None))):
        problems.append("hypercorn.protocol.ws_stream.WebsocketBuffer.extend is gone")
    elif "max_length" not in inspect.signature(buffer.__init__).parameters:
        problems.append("hypercorn's WebsocketBuffer no longer takes max_length")
    handshake = getattr(ws_stream, "Handshake", None)
    if not (inspect.isclass(handshake) and callable(getattr(handshake, "accept", None))):
        problems.append("hypercorn.protocol.ws_stream.Handshake.accept is gone")
    server = getattr(tcp_server, "TCPServer", None)
    if not (inspect.isclass(server) and inspect.iscoroutinefunction(getattr(server, "run", None))):
        problems.append("hypercorn.asyncio.tcp_server.TCPServer.run is gone")
    elif "writer" not in inspect.signature(server.__init__).parameters:
        problems.append("hypercorn's TCPServer no longer takes the connection's writer")
    group = getattr(task_group, "TaskGroup", None)
    spawn_app = getattr(group, "spawn_app", None)
    if not (
        inspect.iscoroutinefunction(spawn_app)
        and list(inspect.signature(spawn_app).parameters)
        == ["self", "app", "config", "scope", "send"]
        and callable(getattr(task_group, "_handle", None))
    ):
        problems.append("hypercorn.asyncio.task_group.TaskGroup.spawn_app changed shape")
    serve = getattr(hypercorn_run, "worker_serve", None)
    if not (
        (
            getattr(hypercorn_run, "asyncio", None) is asyncio
            or isinstance(getattr(hypercorn_run, "asyncio", None), _ListenerAsyncio)
        )
        and callable(serve)
        and "asyncio.start_server(" in inspect.getsource(serve)
    ):
        problems.append("hypercorn.asyncio.run.worker_serve no longer calls asyncio.start_server")
    try:
        check_engineio()
    except RuntimeError as exc:
        problems.append(str(exc))
    if problems:
        raise IncompatibleLibrary(
            "the engine's transport patches do not fit the installed libraries: "
            + "; ".join(problems)
        )


def install() -> None:
    """Install every patch once (idempotent); raise `IncompatibleLibrary` before any."""
    global _installed
    if _installed:
        return
    check_shapes()
    ws_stream.WebsocketBuffer = ByteCountingBuffer  # type: ignore[misc]
    original: Any = ws_stream.Handshake.accept
    ws_stream.Handshake.accept = accept_without_deflate(original)  # type: ignore[method-assign]
    tcp_server.TCPServer.run = serve_accepted(  # type: ignore[method-assign]
        tcp_server.TCPServer.run, take_connection
    )
    hypercorn_run.asyncio = _ListenerAsyncio()  # type: ignore[attr-defined,assignment]
    if LEAN_QUEUE:
        task_group.TaskGroup.spawn_app = _spawn_app_lean  # type: ignore[method-assign]
    install_socket()
    _installed = True


class _ListenerAsyncio:
    """hypercorn's listener module sees asyncio through this: asyncio itself, except that
    `start_server` puts the accept-time ban check in front of the streams
    (`engine.transport.hardening.start_server`)."""

    start_server = staticmethod(start_server)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


async def _spawn_app_lean(
    self: Any, app: Any, config: Any, scope: Any, send: Callable[..., Awaitable[None]]
) -> Callable[[Any], Awaitable[None]]:
    """hypercorn's `TaskGroup.spawn_app` with a `LeanQueue` as the connection's ASGI receive
    queue (same bound, `config.max_app_queue_size`) instead of an asyncio.Queue (~2.5 KiB)."""
    app_queue = LeanQueue(config.max_app_queue_size)
    loop = self._loop

    def _call_soon(func: Callable[..., Any], *args: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(func(*args), loop)
        return future.result()

    self.spawn(
        task_group._handle,
        app,
        config,
        scope,
        app_queue.get,
        send,
        partial(loop.run_in_executor, None),
        _call_soon,
    )
    return app_queue.put
