"""Connection state recovery across nodes: `[cluster] adapter = "redis"`, two engine nodes in
this event loop sharing one real redis-server, the official `socket.io-client` (Node).

The client reaches the nodes through a test balancer: an Engine.IO session's requests stay on
the node holding it, a new one goes to the node the test names. The client is on node A, its
transport is cut, events are sent to its room, and it reconnects to node B: the history and
the session live in Redis, so B restores it (its sid, rooms, and exactly the missed events).
Until the broker joins the nodes' emits, an event emitted on one node reaches only that node's
connections live; the replay comes from the Redis stream whichever node emitted.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from anyio.abc import SocketStream, TaskStatus

from engine.recovery.redis import RedisRecoveryStore
from engine.serve import Running
from tests.conftest import serving
from tests.handlers import WatchedNamespace
from tests.integration.js_session import JSSession, js_session, needs_node
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.anyio, needs_node]

PROFILE = """
[engine]
name = "recovery-cluster"
environment = "development"

[server]
allowed_origins = ["*"]

[auth]
type = "token"

[auth.token]
tokens = [{ token = "alice-token-0001", user_id = "alice" }]

[cluster]
adapter = "redis"
url = "${REDIS_URL}"

[namespaces."/"]
handler = "tests.handlers:WatchedNamespace"
require_auth = true
client_join = ["feed:*"]
auto_join = ["user:{user.id}"]

[namespaces."/".recovery]
max_disconnection_seconds = 120
max_events = 10000
"""


class Balancer:
    """Sticky by Engine.IO sid; new sessions go to `target`."""

    def __init__(self, nodes: list[Running]) -> None:
        self.nodes = nodes
        self.target = nodes[0]

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))

        async def pipe(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                async for chunk in source:
                    await sink.send(chunk)
            scope.cancel()

        async def handle(client: SocketStream) -> None:
            first = await client.receive()
            sid = re.search(rb"[?&]sid=([^& ]+)", first.split(b"\r\n", 1)[0])
            holders = [
                n for n in self.nodes if sid and sid.group(1).decode() in n.engine.sio.eio.sockets
            ]
            node = holders[0] if holders else self.target
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


@asynccontextmanager
async def cluster(
    write_profile: Callable[..., Path], redis: RedisServer
) -> AsyncIterator[tuple[Running, Running, Balancer, str]]:
    path = write_profile(PROFILE)
    env = {"REDIS_URL": redis.url}
    async with (
        serving(path, env) as a,
        serving(path, env) as b,
        anyio.create_task_group() as tasks,
    ):
        balancer = Balancer([a, b])
        port = await tasks.start(balancer.serve)
        yield a, b, balancer, f"http://127.0.0.1:{port}"
        tasks.cancel_scope.cancel()


async def joined(client: JSSession, room: str) -> str:
    await client.send(cmd="connect")
    connect = await client.until_type("connect")
    assert connect["recovered"] is False
    await client.send(cmd="emit", event="join_room", args=[room])
    assert (await client.until_type("ack"))["args"] == [{"ok": True, "room": room}]
    sid: str = connect["id"]
    return sid


async def cut(client: JSSession, sid: str) -> None:
    await client.send(cmd="cut")
    await client.until_type("disconnect")
    with anyio.fail_after(5):
        await WatchedNamespace.ended(sid).wait()


def numbers(lines: list[dict[str, Any]]) -> list[int]:
    return [line["args"][0]["n"] for line in lines if line.get("event") == "tick"]


def holds(node: Running, sid: str) -> bool:
    return bool(node.engine.sio.manager.is_connected(sid, "/"))


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
@pytest.mark.parametrize("emitter", ["a", "b"])
async def test_recovered_on_the_other_node_with_exactly_the_missed_events(
    write_profile: Callable[..., Path],
    redis_server: RedisServer,
    transports: list[str],
    emitter: str,
) -> None:
    async with (
        cluster(write_profile, redis_server) as (a, b, balancer, url),
        js_session(url, auth={"token": "alice-token-0001"}, transports=transports) as client,
    ):
        assert isinstance(a.engine.sio.recovery.store, RedisRecoveryStore)
        sid = await joined(client, "feed:1")
        assert holds(a, sid)
        assert not holds(b, sid)
        for n in range(5):
            await a.engine.sio.emit("tick", {"n": n}, room="feed:1")
        first = await client.events("tick", 5)
        assert all(isinstance(line["args"][-1], str) for line in first)

        await cut(client, sid)
        balancer.target = b
        node = a if emitter == "a" else b
        for n in range(5, 105):
            await node.engine.sio.emit("tick", {"n": n}, room="feed:1")
        await node.engine.sio.emit("tick", {"n": -1}, room="feed:2")  # not its room
        await client.send(cmd="connect")
        connect = await client.until_type("connect")
        assert connect == {"type": "connect", "id": sid, "recovered": True}
        assert holds(b, sid)
        assert not holds(a, sid)
        assert numbers(client.seen) == list(range(105))  # the 100 missed, in order, once

        # its rooms are back on B (feed:1 by join_room, user:alice by auto_join)
        await b.engine.sio.emit("tick", {"n": 105}, room="feed:1")
        await b.engine.sio.emit("tick", {"n": 106}, room="user:alice")
        assert numbers(await client.events("tick", 2)) == [105, 106]
        await client.send(cmd="emit", event="leave_room", args=["feed:1"])
        assert (await client.until_type("ack"))["args"] == [{"ok": True, "room": "feed:1"}]


async def test_a_publisher_that_never_stops_gapless_and_once_across_nodes(
    write_profile: Callable[..., Path], redis_server: RedisServer
) -> None:
    """Events keep coming while the client is restored on B: the ones B sends it live while
    the store is asked are held back until the replay, and the replayed ones are not sent
    twice."""
    async with (
        cluster(write_profile, redis_server) as (a, b, balancer, url),
        js_session(url, auth={"token": "alice-token-0001"}) as client,
    ):
        sid = await joined(client, "feed:1")
        publishing = {"node": a}
        sent = 0
        stop = anyio.Event()

        async def publish() -> None:
            nonlocal sent
            while not stop.is_set():
                node = publishing["node"]
                await node.engine.sio.emit("tick", {"n": sent}, room="feed:1")
                sent += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(publish)
            await client.events("tick", 20)
            await cut(client, sid)
            balancer.target = b
            publishing["node"] = b  # without the broker, only B's emits reach it live on B
            await client.send(cmd="connect")
            connect = await client.until_type("connect")
            assert connect["recovered"] is True
            await client.events("tick", 50)
            stop.set()
        final = sent
        seen = numbers(client.seen)
        if len(seen) < final:
            await client.events("tick", final - len(seen))
        assert numbers(client.seen) == list(range(final))
