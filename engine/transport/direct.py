"""The engine's own WebSocket server for Socket.IO sessions, beside hypercorn on one port.

Every connection is accepted by hypercorn's listener (`engine.transport.patches` wraps its
`TCPServer.run`). Before hypercorn parses anything, `DirectWebSockets.take` reads the request
head: a clean HTTP/1.1 WebSocket handshake for the Socket.IO path is served here, everything
else (long-polling, the admin and metrics routes, a handshake with anything unusual, a
permessage-deflate offer when the profile allows compression) is handed to hypercorn with the
bytes already read, and hypercorn serves it exactly as before.

Why: per WebSocket session hypercorn keeps an HTTP/1.1 protocol object, a WebSocket stream
with a wsproto connection, a task group with a second task for the ASGI app, asyncio events
and an ASGI message queue, and every frame crosses h11/wsproto, ASGI message dicts and that
queue. Here a session is one task (the connection's own) reading frames straight from the
stream, and a packet sent is one `transport.write` (no writer task, no queue hand-off)
unless the peer stops reading. The Engine.IO and Socket.IO protocols stay python-engineio's
and python-socketio's: this module only replaces the RFC 6455 layer under them.

RFC 6455 as a server: client frames must be masked; control frames are at most 125 bytes and
never fragmented; continuation frames only inside a fragmented message; text must be UTF-8; a
ping gets a pong; a close is answered with a close. A message over `max_payload_bytes` aborts
the TCP connection as soon as its frame header says so (no close handshake, nothing more
read). A malformed Engine.IO text packet closes the WebSocket with 1002, as the handshake
gate does on hypercorn's path (`engine.transport.hardening`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from engine.guard import Guard
from engine.refusal import Refusal
from engine.transport.hardening import (
    engineio_packet_problem,
    malformed,
    peer_ip,
    refusal_response,
)
from engine.transport.protocol import DIRECT
from engine.transport.rfc6455 import (
    BINARY,
    CLOSE,
    CONTINUATION,
    INVALID_DATA,
    MAX_HEAD_BYTES,
    NORMAL,
    PING,
    PONG,
    PROTOCOL_ERROR,
    TEXT,
    Handshake,
    ProtocolViolation,
    accept_key,
    frame,
    parse_handshake,
    unmask,
    valid_close_code,
)

log = logging.getLogger("engine.transport.direct")

READ_BYTES = 64 * 1024
CLOSE_WAIT_SECONDS = 2.0  # after our close frame, how long the peer has to answer it
_REASONS = {101: "Switching Protocols", 400: "Bad Request", 401: "Unauthorized"}
_REASONS |= {403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error"}

_SERVERS: weakref.WeakKeyDictionary[Any, DirectWebSockets] = weakref.WeakKeyDictionary()


def register(app: Any, direct: DirectWebSockets) -> None:
    """Serve the Socket.IO WebSockets of the ASGI `app` with `direct` (one per engine)."""
    _SERVERS[app] = direct


async def take_connection(server: Any) -> bool:
    """For hypercorn's `TCPServer.run` wrapper: True if the engine served this connection."""
    try:
        direct = _SERVERS.get(getattr(server.app, "app", None))
    except TypeError:  # an app that cannot be weakly referenced is never registered
        return False
    return direct is not None and await direct.take(server)


class _Replay:
    """A StreamReader that first returns the bytes already read (for hypercorn's `read`)."""

    __slots__ = ("prefix", "reader")

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader) -> None:
        self.prefix = prefix
        self.reader = reader

    async def read(self, n: int = -1) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        return await self.reader.read(n)

    def at_eof(self) -> bool:
        return not self.prefix and self.reader.at_eof()


