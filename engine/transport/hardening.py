"""Transport-level protection that must act before python-engineio sees a request.

- New Engine.IO handshakes from a banned address or above the per-IP connect rate are refused
  on the raw HTTP request (429/403 with `Retry-After` and, as JSON, the `{"message", "data":
  {"code", ...}}` a refused CONNECT carries), so a connect flood costs the server almost
  nothing and connected clients keep their latency.
- Long-polling request bodies are limited in bytes while they are received (engineio reads a
  whole body before checking its size).
- A connection from an address under a ban is closed at TCP accept, in the listener's protocol
  factory, before asyncio builds a stream or a task for it (`start_server`, which hypercorn's
  listener calls; the guard's `BannedPeers` view, published in `ACCEPT`).
- WebSocket messages are limited in UTF-8 *bytes* while frames arrive: hypercorn counts the
  characters of text messages, so 4-byte characters would pass at 4x the limit. A message
  over the limit aborts the TCP connection at once: no close handshake, and the rest of the
  frame is never read (hypercorn would send a 1009 close and read the frame to its end).
- Malformed Engine.IO packets (WebSocket text frames, long-polling bodies) never reach
  python-engineio, which json-decodes the rest of most text packets before any payload limit
  runs, and raises on an empty packet, an unknown type or bad base64 (a traceback per packet,
  and on WebSocket a session left open until its ping timeout). The WebSocket is closed with
  1002 and one log line; a polling body gets 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import json
import logging
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
log = logging.getLogger("engine.transport.hardening")

# Text packets a client sends besides messages: 1 close, 2 ping (also "2probe"), 3 pong,
# 5 upgrade, 6 noop; all short. 4 (message) carries a Socket.IO packet, which starts with its
# type digit (engineio leaves such text alone); "b" is a base64 binary message.
_CONTROL = frozenset("12356")
_CONTROL_MAX_CHARS = 16
_DIGITS = frozenset("0123456789")


def engineio_packet_problem(text: str) -> str | None:
    """Why a text Engine.IO packet from a client is malformed, or None if it is not."""
    if not text:
        return "empty Engine.IO packet"
    kind = text[0]
    if kind == "4":
        if len(text) > 1 and text[1] not in _DIGITS:
            return "Engine.IO message is not a Socket.IO packet"
        return None
    if kind == "b":
        try:
            base64.b64decode(text[1:], validate=True)
        except (binascii.Error, ValueError):
            return "invalid base64 binary message"
        return None
    if kind in _CONTROL and len(text) <= _CONTROL_MAX_CHARS:
        return None
    return "unexpected Engine.IO packet"


# The connection (asyncio StreamWriter) whose bytes the current task is parsing: hypercorn
# reads, parses HTTP and WebSocket frames, and fills the message buffer in the connection's own
# task, which `serve_accepted` starts by setting this.
CONNECTION: contextvars.ContextVar[Any] = contextvars.ContextVar("engine_connection")


def abort_connection() -> bool:
    """Abort the current task's TCP connection (no FIN handshake, unread bytes dropped)."""
    writer = CONNECTION.get(None)
    if writer is None:
        return False
    writer.transport.abort()
    return True


class ByteCountingBuffer(ws_stream.WebsocketBuffer):
    """hypercorn's message buffer, counting UTF-8 bytes of text frames as they arrive.

    Over the limit, the connection is aborted before the partial message is copied (hypercorn
    then skips its 1009 close: the transport is gone), so an oversize frame costs the bytes
    read so far, not the whole frame.
    """

    def extend(self, event: Message[Any]) -> None:
        data = event.data
        if isinstance(event, TextMessage):
            # ASCII is the common case: one byte per character, no encoding needed
            extra = 0 if data.isascii() else len(data.encode("utf-8", "surrogatepass")) - len(data)
        else:
            extra = 0
        if self.length + len(data) + extra > self.max_length:
            abort_connection()
            raise ws_stream.FrameTooLargeError()
        self.length += extra
        super().extend(event)


def accept_without_deflate(
    original: Callable[..., Any],
) -> Callable[..., Any]:
    """hypercorn always accepts permessage-deflate when offered; make that a choice.

    The choice is read at each handshake from `WEBSOCKET`, which the engine sets from its
    profile, so the patch itself captures no profile.
    """

    def accept(self: ws_stream.Handshake, *args: Any, **kwargs: Any) -> Any:
        if not WEBSOCKET.compression:
            self.extensions = None
        return original(self, *args, **kwargs)

    return accept


