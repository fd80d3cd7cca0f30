"""Bare python-socketio baseline for the benchmark.

``AsyncServer(async_mode="asgi")`` + ``ASGIApp`` under hypercorn with default settings, with the
same handlers as bench/echo.py, plus ``GET /readyz`` (200) for the harness's readiness wait.

    python bench/bare_server.py --bind 127.0.0.1:PORT [--no-deflate]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config

FANOUT_ROOM = "all"

sio = socketio.AsyncServer(async_mode="asgi")


@sio.event  # type: ignore[untyped-decorator]
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    await sio.enter_room(sid, FANOUT_ROOM)


@sio.event  # type: ignore[untyped-decorator]
async def echo(sid: str, data: Any) -> Any:
    return data


@sio.event  # type: ignore[untyped-decorator]
async def fanout(sid: str, data: Any) -> bool:
    await sio.emit("tick", data, room=FANOUT_ROOM)
    return True


async def readyz(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Everything that is not /socket.io/: 200 on GET /readyz, 404 otherwise."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    ok = scope["path"] == "/readyz" and scope["method"] in ("GET", "HEAD")
    body = b"ok\n" if ok else b"not found\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if ok else 404,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


app = socketio.ASGIApp(sio, other_asgi_app=readyz)


def refuse_deflate() -> None:
    """Accept no permessage-deflate offer: the same setting as the engine's
    ``server.websocket_compression = false`` (hypercorn has no option for it, so this is the
    one-line patch any python-socketio user on hypercorn would make)."""
    from hypercorn.protocol import ws_stream

    accept = ws_stream.Handshake.accept

    def accept_without_deflate(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.extensions = None
        return accept(self, *args, **kwargs)

    ws_stream.Handshake.accept = accept_without_deflate  # type: ignore[method-assign]


async def main(bind: str) -> None:
    config = Config()  # hypercorn defaults
    config.bind = [bind]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8000")
    parser.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    args = parser.parse_args()
    if args.no_deflate:
        refuse_deflate()
    asyncio.run(main(args.bind))