class DirectWebSocket:
    """One WebSocket connection: python-engineio's `ws` object (`wait`, `send`, `close`)."""

    __slots__ = (  # __dict__: python-socketio's admin instrumentation wraps `send` per socket
        "__dict__",
        "_buffer",
        "_closed",
        "_fragments",
        "_fragments_size",
        "_kind",
        "_sent_close",
        "guard",
        "key",
        "limit",
        "on_accept",
        "reader",
        "sid",
        "status",
        "writer",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake: Handshake,
        limit: int,
        guard: Guard,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.key = handshake.key
        self.limit = limit
        self.guard = guard
        self.sid = ""
        self._buffer = bytearray(handshake.rest)
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._kind = TEXT
        self._sent_close = False
        self._closed = False
        self.status = 0  # of the HTTP response written (101 once upgraded)
        # awaited once the upgrade is written (the access log, when it is on)
        self.on_accept: Callable[[], Awaitable[None]] | None = None

    # -- HTTP, before the upgrade ----------------------------------------------------------------

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """A plain HTTP response instead of the upgrade; the connection closes after it."""
        self.status = status
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
        names = set()
        for name, value in headers:
            names.add(name.lower())
            lines.append(f"{name}: {value}")
        if "content-length" not in names:
            lines.append(f"content-length: {len(body)}")
        lines.append(f"date: {formatdate(usegmt=True)}")  # RFC 9110: a server with a clock
        lines.append("connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._closed = True

    def refuse(self, refusal: Refusal) -> None:
        self.respond(*refusal_response(refusal))

    def accept(self) -> None:
        self.status = 101
        self.writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: " + accept_key(self.key).encode("ascii") + b"\r\n\r\n"
        )

    async def serve(self, handler: Callable[[Any], Awaitable[Any]]) -> str:
        """engineio's `ws(environ)`: accept, then run the session's handler on this socket."""
        self.sid = getattr(getattr(handler, "__self__", None), "sid", "")
        self.accept()
        if self.on_accept is not None:
            await self.on_accept()
            self.on_accept = None
        await handler(self)
        return ""

    # -- engineio's ws interface -------------------------------------------------------------

    direct = True  # the session writes packets synchronously (engine.transport.fastpath)

    async def wait(self) -> str | bytes:
        """The next message; OSError once the connection is closed or broken."""
        while True:
            try:
                message = self._next_message()
            except ProtocolViolation as exc:
                self._fail(exc.code, str(exc))
                raise OSError(str(exc)) from None
            if message is not None:
                if isinstance(message, str):
                    problem = engineio_packet_problem(message)
                    if problem is not None:
                        malformed(self.guard, self.sid, problem)
                        self._fail(PROTOCOL_ERROR, problem)
                        raise OSError(problem)
                return message
            if self._closed:
                raise OSError("WebSocket closed")
            data = await self.reader.read(READ_BYTES)
            if not data:
                self._closed = True
                raise OSError("connection closed by the peer")
            self._buffer += data

    async def send(self, message: str | bytes) -> None:
        if not self.write(message):
            raise OSError("WebSocket closed")
        if self.backlogged():
            await self.writer.drain()

    def write(self, message: str | bytes) -> bool:
        """Send one message now; False if the connection is closing."""
        if self._sent_close or self.writer.transport.is_closing():
            return False
        if isinstance(message, str):
            if message == "6":
                return True  # NOOP ends a long-poll; it never goes over a WebSocket
            self.writer.write(frame(TEXT, message.encode("utf-8")))
        else:
            self.writer.write(frame(BINARY, message))
        return True

    def backlogged(self) -> bool:
        """The peer is not reading: the transport holds more than its high-water mark."""
        transport = self.writer.transport
        return transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]

    async def close(self) -> None:
        self.close_now()

    def close_now(self, code: int = NORMAL) -> None:
        """Send our close frame; the peer's answer (or `CLOSE_WAIT_SECONDS`) ends the TCP."""
        if self._sent_close:
            return
        self._sent_close = True
        transport = self.writer.transport
        if transport.is_closing():
            return
        self.writer.write(frame(CLOSE, code.to_bytes(2, "big")))
        asyncio.get_running_loop().call_later(CLOSE_WAIT_SECONDS, _abort_if_open, transport)

    # -- frames ------------------------------------------------------------------------------

    def _fail(self, code: int, reason: str) -> None:
        log.info("closing WebSocket %s: %s (%d)", self.sid or "?", reason, code)
        self.close_now(code)
        self._closed = True

    def _next_message(self) -> str | bytes | None:
        """Parse complete frames from the buffer until a whole message is ready (or None)."""
        buffer = self._buffer
        while True:
            size = len(buffer)
            if size < 2:
                return None
            first, second = buffer[0], buffer[1]
            if first & 0x70:
                raise ProtocolViolation(PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise ProtocolViolation(PROTOCOL_ERROR, "unmasked client frame")
            opcode = first & 0x0F
            length = second & 0x7F
            start = 6
            if length == 126:
                if size < 4:
                    return None
                length = int.from_bytes(buffer[2:4], "big")
                start = 8
            elif length == 127:
                if size < 10:
                    return None
                length = int.from_bytes(buffer[2:10], "big")
                start = 14
            if opcode >= CLOSE:
                if length > 125 or not first & 0x80:
                    raise ProtocolViolation(PROTOCOL_ERROR, "invalid control frame")
            elif self._fragments_size + length > self.limit:
                # over the limit: drop the connection now, before reading the payload
                log.info("aborting WebSocket %s: message over %d bytes", self.sid, self.limit)
                self.writer.transport.abort()
                self._closed = True
                raise OSError("message too large")
            end = start + length
            if size < end:
                return None
            payload = unmask(buffer[start:end], buffer[start - 4 : start])
            if end == size:  # the common case: a fresh buffer keeps no capacity while idle
                self._buffer = buffer = bytearray()
            else:
                del buffer[:end]
            if opcode >= CLOSE:
                self._control(opcode, payload)
                continue
            message = self._data(opcode, bool(first & 0x80), payload)
            if message is not None:
                return message

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            if not self._sent_close:
                self.writer.write(frame(PONG, payload))
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else NORMAL
            if len(payload) == 1 or not valid_close_code(code):
                code = PROTOCOL_ERROR
            self.close_now(code)
            self.writer.close()  # our close is answered or was sent first: the TCP ends
            self._closed = True
            raise OSError("closed by the peer")
        elif opcode != PONG:
            raise ProtocolViolation(PROTOCOL_ERROR, f"unknown opcode {opcode}")

    def _data(self, opcode: int, final: bool, payload: bytes) -> str | bytes | None:
        if opcode == CONTINUATION:
            if self._fragments is None:
                raise ProtocolViolation(PROTOCOL_ERROR, "continuation without a message")
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            if not final:
                return None
            payload = b"".join(self._fragments)
            opcode = self._kind
            self._fragments = None
            self._fragments_size = 0
        elif opcode in (TEXT, BINARY):
            if self._fragments is not None:
                raise ProtocolViolation(PROTOCOL_ERROR, "new message inside a fragmented one")
            if not final:
                self._fragments = [payload]
                self._fragments_size = len(payload)
                self._kind = opcode
                return None
        else:
            raise ProtocolViolation(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if opcode == BINARY:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(INVALID_DATA, "text message is not UTF-8") from None


def _abort_if_open(transport: asyncio.BaseTransport) -> None:
    if not transport.is_closing():
        transport.abort()  # type: ignore[attr-defined]


class DirectWebSockets:
    """What the direct path needs from one engine: its Engine.IO server, guard and limits."""

    def __init__(
        self,
        eio: Any,
        guard: Guard,
        socketio_path: str,
        max_payload_bytes: int,
        compression: bool,
    ) -> None:
        self.eio = eio  # engine.transport.protocol.EngineIOServer
        self.guard = guard
        path = "/" + socketio_path.strip("/")
        self.paths = (path, path + "/")
        self.first_line = tuple(f"GET {p}?".encode("ascii") for p in self.paths)
        self.limit = max_payload_bytes
        self.compression = compression

    async def take(self, server: Any) -> bool:
        """Serve `server`'s connection here if it is a Socket.IO WebSocket handshake.

        False: hypercorn serves it (its reader replays the bytes read here).
        """
        reader: asyncio.StreamReader = server.reader
        data = b""
        try:
            async with asyncio.timeout(server.config.keep_alive_timeout):
                # the request line first (a client may send it in pieces), then the whole head
                while self._may_be_ours(data) and b"\r\n" not in data:
                    more = await reader.read(READ_BYTES)
                    if not more:
                        break
                    data += more
                line = data.split(b"\r\n", 1)[0]
                if not line.startswith(self.first_line) or b"transport=websocket" not in line:
                    server.reader = _Replay(data, reader)
                    return False
                while b"\r\n\r\n" not in data and len(data) < MAX_HEAD_BYTES:
                    more = await reader.read(READ_BYTES)
                    if not more:
                        break
                    data += more
        except (TimeoutError, OSError):
            server.writer.transport.abort()
            return True
        handshake = parse_handshake(data, self.paths, self.compression)
        if handshake is None:
            server.reader = _Replay(data, reader)
            return False
        data = line = b""  # this frame lives as long as the connection: keep no head bytes
        try:
            await self._serve(server, handshake)
        except Exception:  # one connection's failure is logged once and ends only it
            log.exception("WebSocket connection failed")
            server.writer.transport.abort()
        return True

    def _may_be_ours(self, data: bytes) -> bool:
        """Whether the bytes so far can still start a request line for the Socket.IO path."""
        if len(data) >= MAX_HEAD_BYTES:
            return False
        return any(p.startswith(data) or data.startswith(p) for p in self.first_line)

    async def _serve(self, server: Any, handshake: Handshake) -> None:
        writer: asyncio.StreamWriter = server.writer
        ws = DirectWebSocket(server.reader, writer, handshake, self.limit, self.guard)
        peer = writer.get_extra_info("peername") or ("", 0)
        remote = peer_ip(str(peer[0]))
        environ = _environ(handshake, remote, peer[1], server, ws)
        access = server.config.log if server.config.accesslog is not None else None
        if access is not None:  # as hypercorn: one line when the upgrade is answered
            secure = writer.get_extra_info("ssl_object") is not None
            request = _scope(handshake, peer, secure)

            async def log_upgrade() -> None:
                await access.access(request, {"status": 101, "headers": []}, 0.0)

            ws.on_accept = log_upgrade
        new_session = not parse_qs(handshake.query).get("sid")
        ip = self.guard.client_ip(remote, handshake.headers) if new_session else ""
        handshake.headers, handshake.rest = {}, b""  # the environ has them: not kept twice
        try:
            if new_session:  # bans and the connect rate, before any Engine.IO work
                refusal = await self.guard.admit_handshake(ip)
                if refusal is not None:
                    ws.refuse(refusal)
                    return
            await self.eio.handle_direct(environ)
        finally:
            environ.pop(DIRECT, None)
            ws.on_accept = None
            if not writer.transport.is_closing():
                writer.close()
            if access is not None and ws.status not in (0, 101):
                await access.access(request, {"status": ws.status, "headers": []}, 0.0)


def _environ(
    handshake: Handshake, remote: str, port: Any, server: Any, ws: DirectWebSocket
) -> dict[str, Any]:
    """The WSGI-style environ python-engineio and python-socketio read (headers as HTTP_*)."""
    secure = server.writer.get_extra_info("ssl_object") is not None
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": handshake.path,
        "QUERY_STRING": handshake.query,
        "RAW_URI": f"{handshake.path}?{handshake.query}",
        "SCRIPT_NAME": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote,
        "REMOTE_PORT": str(port),
        "wsgi.url_scheme": "https" if secure else "http",
        DIRECT: ws,
    }
    for name, value in handshake.headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    if "HTTP_X_FORWARDED_PROTO" in environ:
        environ["wsgi.url_scheme"] = environ["HTTP_X_FORWARDED_PROTO"]
    return environ


def _scope(handshake: Handshake, peer: Any, secure: bool) -> dict[str, Any]:
    """The ASGI-like request hypercorn's access logger formats (only when it is on)."""
    return {
        "type": "websocket",
        "http_version": "1.1",
        "scheme": "wss" if secure else "ws",
        "method": "GET",
        "path": handshake.path,
        "query_string": handshake.query.encode("latin-1"),
        "headers": [(k.encode(), v.encode("latin-1")) for k, v in handshake.headers.items()],
        "client": tuple(peer[:2]),
    }
