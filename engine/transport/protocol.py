"""Engine.IO v4 as the reference server (Node's `engine.io`) speaks it, where python-engineio
differs. Each rule is a small override of python-engineio 4.x; `check_engineio()` refuses to
start on a python-engineio whose shape differs from the one these overrides were written for.

- The OPEN packet advertises `pingInterval`/`pingTimeout` exactly, in milliseconds (engineio
  truncates the interval to whole seconds: 0.3 s became 0).
- HTTP 400 with Node's JSON body `{"code", "message"}` for a missing or unknown `transport`, an
  unknown method, a handshake that is not a GET, and an unknown or closed `sid`, WebSocket
  requests included (engineio answered 405, started a new session, or refused a WebSocket
  with 403). A second WebSocket for a session that already upgraded is accepted, then closed.
- A POST is answered `ok`. A second GET while one is pending closes the session (the pending
  GET gets `1`, the second 400).
- Heartbeat: a pong that is not back `ping_timeout` after the ping closes the session at that
  moment (engineio notices only on its next service sweep or the next send).
- Close: a client `1` while a GET is pending answers that GET with `6`; a server-side close
  answers a pending GET with `1`, or keeps what was queued (a `connect_error`, the `1`) for the
  client's next GET. Either way the GET after that gets 400.
- WebSocket: `6` (noop) is a polling packet and never reaches a WebSocket (engineio could send
  the one queued to end a poll after the upgrade); a `5` or a ping (`2probe`) on an upgraded
  session is a protocol error that closes it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from importlib.metadata import version
from typing import Any
from urllib.parse import parse_qs

import engineio
from engineio import async_socket, exceptions, packet
from engineio.async_drivers import asgi as _asgi

from engine.transport.lean import LeanQueue

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Node's engine.io error codes and messages (Server.errors / Server.errorMessages)
UNKNOWN_TRANSPORT = (0, "Transport unknown")
UNKNOWN_SID = (1, "Session ID unknown")
BAD_HANDSHAKE_METHOD = (2, "Bad handshake method")
BAD_REQUEST = (3, "Bad request")
UPGRADED = (-1, "the session is already on WebSocket")  # not an HTTP error: accept, then close
DIRECT = "engine.direct"  # environ key: the connection of a engine.transport.direct session

# ENGINE_FASTPATH_DISABLE=queue (or all): asyncio.Queue as python-engineio makes it
LEAN_QUEUE = not {"queue", "all"} & {
    part.strip() for part in os.environ.get("ENGINE_FASTPATH_DISABLE", "").split(",")
}
_METHODS = frozenset({"GET", "POST", "OPTIONS"})
_LIBRARY_SOCKET = async_socket.AsyncSocket  # before install_protocol replaces it
# how long a session closed by the server waits for the GET that collects its CLOSE (a polling
# client asks again within a round trip; the ping timeout bounds it too)
CLOSE_FLUSH_SECONDS = 2.0


def milliseconds(seconds: float) -> int:
    """A duration in whole milliseconds, rounded (0.3 s is 300, not 299 or 0)."""
    return round(seconds * 1000)


def check_engineio() -> None:
    """Fail at start, not at the first request, on a python-engineio these overrides don't fit."""
    found = version("python-engineio")
    needed = {
        _LIBRARY_SOCKET: (
            "handle_get_request",
            "receive",
            "close",
            "send",
            "poll",
            "_send_ping",
            "schedule_ping",
            "_websocket_handler",
        ),
        engineio.AsyncServer: ("handle_request", "_get_socket", "_ok", "_handle_connect"),
    }
    missing = [
        f"{cls.__name__}.{name}"
        for cls, names in needed.items()
        for name in names
        if not callable(getattr(cls, name, None))
    ]
    if not found.startswith("4.") or missing:
        raise RuntimeError(
            f"python-engineio {found} is not supported by engine.transport.protocol "
            f"(needs 4.x with {', '.join(missing) or 'the same internals'})"
        )


