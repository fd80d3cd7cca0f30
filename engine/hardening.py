"""Transport-level protection that must act before python-engineio sees a request.

- New Engine.IO handshakes from a banned address or above the per-IP connect rate are refused
  on the raw HTTP request (429/403 with the refusal envelope as JSON and `Retry-After`), so a
  connect flood costs the server almost nothing and connected clients keep their latency.
- Long-polling request bodies are limited in bytes while they are received (engineio reads a
  whole body before checking its size).
- WebSocket messages are limited in UTF-8 *bytes* while frames arrive: hypercorn counts the
  characters of text messages, so 4-byte characters would pass at 4x the limit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from hypercorn.protocol import ws_stream
from wsproto.events import Message, TextMessage

from engine.guard import Guard
from engine.refusal import Refusal

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATUS = {"rate_limited": 429, "banned": 403, "forbidden": 403}


class ByteCountingBuffer(ws_stream.WebsocketBuffer):
    """hypercorn's message buffer, counting UTF-8 bytes of text frames as they arrive."""

    def extend(self, event: Message[Any]) -> None:
        if isinstance(event, TextMessage):
            data = event.data
            # ASCII is the common case: one byte per character, no encoding needed
            extra = 0 if data.isascii() else len(data.encode("utf-8", "surrogatepass")) - len(data)
            if self.length + len(data) + extra > self.max_length:
                raise ws_stream.FrameTooLargeError()
            self.length += extra
        super().extend(event)


def install_frame_limit() -> None:
    """Make hypercorn count WebSocket message size in bytes (idempotent)."""
    ws_stream.WebsocketBuffer = ByteCountingBuffer  # type: ignore[misc]


def handshake_gate(app: ASGIApp, guard: Guard, socketio_path: str, max_body_bytes: int) -> ASGIApp:
    """Wrap the ASGI app: refuse floods and bans before a handshake, cap polling bodies."""
    prefix = "/" + socketio_path.strip("/") + "/"

    async def gate(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not (scope["path"] + "/").startswith(
            prefix
        ):
            await app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "sid" not in query:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            client = scope.get("client") or ("", 0)
            refusal = guard.admit_handshake(guard.client_ip(str(client[0]), headers))
            if refusal is not None:
                await _refuse(scope, send, refusal)
                return
        if scope["type"] == "http" and scope.get("method") == "POST":
            await _limited_body(app, scope, receive, send, max_body_bytes)
            return
        await app(scope, receive, send)

    return gate


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    body = json.dumps(refusal.envelope()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refusal.retry_after_seconds is not None:
        headers.append((b"retry-after", str(math.ceil(refusal.retry_after_seconds)).encode()))
    status = STATUS.get(refusal.code, 403)
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _limited_body(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int
) -> None:
    """Read the body up to `limit` bytes (413 beyond it), then hand it to the app whole."""
    declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), None)
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        await _too_large(send)
        return
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _too_large(send)
            return
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    replayed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    await app(scope, replay, send)


async def _too_large(send: Send) -> None:
    body = json.dumps({"code": "invalid_payload", "message": "request body too large"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