def serve_accepted(
    original: Callable[..., Any], take: Callable[[Any], Awaitable[bool]] | None = None
) -> Callable[..., Any]:
    """Wrap hypercorn's `TCPServer.run`: the engine may serve the connection itself.

    `take(server)` serves it instead of hypercorn when it is a Socket.IO WebSocket handshake
    (True; see engine.transport.direct). The connection's writer is published in `CONNECTION`
    for the frame limit's abort, and a finished connection's objects are released.
    """

    async def run(self: Any) -> None:
        writer = self.writer
        CONNECTION.set(writer)
        try:
            if take is None or not await take(self):
                await original(self)
        finally:
            # hypercorn closes the writer in its own `finally`, unless it was cancelled first
            # (a connection accepted while the server shuts down): never leave a socket open
            if not writer.transport.is_closing():
                writer.transport.abort()
            _release(self)

    return run


class _AcceptGate(asyncio.Protocol):
    """The first protocol of every accepted connection: a peer under a ban is closed here.

    Nothing else exists yet for the connection (no stream, no task, no hypercorn object): a
    refusal costs the kernel's accept and one dict lookup. Any other peer gets the protocol
    `asyncio.start_server` would have made, and the connection proceeds as if the gate had
    never been there.
    """

    __slots__ = ("streams",)

    def __init__(self, streams: Callable[[], asyncio.Protocol]) -> None:
        self.streams = streams

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        bans = ACCEPT.bans
        if bans is not None and bans.until:
            peer = transport.get_extra_info("peername")
            if peer and bans.refuses(peer_ip(peer[0])):
                transport.abort()  # type: ignore[attr-defined]
                return
        protocol = self.streams()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


async def start_server(
    client_connected_cb: Callable[..., Any],
    host: Any = None,
    port: Any = None,
    *,
    limit: int = 2**16,
    **kwds: Any,
) -> asyncio.Server:
    """`asyncio.start_server` (hypercorn's listener), with `_AcceptGate` in front of the
    streams: the bans in `ACCEPT` are checked before asyncio builds anything per connection."""
    loop = asyncio.get_running_loop()

    def streams() -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await loop.create_server(lambda: _AcceptGate(streams), host, port, **kwds)


def _release(server: Any) -> None:
    """Break the reference cycles hypercorn leaves among a finished connection's objects.

    Every object of a closed connection (the TCPServer, its protocol wrapper, the HTTP/1.1
    protocol, the WebSocket stream, the task group, the asyncio streams: ~90 objects) is held in
    cycles through bound methods (`send` callbacks pointing back at their owner), so none of it
    is freed when the connection ends: it waits for the cyclic collector, and whatever reached
    the oldest generation waits for a full collection. When `TCPServer.run` returns, the
    connection's task group has exited (no task of it runs any more), so its objects' state can
    be dropped: plain reference counting then frees the lot at once. (A closed session's late
    send reaches a stream without state and fails like a send on a closed stream.)
    """
    wrapper = server.__dict__.get("protocol")
    inner = getattr(wrapper, "protocol", None)
    stream = getattr(inner, "stream", None)
    group = server.__dict__.get("_task_group")
    for obj in (stream, inner, wrapper, group, server):
        state = getattr(obj, "__dict__", None)
        if state is not None:
            state.clear()