class ProtocolSocket(_LIBRARY_SOCKET):  # type: ignore[misc,valid-type]
    """python-engineio's session, with the reference server's polling, close and heartbeat."""

    def __init__(self, server: Any, sid: str) -> None:
        super().__init__(server, sid)
        self.polling = False  # a long-poll GET is waiting for packets
        self.flush_on_close = False  # closed by the server; the next GET gets what is queued
        self._held: list[packet.Packet] = []  # a CLOSE (and what follows) for the next GET
        self._pong_deadline: asyncio.TimerHandle | None = None
        self.last_ping: float | None = self.last_ping  # engineio's, typed

    async def send(self, pkt: packet.Packet) -> None:
        if pkt.packet_type == packet.OPEN:
            server = self.server
            pkt.data["pingInterval"] = milliseconds(
                server.ping_interval + server.ping_interval_grace_period
            )
            pkt.data["pingTimeout"] = milliseconds(server.ping_timeout)
        await super().send(pkt)

    async def handle_get_request(self, environ: dict[str, Any]) -> Any:
        connection = [s.strip() for s in environ.get("HTTP_CONNECTION", "").lower().split(",")]
        if "upgrade" in connection and environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return await super().handle_get_request(environ)  # the upgrade to WebSocket
        if self.closed:
            # an orderly server-side close: deliver what was queued (it ends with CLOSE)
            packets, self._held = self._held + self._drain(), []
            self.flush_on_close = False
            return self._close_apart(packets)
        if self.polling:
            # two GETs at once: a broken or hostile client; Node closes the session
            await self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise exceptions.EngineIOError("overlapping GET requests")
        self.polling = True
        try:
            packets = await super().handle_get_request(environ)
        finally:
            self.polling = False
        return self._close_apart(packets) if isinstance(packets, list) else packets

    def _close_apart(self, packets: list[packet.Packet]) -> list[packet.Packet]:
        """As Node: what was queued before a server-side close goes out first, the CLOSE in a
        response of its own (the JS client drops a packet that arrives with a CLOSE)."""
        for index, pkt in enumerate(packets):
            if pkt.packet_type == packet.CLOSE and index > 0:
                self._held = packets[index:]
                self._owe_close()
                return packets[:index]
        return packets

    def _drain(self) -> list[packet.Packet]:
        packets = []
        while True:
            try:
                pkt = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self.queue.task_done()
            if pkt is None:
                break
            packets.append(pkt)
        return packets

    def _owe_close(self) -> None:
        """Keep this closed session until its next GET collects the rest (or the grace ends)."""
        self.flush_on_close = True
        grace = min(CLOSE_FLUSH_SECONDS, self.server.ping_timeout)
        asyncio.get_running_loop().call_later(grace, self._forget)

    def _forget(self) -> None:
        if self.flush_on_close:
            self.flush_on_close = False
            self._held = []
            if self.server.sockets.get(self.sid) is self:
                del self.server.sockets[self.sid]

    async def receive(self, pkt: packet.Packet) -> None:
        kind = pkt.packet_type
        if kind == packet.PONG:
            self._cancel_pong_deadline()
        elif kind == packet.CLOSE:
            if self.polling:
                await self.queue.put(packet.Packet(packet.NOOP))  # answers the pending GET
            await super().receive(pkt)
            self.queue.put_nowait(None)  # ends a WebSocket writer, which closes the WebSocket
            return
        elif self.upgraded and kind in (packet.UPGRADE, packet.PING):
            # a second upgrade, or a probe (a client never pings in v4), on an upgraded session
            self.server.logger.info("%s: %s on an upgraded session", self.sid, kind)
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            self.queue.put_nowait(None)
            return
        await super().receive(pkt)

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        orderly = (
            not abort
            and not (self.closed or self.closing)
            and self.connected
            and not (self.upgraded or self.polling)
        )
        self._cancel_pong_deadline()
        await super().close(wait=False, abort=abort, reason=reason)
        if orderly:
            self._owe_close()
        if wait:
            await self.queue.join()

    # -- heartbeat ------------------------------------------------------------------------------

    def schedule_ping(self) -> None:
        # engineio starts a task per session that sleeps `ping_interval`; here the session
        # joins the loop's one heartbeat queue (no task, no frame, no timer of its own)
        if self.last_ping:
            self.last_ping = None
            _heartbeats().add(self, self.server.ping_interval)

    async def _send_ping(self) -> None:  # engineio's name, kept for a caller that awaits it
        await asyncio.sleep(self.server.ping_interval)
        self._ping_due()

    def _ping_due(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self._pong_deadline = asyncio.get_running_loop().call_later(
                self.server.ping_timeout, self._pong_missed
            )
            self.queue.put_nowait(packet.Packet(packet.PING))  # AsyncSocket.send, minus the log

    async def check_ping_timeout(self) -> bool:
        # the deadline timer enforces the heartbeat; engineio's sweep only drops closed sessions
        if self.closed:
            raise exceptions.SocketIsClosedError()
        return True

    def _cancel_pong_deadline(self) -> None:
        if self._pong_deadline is not None:
            self._pong_deadline.cancel()
            self._pong_deadline = None

    def _pong_missed(self) -> None:
        self._pong_deadline = None
        if not self.closing and not self.closed:
            self.server.start_background_task(self._close_late)

    async def _close_late(self) -> None:
        self.server.logger.info("%s: no pong within the ping timeout, closing", self.sid)
        # a pending GET is answered with CLOSE; otherwise the session is simply gone (400 next)
        await self.close(wait=False, abort=not self.polling, reason=self.server.reason.PING_TIMEOUT)
        self.flush_on_close = False
        self.queue.put_nowait(None)

    # -- websocket ------------------------------------------------------------------------------

    async def _websocket_handler(self, ws: Any) -> Any:
        # the engine's own WebSocket (engine.transport.direct) never sends a NOOP itself
        direct = getattr(ws, "direct", False)
        return await self._serve_websocket(ws if direct else _WebSocketFrames(ws))

    async def _serve_websocket(self, ws: Any) -> Any:
        """The WebSocket session itself (python-engineio's; `fastpath` has a faster one)."""
        return await super()._websocket_handler(ws)


class _Heartbeats:
    """Every session's next PING, in one FIFO per event loop, behind one timer.

    All sessions of a server wait the same `ping_interval`, so the order in which they are
    scheduled is the order in which they are due: appending is O(1) and only the head needs a
    timer. (A reload that shortens the interval delays the sessions queued before it by at
    most the old interval, once.) Entries hold weak references: a session that closed is not
    kept alive until its ping would have been due.
    """

    __slots__ = ("__weakref__", "due", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: collections.deque[tuple[float, weakref.ref[ProtocolSocket]]] = collections.deque()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, session: ProtocolSocket, interval: float) -> None:
        when = self.loop.time() + interval
        self.due.append((when, weakref.ref(session)))
        if self.handle is None:
            self.handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.handle = None
        now = self.loop.time()
        due = self.due
        while due and due[0][0] <= now:
            session = due.popleft()[1]()
            if session is not None:
                try:
                    session._ping_due()
                except Exception:  # pragma: no cover - one session must not stop the others
                    session.server.logger.exception("%s: ping failed", session.sid)
        if due:
            self.handle = self.loop.call_at(due[0][0], self._fire)


_HEARTBEATS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Heartbeats] = (
    weakref.WeakKeyDictionary()
)


