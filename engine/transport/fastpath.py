"""Hot-path replacements that keep the wire protocol exactly as python-engineio speaks it.

- :func:`prescan_packet`: the payload prescan, skipped when counting characters proves that no
  structural limit can be exceeded (the full prescan runs otherwise).
- :class:`FastSocket`: the engine's Engine.IO session
  (:class:`engine.transport.protocol.ProtocolSocket`) whose websocket loop waits for frames
  and for outgoing packets under one re-armed deadline timer per connection, instead of an
  ``asyncio.wait_for`` (a task plus a timer) per frame
  received and per batch sent. Same timeouts (``ping_interval + ping_timeout`` for each wait),
  same upgrade from polling, same close sequence.
- :func:`tune_gc`: freeze what start-up allocated and set the youngest generation's threshold;
  :func:`freeze_survivors` (opt-in) freezes what survives every later collection.

``ENGINE_FASTPATH_DISABLE`` (comma-separated: ``codec``, ``prescan``, ``socket``, ``all``) turns
parts off, for measuring what each one buys (docs/performance.md); it is not a profile option
because none of them changes behaviour.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable
from typing import Any

from engineio import exceptions, packet

from engine.policies.payload import PayloadLimits, Violation
from engine.policies.payload import prescan_packet as full_prescan_packet
from engine.transport.lean import LeanQueue
from engine.transport.protocol import ProtocolSocket, install_protocol

DISABLED = frozenset(
    part.strip() for part in os.environ.get("ENGINE_FASTPATH_DISABLE", "").split(",") if part
)


def enabled(part: str) -> bool:
    return part not in DISABLED and "all" not in DISABLED


def json_codec() -> Any:
    """The ``json=`` argument of ``socketio.AsyncServer``: `engine.transport.codec`, or None."""
    if not enabled("codec"):
        return None
    from engine.transport import codec

    return codec


def _prescan_fast(text: str, limits: PayloadLimits) -> Violation | None:
    """No structural limit can be exceeded by ``text``: skip the token walk.

    Every nested container needs a ``{`` or ``[``, every key or element after the first a ``,``,
    and no decoded string is longer than the text, nor the text more than 4 bytes per character
    in UTF-8. Malformed text and ``NaN``/``Infinity`` are then refused by the decoder
    (engine.transport.codec), which the caller runs next. Binary packets (attachment counts)
    take the full path.
    """
    n = len(text)
    if (
        n <= limits.max_string_length
        and 4 * n <= limits.max_bytes
        and text[:1] not in ("5", "6")
        and text.count("{") + text.count("[") <= limits.max_depth
        and text.count(",") + 1 <= min(limits.max_keys, limits.max_array_length)
    ):
        if not text[:1].isdigit():
            return Violation("not a Socket.IO packet", "$")
        return None
    return full_prescan_packet(text, limits)


prescan_packet = _prescan_fast if enabled("prescan") and enabled("codec") else full_prescan_packet


def tune_gc(threshold_objects: int) -> None:
    """After start-up: move every live object out of the collector's sight, then set the
    youngest generation's threshold (older generations keep CPython's defaults)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold_objects, gen1, gen2)


_EMPTY = object()  # FastSocket._next_queued: nothing is queued


def freeze_survivors() -> Callable[[], None]:
    """After every collection, freeze what survived it; returns the undo.

    Each collection then scans only what was allocated since the previous one, so no pause
    grows with the number of open connections. Objects are still freed by reference counting
    when released; only cycles through a frozen object are never collected
    (`server.gc_freeze_survivors`).
    """

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            gc.freeze()

    gc.callbacks.append(callback)
    return lambda: gc.callbacks.remove(callback)


