"""Drain (SIGTERM, or `Running.stop()`): readiness flips first, every client is told, the
transports close spread over `drain_seconds`, and the official clients reconnect, to the other
node behind a (test) balancer that sends new connections to a ready node."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import socketio
from anyio.abc import Process, SocketStream, TaskStatus
from anyio.streams.text import TextReceiveStream

from engine.lifecycle import Phase
from engine.serve import Running
from tests.conftest import ROOT, serving
from tests.integration.lifecycle import Inbox

pytestmark = pytest.mark.anyio

CLIENTS = 20
DRAIN_SECONDS = 1.0
NODE = shutil.which("node")
JS = ROOT / "tests" / "js"
HAVE_JS = NODE is not None and (JS / "node_modules" / "socket.io-client").is_dir()

PROFILE = f"""
[engine]
name = "drain"
environment = "development"

[server]
drain_seconds = {DRAIN_SECONDS}
shutdown_grace_seconds = 2

[namespaces."/"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
"""


class Observed:
    """What one python-socketio client saw, and the engine's phase when it was disconnected."""

    def __init__(self, running: Running, first_close: anyio.Event) -> None:
        self.first_close = first_close
        self.inbox = Inbox()
        self.phase_at_disconnect: Phase | None = None
        self.reason: Any = None
        self.running = running
        self.client = socketio.AsyncClient(
            reconnection=True,
            reconnection_delay=0.1,
            reconnection_delay_max=0.3,
            randomization_factor=0,
        )
        self.client.on("connect", lambda: self.inbox.put("connect", None))
        self.client.on("server_draining", lambda data: self.inbox.put("server_draining", data))
        self.client.on("disconnect", self.disconnected)

    def disconnected(self, reason: Any = None) -> None:
        if self.phase_at_disconnect is None:
            self.phase_at_disconnect = self.running.engine.lifecycle.phase
            self.reason = reason
        self.inbox.put("disconnect", reason)
        self.first_close.set()

    def time_of(self, event: str) -> float:
        return next(t for name, _, t in self.inbox.items if name == event)

    async def connects(self, count: int) -> None:
        with anyio.fail_after(10):
            while self.inbox.names().count("connect") < count:
                await self.inbox.changed.wait()


class JsClient:
    """tests/js/drain.mjs: the JS client's lines, parsed, as they arrive."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._buffer = ""
        assert process.stdout is not None
        self._stream = TextReceiveStream(process.stdout)

    async def until(self, kind: str, **fields: Any) -> dict[str, Any]:
        with anyio.fail_after(10):
            while True:
                for line in self.lines:
                    if line["type"] == kind and all(line.get(k) == v for k, v in fields.items()):
                        return line
                chunk = await self._stream.receive()
                self._buffer += chunk
                *complete, self._buffer = self._buffer.split("\n")
                self.lines += [json.loads(text) for text in complete if text.strip()]


async def balance(
    nodes: list[Running], *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    """A sticky balancer in front of `nodes`, as in production: a request of an existing
    Engine.IO session (`sid=` in its request line) goes to the node holding that session, a
    new one to the first ready node (what a balancer checking /readyz does). It routes each
    TCP connection by its first request, which is all the clients here need."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def pipe(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in source:
                await sink.send(chunk)
        scope.cancel()  # one side closed: close both, as a balancer does

    async def handle(client: SocketStream) -> None:
        first = await client.receive()
        sid = re.search(rb"[?&]sid=([^& ]+)", first.split(b"\r\n", 1)[0])
        holders = [n for n in nodes if sid and sid.group(1).decode() in n.engine.sio.eio.sockets]
        node = (holders or [n for n in nodes if n.engine.lifecycle.ready])[0]
        async with (
            client,
            await anyio.connect_tcp("127.0.0.1", node.port) as upstream,
            anyio.create_task_group() as tasks,
        ):
            await upstream.send(first)
            tasks.start_soon(pipe, client, upstream, tasks.cancel_scope)
            tasks.start_soon(pipe, upstream, client, tasks.cancel_scope)

    async with listener:
        await listener.serve(handle)


async def test_drain_notifies_spreads_closes_and_clients_reconnect(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(PROFILE)
    js: list[JsClient] = []
    async with (
        serving(path) as successor,
        serving(path) as running,
        anyio.create_task_group() as balancer,
    ):
        url = f"http://127.0.0.1:{await balancer.start(balance, [running, successor])}"
        first_close = anyio.Event()
        observed = [Observed(running, first_close) for _ in range(CLIENTS)]
        async with anyio.create_task_group() as tasks:
            for one in observed:
                tasks.start_soon(partial(one.client.connect, url, transports=["websocket"]))
        if HAVE_JS:
            assert NODE is not None
            for transports in (["websocket"], ["polling"]):
                scenario = json.dumps({"url": url, "transports": transports})
                process = await anyio.open_process([NODE, str(JS / "drain.mjs"), scenario], cwd=JS)
                js.append(JsClient(process))
                await js[-1].until("connect", n=1)

        stopped = time.perf_counter()
        running.stop()
        with anyio.fail_after(DRAIN_SECONDS + 5):
            await first_close.wait()
            # the first close came after readiness flipped, and the node is still draining
            assert [o.phase_at_disconnect for o in observed if o.phase_at_disconnect] == [
                Phase.DRAINING
            ]
            async with httpx.AsyncClient(base_url=running.url) as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["phase"] == "draining"
            for one in observed:
                await one.inbox.wait("disconnect", within=DRAIN_SECONDS + 5)
        for one in observed:
            names = one.inbox.names()
            assert names.index("server_draining") < names.index("disconnect"), names
            assert one.phase_at_disconnect is Phase.DRAINING
            assert one.reason == "transport error"  # a transport close: the client reconnects
        notice = observed[0].inbox.all("server_draining")[0]
        assert notice["reconnect"] is True
        assert notice["drain_seconds"] == DRAIN_SECONDS

        for client in js:
            transport = "websocket" if client is js[0] else "polling"
            drained = await client.until("disconnect")
            # a transport-level close (not "io server disconnect"): the JS client reconnects
            assert drained["reason"] in ("transport close", "transport error"), (transport, drained)
            events = [line.get("event") for line in client.lines if line["type"] == "event"]
            assert events == ["server_draining"], (transport, client.lines)
            notice_at = client.lines.index(
                next(line for line in client.lines if line.get("event") == "server_draining")
            )
            assert notice_at < client.lines.index(drained)

        closes = sorted(one.time_of("disconnect") - stopped for one in observed)
        gaps = [b - a for a, b in itertools.pairwise(closes)]
        server = running.engine.sio.transitions.drain_closes
        server_span = server[-1] - server[0]
        sessions = len(server)
        print(
            f"\ndrain of {sessions} sessions over drain_seconds={DRAIN_SECONDS}: "
            f"clients saw first close {closes[0] * 1000:.0f} ms, last {closes[-1] * 1000:.0f} ms "
            f"after stop, max gap {max(gaps) * 1000:.0f} ms "
            f"(even spread: {DRAIN_SECONDS / sessions * 1000:.0f} ms); "
            f"server closes spanned {server_span * 1000:.0f} ms"
        )
        even = DRAIN_SECONDS / sessions
        assert server_span >= DRAIN_SECONDS - even - 0.05
        assert server_span <= DRAIN_SECONDS + 0.5
        assert closes[-1] - closes[0] >= 0.7 * DRAIN_SECONDS  # spread, not a burst
        # not two bursts either (the bound leaves room for a stalled loop on a busy machine)
        assert max(gaps) < 0.8 * DRAIN_SECONDS

        # behind the balancer, every client reconnects on its own, to the other node
        restarted = time.perf_counter()
        for one in observed:
            await one.connects(2)
        for client in js:
            await client.until("connect", n=2)
            await client.process.wait()
            assert client.process.returncode == 0
        print(
            f"{len(observed)} python + {len(js)} JS clients reconnected (to the other node) "
            f"{(time.perf_counter() - restarted) * 1000:.0f} ms after the last close"
        )
        assert await observed[0].client.call("echo", "back", timeout=5) == "back"
        for one in observed:
            await one.client.disconnect()
        balancer.cancel_scope.cancel()