def _heartbeats() -> _Heartbeats:
    loop = asyncio.get_running_loop()
    beats = _HEARTBEATS.get(loop)
    if beats is None:
        beats = _HEARTBEATS[loop] = _Heartbeats(loop)
    return beats


class _WebSocketFrames:
    """engineio's ASGI WebSocket, minus NOOP frames: `6` only ever ends a long-poll."""

    __slots__ = ("ws",)

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def wait(self) -> Any:
        return await self.ws.wait()

    async def send(self, message: Any) -> None:
        if message != "6":
            await self.ws.send(message)

    async def close(self) -> None:
        await self.ws.close()


class _AwaitablePayload:
    """engineio's `wsgi.input` for ASGI, defined once (engineio defines the class inside
    `translate_request`: a new class per request, ~1 KiB and a reference cycle each)."""

    __slots__ = ("event", "first_type", "payload", "receive")

    def __init__(self, event: MutableMapping[str, Any], receive: Receive) -> None:
        self.event = event
        self.first_type = event["type"]
        self.payload: bytes | None = None
        self.receive = receive

    async def read(self, length: int | None = None) -> bytes:
        if self.payload is None and self.first_type == "http.request":
            # read the payload of the HTTP request
            self.payload = self.event.get("body") or b""
            while self.event.get("more_body"):
                self.event = await self.receive()
                if self.event["type"] == "http.request" and (
                    length is None or len(self.payload) < length
                ):
                    self.payload += self.event.get("body") or b""
        payload = self.payload or b""
        if length is None:
            self.payload = b""
            return payload
        self.payload = payload[length:]
        return payload[:length]


