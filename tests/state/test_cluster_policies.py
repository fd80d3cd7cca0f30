"""Cluster-wide policies end to end: two engine nodes, one redis-server, real clients.

Both nodes serve the same profile with ``[cluster] adapter = "redis"`` in this event loop, each
on its own port. Only the state store is under test here (the broker joins emits, elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import socketio

from engine.serve import Running
from engine.state.fallback import FallbackStateStore
from tests.cluster.live import wait_until
from tests.conftest import release, serving
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "cluster"
environment = "development"

[auth]
type = "token"

[auth.token]
tokens = [
  { token = "alice-token", user_id = "alice" },
  { token = "mallory-token", user_id = "mallory" },
]

[security.rate_limits]
events_per_user = { rate_per_second = 0.001, burst = 6 }
events_per_connection = { rate_per_second = 100, burst = 100 }

[security.abuse]
strikes = 3
window_seconds = 60
ladder_seconds = [600]
ban_by = ["ip", "user"]

[security.connections]
max_per_ip = 3

[cluster]
adapter = "redis"
url = "${REDIS_URL}"
on_store_error = "${ON_STORE_ERROR:-local}"

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
"""


@asynccontextmanager
async def two_nodes(
    write_profile: Callable[..., Path], redis: RedisServer, mode: str = "local"
) -> AsyncIterator[tuple[Running, Running]]:
    path = write_profile(PROFILE)
    env = {"REDIS_URL": redis.url, "ON_STORE_ERROR": mode}
    async with serving(path, env) as a, serving(path, env) as b:
        yield a, b


async def connect(url: str, token: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token}, wait_timeout=5, transports=["websocket"])
    return client


async def refused(url: str, token: str) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": token}, wait_timeout=5, transports=["websocket"])
    await release(client)
    assert errors, "no connect_error"
    return errors[0]["data"]  # the Socket.IO convention: {"message", "data": {"code", ...}}


@asynccontextmanager
async def released(fallback: FallbackStateStore) -> AsyncIterator[None]:
    """Wait, on leaving the block, until the node has released a connection's counts."""
    done = anyio.Event()
    original = fallback.release

    async def release_then_signal(keys: Any) -> None:
        await original(keys)
        done.set()

    fallback.release = release_then_signal  # type: ignore[method-assign]
    try:
        yield
        with anyio.fail_after(5):
            await done.wait()
    finally:
        fallback.release = original  # type: ignore[method-assign]


def store(node: Running) -> FallbackStateStore:
    found = node.engine.store
    assert isinstance(found, FallbackStateStore)
    return found


async def test_limits_bans_and_caps_hold_across_nodes(
    write_profile: Callable[..., Path], redis_server: RedisServer
) -> None:
    async with two_nodes(write_profile, redis_server) as (a, b):
        # one user alternating between the nodes shares one budget of 6 events
        on_a, on_b = await connect(a.url, "alice-token"), await connect(b.url, "alice-token")
        answers = []
        for index in range(7):
            client = on_a if index % 2 == 0 else on_b
            answers.append(await client.call("echo", index, timeout=5))
        assert answers[:6] == [0, 1, 2, 3, 4, 5]
        assert answers[6]["error"]["code"] == "rate_limited"  # a strike, on ip and user
        # a connection's own bucket stays on its node: no Redis round trip per event for it
        connection_key = f"rate:events_per_connection:{on_a.get_sid('/')}"
        assert await store(a).primary.read_bucket(connection_key) is None
        assert store(a).local.bucket(connection_key) is not None

        # max_per_ip = 3 counts the connections of both nodes: two held, one more fits
        third = await connect(b.url, "alice-token")
        assert await store(a).primary.total("conn:ip:127.0.0.1") == 3
        assert (await refused(a.url, "alice-token"))["code"] == "too_many_connections"
        assert (await refused(b.url, "alice-token"))["code"] == "too_many_connections"
        async with released(store(b)):
            await third.disconnect()  # released on node b ...
        assert await store(a).primary.total("conn:ip:127.0.0.1") == 2
        fourth = await connect(a.url, "alice-token")  # ... so node a admits again
        await fourth.disconnect()
        await on_a.disconnect()
        await on_b.disconnect()

        # strikes earned on node a ban the address; node b refuses its next handshake
        mallory = await connect(a.url, "mallory-token")
        gone = anyio.Event()
        mallory.on("disconnect", lambda *args: gone.set())
        for index in range(8):
            try:
                await mallory.call("echo", index, timeout=5)
            except socketio.exceptions.BadNamespaceError:
                break  # banned: node a closed the session
        with anyio.fail_after(5):
            await gone.wait()
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{b.url}/socket.io/?EIO=4&transport=polling")
        assert response.status_code == 403
        assert response.json()["data"]["code"] == "banned"
        assert 0 < response.json()["data"]["retry_after_seconds"] <= 600
        await store(b).primary.load_bans()  # what node b's dashboard lists at its next beat
        assert "ip:127.0.0.1" in [s for s, _, _ in store(b).active_bans(0.0)]