def peer_ip(host: str) -> str:
    """The peer's address as the policies key it (an IPv4-mapped IPv6 address as IPv4)."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


class _AcceptSettings:
    """Process-wide accept-time state the patched hypercorn reads (one engine per process)."""

    bans: Any = None  # engine.guard.BannedPeers


ACCEPT = _AcceptSettings()


class _WebSocketSettings:
    """Process-wide transport settings the patched hypercorn reads (one engine per process)."""

    compression = True


WEBSOCKET = _WebSocketSettings()


def handshake_gate(
    app: ASGIApp,
    guard: Guard,
    socketio_path: str,
    max_body_bytes: int,
    close_session: Callable[[str], Awaitable[None]],
) -> ASGIApp:
    """Wrap the ASGI app: refuse floods and bans before a handshake, cap polling bodies.

    `close_session(eio_sid)` ends the session of an undecodable polling body.
    """
    prefix = "/" + socketio_path.strip("/") + "/"

    async def gate(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not (scope["path"] + "/").startswith(
            prefix
        ):
            await app(scope, receive, send)
            return
        # the query and headers are parsed in helpers whose frames end here: this coroutine
        # lives as long as the connection, and must not keep them
        eio_sid = _session_id(scope)
        if eio_sid is None:
            refusal = await _admit(guard, scope)
            if refusal is not None:
                await _refuse(scope, send, refusal)
                return
        if scope["type"] == "http" and scope.get("method") == "POST":
            await _limited_body(app, scope, receive, send, max_body_bytes, guard, close_session)
            return
        if scope["type"] == "websocket":
            await _checked_websocket(app, scope, receive, send, guard, eio_sid or "")
            return
        await app(scope, receive, send)

    return gate


def _session_id(scope: Scope) -> str | None:
    """The `sid` query parameter (None: a new Engine.IO handshake)."""
    query = scope.get("query_string", b"")
    if b"sid=" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("sid")
    return values[0] if values else None


async def _admit(guard: Guard, scope: Scope) -> Refusal | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    client = scope.get("client") or ("", 0)
    return await guard.admit_handshake(guard.client_ip(str(client[0]), headers))


def malformed(guard: Guard, eio_sid: str, problem: str) -> None:
    log.warning("closing session %s: malformed packet: %s", eio_sid or "?", problem)
    guard.violation(eio_sid, "malformed_packet", problem)


async def _checked_websocket(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, guard: Guard, eio_sid: str
) -> None:
    """Close the WebSocket (1002) on the first malformed Engine.IO text frame."""
    session = eio_sid  # an upgrade names its session; a new one learns it from the OPEN packet

    async def watched_send(message: MutableMapping[str, Any]) -> None:
        nonlocal session
        if not session and message["type"] == "websocket.send":
            text = message.get("text") or ""
            if text.startswith("0{"):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    session = str(json.loads(text[1:])["sid"])
        await send(message)

    async def checked_receive() -> MutableMapping[str, Any]:
        message = await receive()
        text = message.get("text") if message["type"] == "websocket.receive" else None
        if text is not None:
            problem = engineio_packet_problem(text)
            if problem is not None:
                malformed(guard, session, problem)
                await send({"type": "websocket.close", "code": 1002})
                # engineio ends the session as if the client had gone
                return {"type": "websocket.disconnect", "code": 1002}
        return message

    await app(scope, checked_receive, watched_send)


def refusal_response(refusal: Refusal) -> tuple[int, list[tuple[str, str]], bytes]:
    """What a refused handshake is answered, on either WebSocket stack: (status, headers,
    body), the body being the JSON a refused CONNECT carries."""
    body = json.dumps(refusal.connect_error_data()).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    if refusal.retry_after_seconds is not None:
        headers.append(("retry-after", str(math.ceil(refusal.retry_after_seconds))))
    return STATUS.get(refusal.code, 403), headers, body


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    status, text_headers, body = refusal_response(refusal)
    headers = [(name.encode(), value.encode()) for name, value in text_headers]
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
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    limit: int,
    guard: Guard,
    close_session: Callable[[str], Awaitable[None]],
) -> None:
    """Read the body up to `limit` bytes (413 beyond it), then hand it to the app whole.

    A body that is not valid Engine.IO gets 400 and closes its session, as in Node.
    """
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
    body = b"".join(chunks)
    problem = _payload_problem(body)
    if problem is not None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        eio_sid = query.get("sid", [""])[0]
        malformed(guard, eio_sid, problem)
        if eio_sid:
            await close_session(eio_sid)
        await _respond(send, 400, "invalid_payload", "malformed Engine.IO payload")
        return
    replayed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    await app(scope, replay, send)


def _payload_problem(body: bytes) -> str | None:
    """Why a long-polling body (packets separated by 0x1e) is malformed, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    for packet in text.split("\x1e"):
        problem = engineio_packet_problem(packet)
        if problem is not None:
            return problem
    return None


async def _too_large(send: Send) -> None:
    await _respond(send, 413, "invalid_payload", "request body too large")


async def _respond(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