async def translate_request(
    scope: Scope, receive: Receive | None = None, send: Send | None = None
) -> dict[str, Any]:
    """python-engineio 4.x's ASGI `translate_request`, with `_AwaitablePayload` hoisted.

    Called with an environ alone (a session of engine.transport.direct), it returns it.
    """
    if receive is None or send is None:
        # a direct session's environ is already translated (and must stay the same object)
        return scope if isinstance(scope, dict) else dict(scope)
    event = await receive()
    if event["type"] not in ("http.request", "websocket.connect"):
        return {}
    raw_uri = scope["path"]
    query_string = ""
    if scope.get("query_string"):
        try:
            query_string = scope["query_string"].decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raw_uri += "?" + query_string
    environ: dict[str, Any] = {
        "wsgi.input": _AwaitablePayload(event, receive),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.async": True,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SERVER_SOFTWARE": "asgi",
        "REQUEST_METHOD": scope.get("method", "GET"),
        "PATH_INFO": scope["path"],
        "QUERY_STRING": query_string,
        "RAW_URI": raw_uri,
        "SCRIPT_NAME": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        "SERVER_NAME": "asgi",
        "SERVER_PORT": "0",
        "asgi.receive": receive,
        "asgi.send": send,
        "asgi.scope": scope,
    }
    for raw_name, raw_value in scope["headers"]:
        try:
            name = raw_name.upper().decode("utf-8")
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            continue  # skip a header that cannot be decoded
        if name == "CONTENT-TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name == "CONTENT-LENGTH":
            environ["CONTENT_LENGTH"] = value
            continue
        key = "HTTP_" + name.replace("-", "_")
        if key in environ:
            value = f"{environ[key]},{value}"
        environ[key] = value
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    return environ


class EngineIOServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with the reference server's answers to bad requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        drivers: dict[str, Any] = self._async  # type: ignore[has-type]
        if drivers.get("translate_request") is _asgi.translate_request:
            self._async = {
                **drivers,
                "translate_request": translate_request,
                "make_response": make_response,
                "websocket": _WebSocketSwitch,
            }

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        # each session's send queue: no asyncio.Queue (~2.5 KiB) per idle connection
        if not args and not kwargs and LEAN_QUEUE:
            return LeanQueue()
        return super().create_queue(*args, **kwargs)

    async def handle_request(self, scope: Scope, receive: Receive, send: Send) -> Any:
        problem = self._request_problem(scope)
        if problem is None:
            sid = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("sid", [""])[0]
            return await self._handled(sid, scope, receive, send)
        if problem is UPGRADED:
            # Node accepts the WebSocket of a session that already upgraded, then closes it
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": 1000})
            return None
        code, message = problem
        await _bad_request(scope, receive, send, code, message)
        return None

    async def handle_direct(self, environ: dict[str, Any]) -> None:
        """`handle_request` for a WebSocket handshake read by engine.transport.direct."""
        query = parse_qs(environ["QUERY_STRING"])
        problem = self._query_problem(query, "GET", websocket=True)
        ws = environ[DIRECT]
        if problem is None:
            await self._handled(query.get("sid", [""])[0], environ)
        elif problem is UPGRADED:
            ws.accept()
            ws.close_now()
        else:
            code, message = problem
            body = json.dumps({"code": code, "message": message}).encode()
            ws.respond(400, [("content-type", "application/json")], body)

    async def _handled(self, sid: str, *request: Any) -> Any:
        """python-engineio's `handle_request`, keeping a session that still owes its CLOSE."""
        session = self.sockets.get(sid)
        result = await super().handle_request(*request)
        if session is not None and session.flush_on_close and sid not in self.sockets:
            # engineio drops a closed session after each GET; this one still owes its CLOSE
            self.sockets[sid] = session
        return result

    def _request_problem(self, scope: Scope) -> tuple[int, str] | None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        return self._query_problem(query, method, websocket=scope["type"] == "websocket")

    def _query_problem(
        self, query: dict[str, list[str]], method: str, *, websocket: bool
    ) -> tuple[int, str] | None:
        transport = query.get("transport", [None])[0]
        if transport not in self.transports:
            return UNKNOWN_TRANSPORT
        sid = query.get("sid", [None])[0]
        if sid is None:
            return None if method in ("GET", "OPTIONS") else BAD_HANDSHAKE_METHOD
        if method not in _METHODS:
            return BAD_REQUEST
        session = self.sockets.get(sid)
        if session is None or (session.closed and not session.flush_on_close):
            return UNKNOWN_SID
        if websocket and (session.upgraded or session.upgrading):
            return UPGRADED
        return None

    def _get_socket(self, sid: str) -> Any:
        session = self.sockets[sid]
        if session.closed and getattr(session, "flush_on_close", False):
            return session  # its next GET gets what the server's close left queued
        return super()._get_socket(sid)

    def _ok(
        self, packets: Any = None, headers: Any = None, jsonp_index: int | None = None
    ) -> dict[str, Any]:
        response: dict[str, Any] = super()._ok(packets, headers, jsonp_index)
        if packets is None:
            response["response"] = b"ok"  # what Node answers a POST
        return response


class _WebSocketSwitch:
    """engineio's `_async["websocket"]`: the engine's own WebSocket for a direct session
    (engine.transport.direct), python-engineio's ASGI one for a session hypercorn serves."""

    __slots__ = ("handler", "server")

    def __init__(self, handler: Callable[[Any], Awaitable[Any]], server: Any) -> None:
        self.handler = handler
        self.server = server

    async def __call__(self, environ: dict[str, Any]) -> Any:
        ws = environ.get(DIRECT)
        if ws is not None:
            return await ws.serve(self.handler)
        return await _asgi.WebSocket(self.handler, self.server)(environ)


async def make_response(status: str, headers: list[Any], payload: Any, environ: Any) -> Any:
    """engineio's response writer: a plain HTTP response on a direct session's connection."""
    ws = environ.get(DIRECT)
    if ws is None:
        return await _asgi.make_response(status, headers, payload, environ)
    body = payload if isinstance(payload, bytes) else str(payload or "").encode()
    ws.respond(int(status.split(" ")[0]), list(headers), body)
    return None


async def _bad_request(scope: Scope, receive: Receive, send: Send, code: int, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 400, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_protocol(socket_class: type[ProtocolSocket] = ProtocolSocket) -> None:
    """Make python-engineio create `socket_class` sessions (process-wide; idempotent)."""
    check_engineio()
    async_socket.AsyncSocket = socket_class