async def test_a_dead_nodes_connections_stop_counting(
    write_profile: Callable[..., Path], redis_server: RedisServer
) -> None:
    async with two_nodes(write_profile, redis_server) as (a, b):
        held = [await connect(a.url, "alice-token") for _ in range(3)]
        assert (await refused(b.url, "alice-token"))["code"] == "too_many_connections"
        # node a "dies": no more heartbeats, nothing released; its lease is short for the test
        dead = store(a).primary
        await dead.stop_refresher()
        dead.lease_ttl_seconds = 0.0
        await dead.restore()  # a last heartbeat that expires at once
        fresh = await connect(b.url, "alice-token")
        assert await store(b).primary.total("conn:ip:127.0.0.1") == 1
        await fresh.disconnect()
        for client in held:
            await client.disconnect()


@pytest.mark.parametrize("mode", ["local", "deny"])
async def test_redis_down_then_back(
    write_profile: Callable[..., Path], redis_server: RedisServer, mode: str
) -> None:
    async with two_nodes(write_profile, redis_server, mode) as (a, b):
        alice = await connect(a.url, "alice-token")
        on_b = await connect(b.url, "alice-token")
        assert await alice.call("echo", "shared", timeout=5) == "shared"
        fallback = store(a)
        clock = [100.0]
        fallback.clock = lambda: clock[0]  # when the store probes Redis again: the test says

        redis_server.stop()
        answer = await alice.call("echo", "down", timeout=5)
        if mode == "local":
            assert answer == "down"  # decided by node a alone
            assert await on_b.call("echo", "b", timeout=5) == "b"  # and by node b alone
            assert store(b).degraded is not None
        else:
            assert answer["error"]["code"] == "unavailable"
            assert answer["error"]["retry_after_seconds"] == fallback.probe_interval_seconds
        assert fallback.fallbacks_total >= 1
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{a.url}/healthz")).json()
        assert health["status"] == "degraded"
        assert any("state store unavailable" in reason for reason in health["reasons"])

        redis_server.start()
        clock[0] += fallback.probe_interval_seconds  # the next request tries Redis again
        assert await alice.call("echo", "back", timeout=5) == "back"
        assert fallback.degraded is None
        assert await fallback.primary.read_bucket("rate:events_per_user:alice") is not None
        # the cluster broker (same [cluster]) recovers on its own probe, within a second or so
        health = await wait_until(lambda: _health_is(a.url, "healthy"), what="healthy again")
        assert not health["reasons"], health
        await alice.disconnect()
        await on_b.disconnect()


async def _health_is(url: str, status: str) -> dict[str, object] | None:
    async with httpx.AsyncClient() as http:
        body: dict[str, object] = (await http.get(f"{url}/healthz")).json()
    return body if body["status"] == status else None