class _Deadline:
    """Cancel ``task`` when one wait (``start()`` .. ``stop()``) lasts ``timeout`` seconds.

    One timer handle per connection, re-armed only when it fires: a frame received costs two
    attribute writes instead of ``asyncio.wait_for``'s task, timer and callbacks.
    """

    __slots__ = ("fired", "handle", "loop", "since", "task", "timeout")

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.timeout = timeout
        self.since: float | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.fired = False

    def start(self) -> None:
        self.since = now = self.loop.time()
        if self.handle is None:
            self.handle = self.loop.call_at(now + self.timeout, self._check)

    def stop(self) -> None:
        self.since = None

    def _check(self) -> None:
        self.handle = None
        if self.since is None:
            return  # not waiting: the next start() arms the timer again
        due = self.since + self.timeout
        if self.loop.time() >= due:
            self.fired = True
            if self.task is not None:
                self.task.cancel()
        else:
            self.handle = self.loop.call_at(due, self._check)

    def timed_out(self) -> bool:
        """After a CancelledError: True (and the cancellation withdrawn) if this timer did it."""
        if self.fired and self.task is not None:
            self.fired = False
            self.task.uncancel()
            return True
        return False

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class FastSocket(ProtocolSocket):
    """The engine's Engine.IO session with a cheaper websocket loop (same protocol)."""

    async def _serve_websocket(self, ws: Any) -> Any:
        """Engine.IO handler for the websocket transport (python-engineio 4.x semantics)."""
        server = self.server
        timeout = server.ping_interval + server.ping_timeout

        async def websocket_wait() -> Any:
            data = await ws.wait()
            if data and len(data) > server.max_http_buffer_size:
                raise ValueError("packet is too large")
            return data

        if self.connected:  # type: ignore[has-type]
            # the socket was already connected, so this is an upgrade
            self.upgrading = True  # hold packet sends during the upgrade
            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                return None
            decoded_pkt = packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != packet.PING or decoded_pkt.data != "probe":
                server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                self.upgrading = False
                return None
            await ws.send(packet.Packet(packet.PONG, data="probe").encode())
            await self.queue.put(packet.Packet(packet.NOOP))  # end poll
            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                self.upgrading = False
                return None
            decoded_pkt = packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != packet.UPGRADE:
                self.upgraded = False
                server.logger.info(
                    "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
                    self.sid,
                    pkt,
                )
                self.upgrading = False
                return None
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True

        queue = self.queue
        writer_task: asyncio.Future[None] | None = None
        if isinstance(queue, LeanQueue):
            # no writer task while idle: one runs only while packets are queued
            self._ws = ws
            queue.notify = self._start_writer
            if queue.qsize():
                self._start_writer()
        else:
            writer_task = asyncio.ensure_future(self._writer_loop(ws, timeout))

        server.logger.info("%s: Upgrade to websocket successful", self.sid)

        deadline = _Deadline(timeout)
        try:
            while True:
                deadline.start()
                try:
                    p = await websocket_wait()
                except asyncio.CancelledError:
                    deadline.timed_out()
                    break
                except BaseException:
                    break
                finally:
                    deadline.stop()
                if p is None:
                    # connection closed by client
                    break
                pkt = packet.Packet(encoded_packet=p)
                try:
                    await self.receive(pkt)
                except exceptions.UnknownPacketError:  # pragma: no cover
                    pass
                except exceptions.SocketIsClosedError:  # pragma: no cover
                    server.logger.info("Receive error -- socket is closed")
                    break
                except BaseException:  # pragma: no cover (as engineio: bare except)
                    # if we get an unexpected exception we log the error and exit
                    # the connection properly
                    server.logger.exception("Unknown receive error")
        finally:
            deadline.close()

        await queue.put(None)  # unlock the writer task so it can exit
        if writer_task is None:
            writer_task = self._writing
        if writer_task is not None:
            await writer_task
        if isinstance(queue, LeanQueue):
            queue.notify = None  # no cycle session -> queue -> session once the socket is gone
            self._ws = None
        await self.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        return None

    _ws: Any = None
    _writing: asyncio.Future[None] | None = None

    async def send(self, pkt: packet.Packet) -> None:
        ws = self._ws
        queue = self.queue
        if (
            ws is not None
            and self._writing is None
            and queue.notify is not None
            and not queue.qsize()
            and getattr(ws, "direct", False)
            and not ws.backlogged()
        ):
            # the engine's own WebSocket, nothing queued before this packet: write it now
            if self.closed:
                raise exceptions.SocketIsClosedError()
            if not ws.write(pkt.encode()):
                queue.notify = None  # as engineio's writer: nothing is sent after this
                ws.close_now()
            return
        await super().send(pkt)

    def _start_writer(self) -> None:
        if self._writing is not None:
            return
        ws = self._ws
        if getattr(ws, "direct", False) and not ws.backlogged():
            # the engine's own WebSocket writes synchronously: no task unless the peer lags
            queue = self.queue
            while True:
                pkt = self._next_queued()
                if pkt is _EMPTY:
                    return
                if pkt is None or not ws.write(pkt.encode()):
                    queue.notify = None  # as engineio's writer: nothing is sent after this
                    ws.close_now()
                    return
                if ws.backlogged():
                    break
        self._writing = asyncio.ensure_future(self._write_queued())

    def _next_queued(self) -> Any:
        """The next queued packet, marked done (None: close the WebSocket), or `_EMPTY`."""
        try:
            pkt = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return _EMPTY
        self.queue.task_done()
        return pkt

    async def _write_queued(self) -> None:
        """Send what is queued, then end; `None` (or a failed send) closes the WebSocket."""
        queue = self.queue
        ws = self._ws
        try:
            while True:
                pkt = self._next_queued()
                if pkt is _EMPTY:
                    return
                if pkt is None:
                    break
                try:
                    await ws.send(pkt.encode())
                except BaseException:
                    break
            queue.notify = None  # as engineio's writer: nothing is sent after this
            await ws.close()
        finally:
            self._writing = None

    async def _writer_loop(self, ws: Any, idle_seconds: float) -> None:
        """The writer task of an asyncio.Queue session (ENGINE_FASTPATH_DISABLE=queue)."""
        queue = self.queue
        deadline = _Deadline(idle_seconds)
        try:
            while True:
                # engineio's poll(): wait up to `timeout` for a packet, then drain the queue
                deadline.start()
                try:
                    first = await queue.get()
                except asyncio.CancelledError:
                    deadline.timed_out()
                    break
                finally:
                    deadline.stop()
                queue.task_done()
                if first is None:
                    break
                packets = [first]
                while True:
                    try:
                        pkt = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    queue.task_done()
                    if pkt is None:
                        queue.put_nowait(None)
                        break
                    packets.append(pkt)
                try:
                    for pkt in packets:
                        await ws.send(pkt.encode())
                except BaseException:
                    break
        finally:
            deadline.close()
        await ws.close()


def install_socket() -> None:
    """Make python-engineio create FastSocket sessions (process-wide; idempotent)."""
    install_protocol(FastSocket if enabled("socket") else ProtocolSocket)
