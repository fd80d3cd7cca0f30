"""`EngineServer`: python-socketio's AsyncServer with the engine's gates.

This is the one module that overrides python-socketio internals. `_handle_eio_message` is
taken over because it is the only place that sees a packet *before* it is decoded (payload
limits must stop an expensive packet cheaply, and a malformed one must close its session with
one log line instead of a traceback); `_handle_event_internal` because it is the only place
that knows both the namespace and whether the client asked for an acknowledgement, which the
refusal contract needs. Decisions come from `engine.guard` and the pure policies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import socketio
from socketio import exceptions, packet

from engine.guard import Guard, Peer
from engine.monitoring import Monitor
from engine.namespaces import EngineNamespace
from engine.policies.origin import OriginMatcher
from engine.progress import ProgressHub
from engine.recovery import MemoryRecoveryStore, Recovery, RecoveryOptions, RecoveryStore
from engine.recovery.holdback import Holdback
from engine.refusal import Refusal
from engine.runtime import Runtime, RuntimeRef
from engine.state import StateStore
from engine.transitions import Transitions
from engine.transport.fastpath import json_codec, prescan_packet
from engine.transport.protocol import EngineIOServer

log = logging.getLogger("engine.server")

# exactly what the reference server sends for a namespace it does not have
INVALID_NAMESPACE_DATA = {"message": "Invalid namespace"}


# event names a client may not send (socket.io-parser's RESERVED_EVENTS)
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
_AFTER_CONNECT = frozenset(
    {packet.DISCONNECT, packet.EVENT, packet.ACK, packet.BINARY_EVENT, packet.BINARY_ACK}
)


class Malformed(Exception):
    """A packet that is not valid Socket.IO; its session is closed."""


def cors_setting(origins: tuple[str, ...]) -> Any:
    """python-engineio's `cors_allowed_origins` for our origin patterns.

    An empty list means same-origin only (engineio's None); wildcard patterns need a matcher.
    """
    if not origins:
        return None
    if origins == ("*",):
        return "*"
    matcher = OriginMatcher.from_patterns(list(origins))

    def allowed(origin: str | None, environ: Any) -> bool:
        return origin is not None and matcher.allows(origin)

    return allowed


class EngineServer(socketio.AsyncServer):  # type: ignore[misc]
    """The Socket.IO server of one profile."""

    def __init__(
        self,
        ref: RuntimeRef,
        monitor: Monitor,
        store: StateStore | None = None,
        recovery_store: RecoveryStore | None = None,
        *,
        client_manager: socketio.AsyncManager | None = None,
    ) -> None:
        profile = ref.runtime.profile
        server = profile.server
        super().__init__(
            client_manager=client_manager,  # None: python-socketio's in-memory manager
            async_mode="asgi",
            transports=list(server.transports),
            ping_interval=server.ping_interval_seconds,
            ping_timeout=server.ping_timeout_seconds,
            max_http_buffer_size=server.max_payload_bytes,
            cors_allowed_origins=cors_setting(server.allowed_origins),
            json=json_codec(),
            http_compression=server.compression,
            compression_threshold=server.compression_threshold_bytes,
            logger=False,
            engineio_logger=False,
            namespaces=list(profile.namespaces),
            # inline: handlers run in the connection's receive loop, one event at a time
            async_handlers=server.handler_mode == "task",
        )
        self.ref = ref
        self.monitor = monitor
        self.guard = Guard(ref, monitor, store)
        self.guard.on_ban = self._ban_closes
        self.transitions = Transitions(self)
        monitor.add_refresher(self.snapshot_rooms)
        self.draining = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self.engine_namespaces: dict[str, EngineNamespace] = {}
        self.recovery = Recovery(self._recovery_options, recovery_store or MemoryRecoveryStore())
        self._transport_lost: set[str] = set()
        self.holdback = Holdback()  # packets to resuming connections, until their replay
        self.progress = ProgressHub(lambda: self.runtime.profile.progress, self._emit_to_room)
        for name in profile.namespaces:
            self.add_namespace(name)
        admin = profile.monitoring.admin_ui
        self.admin_ui_namespace: str | None = None
        if admin.enabled:
            # the official Socket.IO Admin UI, through python-socketio's own instrumentation
            self.admin_ui_namespace = admin.namespace
            self.instrument(
                auth={"username": admin.username, "password": admin.password},
                mode=admin.mode,
                read_only=admin.read_only,
                namespace=admin.namespace,
            )

    @property
    def runtime(self) -> Runtime:
        return self.ref.runtime

    def _recovery_options(self, namespace: str) -> RecoveryOptions | None:
        spec = self.runtime.namespaces.get(namespace)
        return spec.recovery if spec is not None else None

    def add_namespace(self, name: str) -> EngineNamespace:
        """Serve a declared namespace (at start, or when a reload adds it)."""
        namespace = EngineNamespace(name, self.ref)
        self.register_namespace(namespace)
        self.engine_namespaces[name] = namespace
        if isinstance(self.namespaces, list) and name not in self.namespaces:
            self.namespaces.append(name)
        return namespace

    async def remove_namespace(self, name: str, code: str, message: str) -> int:
        """Stop serving `name`: its clients get `code` as a disconnect reason. Returns how many."""
        namespace = self.engine_namespaces.pop(name, None)
        if isinstance(self.namespaces, list) and name in self.namespaces:
            self.namespaces.remove(name)
        if namespace is None:
            return 0
        sids = [sid for sid, _ in self.manager.get_participants(name, None)]
        for sid in sids:
            await self.notify_and_disconnect(name, sid, Refusal(code, message))
        self.namespace_handlers.pop(name, None)
        return len(sids)

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """python-socketio's server-side disconnect, plus the guard's and monitor's books.

        python-socketio does not route its own `disconnect()` through `_handle_disconnect`, so
        without this a member disconnected by the server (maintenance, a removed namespace, a
        handler calling `disconnect`) would keep counting against its connection caps.
        """
        name = namespace or "/"
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if await self.guard.disconnected(name, sid) is not None:
            self.monitor.connection_closed(name, "server disconnect")

    async def notify_and_disconnect(self, namespace: str, sid: str, refusal: Refusal) -> None:
        """Tell one connection why (an `error` event with the envelope), then disconnect it."""
        try:
            await super().emit("error", refusal.envelope(), to=sid, namespace=namespace)
            await self.disconnect(sid, namespace=namespace)
        except Exception:  # the client may be gone already
            log.debug("disconnecting %s from %s failed", sid, namespace, exc_info=True)

    def _ban_closes(self, eio_sid: str) -> None:
        self.start_background_task(self._close_session, eio_sid)

    def _engineio_server_class(self) -> type[EngineIOServer]:
        return EngineIOServer

    # -- Engine.IO sessions ------------------------------------------------------------------

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        if self.draining:
            return False
        self.guard.open_peer(eio_sid, environ)
        loop = asyncio.get_running_loop()
        self._deadlines[eio_sid] = loop.call_later(
            self.runtime.server.connect_timeout_seconds, self._connect_deadline, eio_sid
        )
        return await super()._handle_eio_connect(eio_sid, environ)

    def _connect_deadline(self, eio_sid: str) -> None:
        self._deadlines.pop(eio_sid, None)
        peer = self.guard.peers.get(eio_sid)
        if peer is not None and not peer.namespaces:
            self.guard.violation(eio_sid, "connect_timeout", "no CONNECT within the timeout")
            self.start_background_task(self._close_session, eio_sid)

    async def _close_session(self, eio_sid: str) -> None:
        session = self.eio.sockets.get(eio_sid)
        if session is not None:
            await session.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
            if not session.flush_on_close:
                # a polling client without a pending GET gets what was queued (a connect_error,
                # the CLOSE) on its next GET, which ends the session (engine.transport.protocol)
                self.eio.sockets.pop(eio_sid, None)
            # engineio's close() only queues a CLOSE packet, so a websocket stays open until
            # the client closes it (a hostile one never does). None ends engineio's writer
            # task, which closes the websocket; a long-poll GET just gets the CLOSE packet.
            session.queue.put_nowait(None)

    async def close_session(self, eio_sid: str) -> None:
        """End one Engine.IO session at once, nothing more sent (an Engine.IO parse error: as
        Node, the session is gone and its next request gets 400)."""
        session = self.eio.sockets.pop(eio_sid, None)
        if session is not None:
            await session.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_ERROR)
            session.queue.put_nowait(None)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        timer = self._deadlines.pop(eio_sid, None)
        if timer is not None:
            timer.cancel()
        # the transport is gone: its namespace sessions are recoverable (socket.io's
        # "transport close", "ping timeout", "forced server close"), unlike a DISCONNECT packet
        # or `disconnect(sid)`
        self._transport_lost.add(eio_sid)
        try:
            await super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            self._transport_lost.discard(eio_sid)
            self.holdback.forget(eio_sid)
        self.guard.close_peer(eio_sid)
        self._check_idle()

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        session = self.eio.sockets.get(eio_sid)
        if session is None or session.closed:
            return  # frames still arriving on a session we closed are dropped unread
        peer = self.guard.peers.get(eio_sid)
        try:
            await self._dispatch(eio_sid, peer, data)
        except Malformed as exc:
            log.warning("closing session %s: malformed packet: %s", eio_sid, exc)
            self.guard.violation(eio_sid, "malformed_packet", str(exc))
            await self._close_session(eio_sid)

    async def _dispatch(self, eio_sid: str, peer: Peer | None, data: str | bytes) -> None:
        limits = self.runtime.security.payload
        if eio_sid in self._binary_packet:
            if not isinstance(data, bytes):
                raise Malformed("text frame while binary attachments were expected")
            if peer is not None:
                peer.attachment_bytes += len(data)
                if peer.attachment_bytes > limits.max_attachment_bytes:
                    del self._binary_packet[eio_sid]
                    raise Malformed(f"attachments exceed {limits.max_attachment_bytes} bytes")
            pkt = self._binary_packet[eio_sid]
            if pkt.add_attachment(data):
                del self._binary_packet[eio_sid]
                if peer is not None:
                    peer.attachment_bytes = 0
                if pkt.packet_type == packet.BINARY_EVENT:
                    await self._deliver_event(eio_sid, pkt.namespace or "/", pkt.id, pkt.data)
                else:
                    self._check_ack(eio_sid, pkt.namespace or "/", pkt.id, pkt.data)
                    await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
            return
        if not isinstance(data, str):
            raise Malformed("binary frame without a binary packet header")
        violation = prescan_packet(data, limits)
        if violation is not None:
            reason = f"{violation.reason} at {violation.path}"
            if violation.malformed:
                raise Malformed(reason)
            await self._refuse_raw(eio_sid, data, reason)
            return
        try:
            pkt = self.packet_class(encoded_packet=data)
        except Exception as exc:  # the decoder raises whatever json and int() raise
            raise Malformed(f"undecodable packet ({type(exc).__name__})") from None
        namespace = pkt.namespace or "/"
        kind = pkt.packet_type
        if kind == packet.CONNECT:
            if pkt.data is not None and not isinstance(pkt.data, dict):
                raise Malformed("CONNECT payload must be an object")
            if self._connected(eio_sid, namespace):
                raise Malformed(f"second CONNECT to {namespace}")  # as Node: closed
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind not in _AFTER_CONNECT:
            raise Malformed(f"packet type {kind} is not sent by clients")
        elif not self._connected(eio_sid, namespace):
            # as Node: any packet for a namespace the session has not joined (this includes
            # an event as the first packet) closes the connection
            raise Malformed(f"packet type {kind} for {namespace}, which is not connected")
        elif kind == packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        elif kind == packet.EVENT:
            self._event_arrived(namespace, pkt.data, len(data))
            await self._deliver_event(eio_sid, namespace, pkt.id, pkt.data)
        elif kind == packet.ACK:
            self._check_ack(eio_sid, namespace, pkt.id, pkt.data)
            await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
        else:  # BINARY_EVENT, BINARY_ACK: the attachments follow in binary frames
            if kind == packet.BINARY_EVENT:
                self._event_arrived(namespace, pkt.data, len(data))
            self._binary_packet[eio_sid] = pkt

    def _connected(self, eio_sid: str, namespace: str) -> bool:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        return sid is not None and bool(self.manager.is_connected(sid, namespace))

    async def _deliver_event(
        self, eio_sid: str, namespace: str, ack_id: int | None, data: list[Any]
    ) -> None:
        """Dispatch an EVENT, unless its name is one the Socket.IO protocol reserves."""
        if data[0] in RESERVED_EVENTS:
            # Node's parser rejects these names; they are refused like an unknown event
            reason = f"event name {data[0]!r} is reserved"
            self.guard.violation(eio_sid, "reserved_event", reason, code="unknown_event")
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            await self._refuse_event(
                eio_sid, sid, namespace, ack_id, Refusal("unknown_event", reason)
            )
            return
        await self._handle_event(eio_sid, namespace, ack_id, data)

    def _event_arrived(self, namespace: str, data: Any, nbytes: int) -> None:
        """Check an EVENT's structure (text or binary) and count it."""
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise Malformed("EVENT payload must be an array starting with the event name")
        self.monitor.event_in(namespace, data[0], nbytes)

    def _check_ack(self, eio_sid: str, namespace: str, ack_id: Any, data: Any) -> None:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if not isinstance(data, list):
            raise Malformed("ACK payload must be an array")
        if sid is None or ack_id not in self.manager.callbacks.get(sid, {}):
            raise Malformed(f"ACK for unknown id {ack_id!r}")

    async def _refuse_raw(self, eio_sid: str, data: str, reason: str) -> None:
        """An over-limit packet: refused without decoding it (its header is cheap to read)."""
        header = _header(data)
        if header is None:
            raise Malformed(reason)
        kind, namespace, ack_id = header
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if kind not in (packet.EVENT, packet.BINARY_EVENT) or sid is None:
            raise Malformed(reason)
        self.guard.violation(eio_sid, "payload_refused", reason)
        await self._refuse_event(
            eio_sid, sid, namespace, ack_id, Refusal("invalid_payload", reason)
        )

    # -- namespace connections ---------------------------------------------------------------

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        name = namespace or "/"
        if name not in self.engine_namespaces and name != self.admin_ui_namespace:
            self.monitor.connect_refused(name, "invalid_namespace")
            await self._send_packet(
                eio_sid,
                self.packet_class(
                    packet.CONNECT_ERROR, data=dict(INVALID_NAMESPACE_DATA), namespace=name
                ),
            )
            return
        if name in self.engine_namespaces and self.recovery.enabled(name):
            await self._connect_recoverable(eio_sid, name, data)
        else:
            await super()._handle_connect(eio_sid, namespace, data)
        peer = self.guard.peers.get(eio_sid)
        if peer is not None and peer.namespaces:
            # only an accepted CONNECT ends the deadline: a refused one must not let the
            # session idle without a namespace until the ping timeout
            timer = self._deadlines.pop(eio_sid, None)
            if timer is not None:
                timer.cancel()

    async def _connect_recoverable(self, eio_sid: str, name: str, data: Any) -> None:
        """python-socketio's `_handle_connect` for a namespace with recovery: the sid of a
        restorable session is reused, and the CONNECT reply carries `pid` (socket.io 4.6+)."""
        peer = self.guard.peers.get(eio_sid)
        claim = await self.recovery.claim(
            name, data, lambda: self.guard.identify(peer, data) if peer is not None else None
        )
        kept = claim.session.sid if claim is not None else None
        sid = await self._pre_connect(eio_sid, name, kept)
        if sid is None:
            await self._send_packet(
                eio_sid,
                self.packet_class(packet.CONNECT_ERROR, data="Unable to connect", namespace=name),
            )
            return
        if claim is not None:
            # from now on the connection is in rooms: what is sent to it waits for the replay
            self.holdback.hold(eio_sid, name)
            self.recovery.hold(name, sid, claim)
        try:
            success = await self._trigger_event("connect", name, sid, self.environ[eio_sid], data)
            fail_reason = None
        except exceptions.ConnectionRefusedError as exc:
            success, fail_reason = False, exc.error_args
        finally:
            if claim is not None:  # refused, or not recovered: nothing replayed
                await self._release(eio_sid, name, ())
        if success is False:
            self.recovery.abandon(name, sid)
            await self._send_packet(
                eio_sid, self.packet_class(packet.CONNECT_ERROR, data=fail_reason, namespace=name)
            )
            await self.manager.disconnect(sid, name, ignore_queue=True)
            return
        pid = await self.recovery.connected(name, sid)
        await self._send_packet(
            eio_sid, self.packet_class(packet.CONNECT, {"sid": sid, "pid": pid}, namespace=name)
        )
        await self.manager.connect(sid, name)

    async def _pre_connect(self, eio_sid: str, namespace: str, sid: str | None) -> str | None:
        """The manager's `pre_connect`, keeping a recovered session's sid when it is free."""
        manager = self.manager
        if sid is None or manager.eio_sid_from_sid(sid, namespace) is not None:
            found: str | None = await manager.pre_connect(eio_sid, namespace)
            return found
        if manager.sid_from_eio_sid(eio_sid, namespace) is not None:
            return None  # already connected
        manager.basic_enter_room(sid, namespace, None, eio_sid=eio_sid)
        manager.basic_enter_room(sid, namespace, sid, eio_sid=eio_sid)
        manager.pending_connect.setdefault(namespace, []).append(sid)
        return sid

    async def resume(self, namespace: EngineNamespace, sid: str) -> frozenset[str] | None:
        """Restore a claimed session once admitted: its rooms, then every missed event, then
        what was held back meanwhile (minus the replayed events). Returns the rooms joined
        with `join_room`, or None when nothing was recovered.

        The store may await (Redis), so: read the missed events, join the rooms, read what
        was appended in between (`catch_up`), send. Anything appended later reaches the
        connection live, after the replay (it is held back until then).
        """
        name = namespace.name
        member = self.guard.member(name, sid)
        if member is None:
            return None
        restored = await self.recovery.resume(name, sid, member.identity)
        if restored is None:
            return None
        eio_sid = self.manager.eio_sid_from_sid(sid, name)
        for room in restored.session.rooms:
            self.manager.basic_enter_room(sid, name, room, eio_sid=eio_sid)
        late = await self.recovery.catch_up(name, restored)
        if late is None:
            # the history moved past it while it was restored: all or nothing, so nothing is
            # sent; the client reconnects to a fresh session
            self.recovery.forget(name, sid)
            self.start_background_task(self.close_session, eio_sid)
            return None
        missed = [*restored.missed, *late]
        for stored in missed:
            pkt = self.packet_class(packet.EVENT, namespace=name, data=stored.packet())
            await super()._send_packet(eio_sid, pkt)
        await self._release(eio_sid, name, [stored.offset for stored in missed])
        log.debug("recovered %s in %s: %d events replayed", sid, name, len(missed))
        return restored.session.client_rooms

    async def _release(self, eio_sid: str, namespace: str, replayed: Sequence[str]) -> None:
        """`namespace` has replayed: send what was held back for the session, in order."""
        if not self.holdback.done(eio_sid, namespace, replayed):
            return
        while (item := self.holdback.next(eio_sid)) is not None:
            raw, pkt = item
            if raw:
                await super()._send_eio_packet(eio_sid, pkt)
            else:
                await super()._send_packet(eio_sid, pkt)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        if not self.holdback.put(eio_sid, False, pkt):
            await super()._send_packet(eio_sid, pkt)

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        holdback = self.holdback
        if holdback.put(eio_sid, True, eio_pkt) or holdback.late_copy(eio_sid, eio_pkt):
            return
        await super()._send_eio_packet(eio_sid, eio_pkt)

    async def suspend(self, namespace: EngineNamespace, sid: str, client_rooms: set[str]) -> None:
        """A connection to a namespace with recovery ends: keep its session when its
        transport was lost."""
        name = namespace.name
        if not self.recovery.enabled(name) and (name, sid) not in self.recovery.pids:
            return
        eio_sid = self.manager.eio_sid_from_sid(sid, name)
        member = self.guard.member(name, sid)
        await self.recovery.suspend(
            name,
            sid,
            recoverable=eio_sid in self._transport_lost,
            rooms=self.manager.get_rooms(sid, name),
            client_rooms=sorted(client_rooms),
            identity=member.identity if member is not None else None,
        )

    async def admit(self, namespace: EngineNamespace, sid: str, environ: Any, auth: Any) -> Any:
        """Called by EngineNamespace on CONNECT; refusal becomes a `connect_error` envelope."""
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace.name)
        peer = self.guard.peers.get(eio_sid)
        if peer is None:
            peer = self.guard.open_peer(eio_sid, environ)
        kept = self.recovery.identity_for(namespace.name, sid)
        try:
            member = await self.guard.admit_connect(
                namespace.spec, peer, sid, auth, eio_sid, identity=kept
            )
        except Refusal as refusal:
            error = exceptions.ConnectionRefusedError()
            error.error_args = refusal.connect_error_data()
            if refusal.disconnect:
                self.start_background_task(self._close_session, eio_sid)
            raise error from None
        return member

    async def _handle_disconnect(
        self, eio_sid: str, namespace: str | None, reason: Any = None
    ) -> None:
        name = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, name)
        await super()._handle_disconnect(eio_sid, namespace, reason)
        if sid is not None and await self.guard.disconnected(name, sid) is not None:
            self.monitor.connection_closed(name, str(reason or "client disconnect"))

    # -- events ------------------------------------------------------------------------------

    async def _handle_event_internal(
        self,
        server: socketio.AsyncServer,
        sid: str,
        eio_sid: str,
        data: list[Any],
        namespace: str,
        id: int | None,
    ) -> None:
        handler = self.engine_namespaces.get(namespace)
        if handler is None:  # the Admin UI's namespace: python-socketio's own handler
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
            return
        event, args = data[0], data[1:]
        member = self.guard.member(namespace, sid)
        self.in_flight += 1
        started = time.perf_counter()
        failed = False
        try:
            if member is None:
                raise Refusal("unauthorized", "not connected to this namespace")
            await self.guard.admit_event(
                handler.spec, member, event, args, handler.joined_count(sid)
            )
            try:
                result = await handler.trigger_event(event, sid, *args)
            except Refusal as refusal:  # room bookkeeping after the chain
                raise await self.guard.refused_by_handler(member, event, refusal) from None
        except Refusal as refusal:
            await self._refuse_event(eio_sid, sid, namespace, id, refusal)
            await self._charge_error(eio_sid, sid, namespace, member)
            return
        except Exception as exc:
            failed = True
            error_id = uuid.uuid4().hex[:16]
            log.error(
                "handler for %r in %s failed (error_id=%s)\n%s",
                event,
                namespace,
                error_id,
                traceback.format_exc(),
            )
            await self._refuse_event(eio_sid, sid, namespace, id, self._internal(exc, error_id))
            await self._charge_error(eio_sid, sid, namespace, member)
            return
        finally:
            self.in_flight -= 1
            self.monitor.handler_finished(
                namespace, event, time.perf_counter() - started, error=failed
            )
            self._check_idle()
        if result is self.not_handled or id is None:
            return
        args = [] if result is None else list(result) if isinstance(result, tuple) else [result]
        await self._send_packet(
            eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=id, data=args)
        )

    def _internal(self, exc: Exception, error_id: str) -> Refusal:
        """`internal` with an id to find the traceback by; the text only where allowed."""
        extra: dict[str, object] = {"error_id": error_id}
        if self.runtime.errors.expose_exception_text:
            extra["exception"] = f"{type(exc).__name__}: {exc}"[:500]
        return Refusal("internal", "the handler failed", policy="handler", extra=extra)

    async def _charge_error(self, eio_sid: str, sid: str, namespace: str, member: Any) -> None:
        if member is None:
            return
        refusal = await self.guard.charge_error(member)
        if refusal is not None:
            await self._send_packet(
                eio_sid,
                self.packet_class(
                    packet.EVENT, namespace=namespace, data=["error", refusal.envelope()]
                ),
            )
            await self._close_session(eio_sid)

    async def _refuse_event(
        self, eio_sid: str, sid: str, namespace: str, id: int | None, refusal: Refusal
    ) -> None:
        body = refusal.envelope()
        self.monitor.error(refusal.code)
        if id is not None:
            await self._send_packet(
                eio_sid,
                self.packet_class(packet.ACK, namespace=namespace, id=id, data=[{"error": body}]),
            )
        else:
            await self._send_packet(
                eio_sid,
                self.packet_class(packet.EVENT, namespace=namespace, data=["error", body]),
            )
        if refusal.disconnect:
            await self._close_session(eio_sid)

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Any = None,
        room: Any = None,
        skip_sid: Any = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
        ignore_queue: bool = False,
    ) -> None:
        await self.emit_recorded(
            event,
            data,
            to=to if to is not None else room,
            skip_sid=skip_sid,
            namespace=namespace,
            callback=callback,
            ignore_queue=ignore_queue,
        )

    async def emit_recorded(
        self,
        event: str,
        data: Any = None,
        to: Any = None,
        skip_sid: Any = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
        ignore_queue: bool = False,
    ) -> str | None:
        """`emit`, returning the event's offset when it is a recoverable one (else None)."""
        name = namespace or "/"
        offset: str | None = None
        if callback is not None:
            callback = self._timed(name, callback)
        else:
            stamped = await self.recovery.stamp(name, event, data, to, skip_sid)
            if stamped is not None:
                data, offset = stamped, stamped[-1]  # the offset travels as the last argument
        await super().emit(
            event,
            data=data,
            to=to,
            skip_sid=skip_sid,
            namespace=namespace,
            callback=callback,
            ignore_queue=ignore_queue,
        )
        members = self.manager.rooms.get(name, {}).get(to, ()) if isinstance(to, str | None) else ()
        self.monitor.event_out(name, event, _size(data), len(members))
        return offset

    async def _emit_to_room(self, event: str, data: Any, room: str, namespace: str) -> None:
        await self.emit(event, data, room=room, namespace=namespace)

    def _timed(self, namespace: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        started = time.perf_counter()

        def acknowledged(*args: Any) -> Any:
            self.monitor.ack_round_trip(namespace, time.perf_counter() - started)
            return callback(*args)

        return acknowledged

    def snapshot_rooms(self) -> None:
        """Room sizes for the monitor; python-socketio's own sid rooms are left out."""
        for namespace in self.engine_namespaces:
            rooms = self.manager.rooms.get(namespace, {})
            self.monitor.set_rooms(
                namespace,
                {
                    room: len(members)
                    for room, members in rooms.items()
                    if room is not None and room not in members
                },
            )

    # -- draining ----------------------------------------------------------------------------

    def _check_idle(self) -> None:
        open_sessions = any(not (s.closing or s.closed) for s in self.eio.sockets.values())
        if self._idle is not None and not open_sessions and self.in_flight == 0:
            self._idle.set()

    async def close_all(self, drain_seconds: float = 0.0) -> None:
        """Refuse new sessions, tell every client, close every session (spread over time).

        Clients see a transport close and reconnect (to another node behind a balancer).
        """
        self.draining = True
        self._idle = asyncio.Event()
        await self.transitions.drain(drain_seconds)
        self._check_idle()

    async def close_transport(self, eio_sid: str) -> None:
        """Close one session's transport as a node going away does, so its client reconnects.

        Over WebSocket the socket is just closed after what was queued (the drain notice), as
        the reference server does: no Engine.IO CLOSE packet, which python-socketio's client
        takes for a final server disconnect and does not reconnect after. A long-poll gets the
        CLOSE packet, on which the JS client reconnects. wait=False: a peer that already
        vanished must not hold the drain hostage.
        """
        session = self.eio.sockets.get(eio_sid)
        if session is None or not session.upgraded:
            await self._close_session(eio_sid)
            return
        await session.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_CLOSE)
        session.queue.put_nowait(None)  # ends the writer, which closes the WebSocket

    async def runtime_changed(self, old: Runtime, new: Runtime, report: Any) -> None:
        await self.transitions.runtime_changed(old, new, report)

    async def broadcast(self, event: str, data: Any, namespace: str) -> None:
        await super().emit(event, data, namespace=namespace)

    async def notify(self, namespace: str, sid: str, event: str, data: Any) -> None:
        try:
            await super().emit(event, data, to=sid, namespace=namespace)
        except Exception:  # the client may be gone already
            log.debug("notifying %s in %s failed", sid, namespace, exc_info=True)

    async def drained(self) -> None:
        """Wait until no session is open and no handler is running."""
        if self._idle is not None:
            await self._idle.wait()


def _size(data: Any) -> int:
    """Cheap size estimate of an emitted payload for the bytes-out metric."""
    if isinstance(data, (str, bytes)):
        return len(data)
    if isinstance(data, (dict, list, tuple)):
        return 2 + sum(_size(v) for v in (data.values() if isinstance(data, dict) else data))
    return 8


def _header(data: str) -> tuple[int, str, int | None] | None:
    """(type, namespace, ack id) of a raw Socket.IO packet, without decoding its payload."""
    if not data or not data[0].isdigit():
        return None
    kind, pos = int(data[0]), 1
    if kind in (packet.BINARY_EVENT, packet.BINARY_ACK):
        dash = data.find("-", pos, pos + 12)
        if dash < 0:
            return None
        pos = dash + 1
    namespace = "/"
    if data.startswith("/", pos):
        comma = data.find(",", pos, pos + 256)
        if comma < 0:
            return None
        namespace, pos = data[pos:comma], comma + 1
    end = pos
    while end < len(data) and end - pos < 12 and data[end].isdigit():
        end += 1
    return kind, namespace, int(data[pos:end]) if end > pos else None
