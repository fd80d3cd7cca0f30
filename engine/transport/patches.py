"""Every process-wide change the engine makes to hypercorn and python-engineio, in one place.

Installed once per process by `install()`, which first checks that each patched library has
the shape the patches were written against (the versions in `constraints.txt`): an upgrade
that moves a class or a method fails loudly at start, not silently at run time. The patches
capture no profile: what they need per engine they read from module-level state the engine
sets: WebSocket compression from `hardening.WEBSOCKET` (the profile), the bans to refuse at
accept from `hardening.ACCEPT` (the guard's view).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

from hypercorn.asyncio import tcp_server
from hypercorn.protocol import ws_stream

from engine.transport.fastpath import install_socket
from engine.transport.hardening import (
    ByteCountingBuffer,
    accept_without_deflate,
    refuse_at_accept,
)
from engine.transport.protocol import check_engineio

SUPPORTED = {"hypercorn": ("0.17", "0.18"), "python-engineio": ("4.",), "wsproto": ("1.",)}

_installed = False


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
    tcp_server.TCPServer.run = refuse_at_accept(tcp_server.TCPServer.run)  # type: ignore[method-assign]
    install_socket()
    _installed = True
