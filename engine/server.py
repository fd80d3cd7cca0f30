"""`EngineServer`: python-socketio's AsyncServer with the engine's gates.

This is the one module that overrides python-socketio internals (`_handle_connect`,
`_handle_event_internal`): those are the only places that know both the namespace and whether
the client asked for an acknowledgement, which the refusal contract needs. Everything else is
public API. The gates decide nothing themselves; policies do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio
from socketio import packet

from engine.monitoring import Monitor
from engine.namespaces import BUILTIN_EVENTS, EngineNamespace
from engine.policies.origin import OriginMatcher
from engine.profile.model import Profile
from engine.refusal import Refusal

log = logging.getLogger("engine.server")

INVALID_NAMESPACE = Refusal("invalid_namespace", "Invalid namespace")


def cors_setting(origins: tuple[str, ...]) -> Any:
    """python-engineio's `cors_allowed_origins` for our origin patterns.

    An empty list means same-origin only (engineio's None); wildcard patterns need a matcher.
    """
    if not origins:
        return None
    if origins == ("*",):
        return "*"
    matcher = OriginMatcher.from_patterns(list(origins))
    return lambda origin: matcher.allows(origin)


class EngineServer(socketio.AsyncServer):  # type: ignore[misc]
    """The Socket.IO server of one profile."""

    def __init__(self, profile: Profile, monitor: Monitor) -> None:
        server = profile.server
        super().__init__(
            async_mode="asgi",
            transports=list(server.transports),
            ping_interval=server.ping_interval_seconds,
            ping_timeout=server.ping_timeout_seconds,
            max_http_buffer_size=server.max_payload_bytes,
            cors_allowed_origins=cors_setting(server.allowed_origins),
            http_compression=server.compression,
            compression_threshold=server.compression_threshold_bytes,
            logger=False,
            engineio_logger=False,
            namespaces=list(profile.namespaces),
        )
        self.profile = profile
        self.monitor = monitor
        self.draining = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None
        self.engine_namespaces: dict[str, EngineNamespace] = {}
        for name, spec in profile.namespaces.items():
            namespace = EngineNamespace(spec)
            self.register_namespace(namespace)
            self.engine_namespaces[name] = namespace

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        name = namespace or "/"
        if name not in self.engine_namespaces:
            await self._send_packet(
                eio_sid,
                self.packet_class(
                    packet.CONNECT_ERROR, data=INVALID_NAMESPACE.envelope(), namespace=name
                ),
            )
            return
        await super()._handle_connect(eio_sid, namespace, data)

    async def _handle_event_internal(
        self,
        server: socketio.AsyncServer,
        sid: str,
        eio_sid: str,
        data: list[Any],
        namespace: str,
        id: int | None,
    ) -> None:
        handler = self.engine_namespaces[namespace]
        event = data[0]
        self.in_flight += 1
        try:
            self._admit_event(handler, event)
            result = await handler.trigger_event(event, sid, *data[1:])
        except Refusal as refusal:
            await self._refuse_event(eio_sid, sid, namespace, id, refusal)
            return
        finally:
            self.in_flight -= 1
            self._check_idle()
        if result is self.not_handled or id is None:
            return
        args = [] if result is None else list(result) if isinstance(result, tuple) else [result]
        await self._send_packet(
            eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=id, data=args)
        )

    def _admit_event(self, handler: EngineNamespace, event: Any) -> None:
        events = handler.spec.events
        if not isinstance(event, str):
            raise Refusal("invalid_payload", "event name must be a string")
        if event in BUILTIN_EVENTS:
            return
        if events is not None and event not in events:
            raise Refusal("unknown_event", f"event '{event}' is not accepted here")

    async def _refuse_event(
        self, eio_sid: str, sid: str, namespace: str, id: int | None, refusal: Refusal
    ) -> None:
        body = refusal.envelope()
        if id is not None:
            await self._send_packet(
                eio_sid,
                self.packet_class(packet.ACK, namespace=namespace, id=id, data=[{"error": body}]),
            )
        else:
            await self.emit("error", body, to=sid, namespace=namespace)
        if refusal.disconnect:
            await self.disconnect(sid, namespace=namespace)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        if self.draining:
            return False
        return await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        self._check_idle()

    def _check_idle(self) -> None:
        if self._idle is not None and not self.eio.sockets and self.in_flight == 0:
            self._idle.set()

    async def close_all(self) -> None:
        """Refuse new sessions and close every open one cleanly.

        Clients see a transport close and reconnect (to another node behind a balancer).
        """
        self.draining = True
        self._idle = asyncio.Event()
        for eio_sid, session in list(self.eio.sockets.items()):
            # wait=False: a peer that already vanished must not hold the drain hostage
            await session.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
            self.eio.sockets.pop(eio_sid, None)
        self._check_idle()

    async def drained(self) -> None:
        """Wait until no session is open and no handler is running."""
        if self._idle is not None:
            await self._idle.wait()
