"""The Redis broker with real redis-server and real engines (in-process) and clients."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from engine.cluster.broker import BrokerState, broker_problems, check_library
from tests.cluster.live import (
    clients,
    cluster_profile,
    get_json,
    metric,
    node_of,
    wait_until,
)
from tests.conftest import PYTHON, ROOT, serving, subprocess_env
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio


# -- pure parts ---------------------------------------------------------------------------------


def test_the_installed_python_socketio_has_the_expected_shape() -> None:
    check_library()


def test_broker_problems_name_each_cause() -> None:
    fine = BrokerState(started=0.0, listener_subscribed=True, last_echo=9.5)
    assert broker_problems(fine, 10.0, 3.0) == ()
    down = BrokerState(
        started=0.0,
        publish_error="ConnectionError: refused",
        listener_error="ConnectionError: refused",
        listener_subscribed=True,
        pending_since=5.0,
    )
    assert broker_problems(down, 10.0, 3.0) == (
        "cannot publish to Redis (ConnectionError: refused)",
        "listener not subscribed to Redis (ConnectionError: refused); reconnecting",
        "liveness probe late: no echo for 5.0s (limit 3s)",
    )
    # a probe in flight is not late until the timeout has passed
    in_flight = BrokerState(0.0, listener_subscribed=True, pending_since=8.0)
    assert broker_problems(in_flight, 10.0, 3.0) == ()
    never = BrokerState(started=0.0)
    assert broker_problems(never, 2.0, 3.0) == ()
    assert broker_problems(never, 4.0, 3.0) == ("listener not subscribed after 4.0s",)


# -- live ---------------------------------------------------------------------------------------


async def _alive_nodes(url: str) -> set[str]:
    stats = await get_json(url + "/engine/api/stats")
    return {n["id"] for n in stats["cluster"]["nodes"] if n["alive"]}


async def test_emits_reach_clients_on_every_node_exactly_once(
    redis_server: RedisServer, write_profile: Callable[..., Path]
) -> None:
    a = write_profile(cluster_profile(redis_server.url, node_id="node-a"), "a.toml")
    b = write_profile(cluster_profile(redis_server.url, node_id="node-b"), "b.toml")
    async with serving(a) as node_a, serving(b) as node_b, clients(4) as cs:
        for client, node in zip(cs, (node_a, node_b, node_a, node_b), strict=True):
            await client.connect(node.url)
        # both nodes see each other through their probes
        for node in (node_a, node_b):
            await wait_until(
                lambda node=node: _nodes_are(node.url, {"node-a", "node-b"}), what="nodes seen"
            )
        stats = await get_json(node_b.url + "/engine/api/stats")
        assert node_of(stats) == "node-b"
        assert stats["cluster"]["adapter"] == "redis"
        assert stats["health"]["status"] == "healthy"

        # a client's shout (room "everyone", emitted on node a) reaches all four once
        await cs[0].sio.emit("shout", {"n": 1})
        await wait_until(lambda: all(c.received["shouted"] == 1 for c in cs), what="broadcast")
        # a room joined on either node, a server-side emit from node b
        for client in cs[:3]:
            assert await client.sio.call("join_room", {"room": "task:7"}) == {
                "ok": True,
                "room": "task:7",
            }
        await node_b.engine.sio.emit("progress", {"p": 50}, room="task:7")
        await wait_until(lambda: all(c.received["progress"] == 1 for c in cs[:3]), what="room")
        # namespace-wide from node a
        await node_a.engine.sio.emit("notice", "all", namespace="/")
        await wait_until(lambda: all(c.received["notice"] == 1 for c in cs), what="namespace")
        # nothing was delivered twice, and nobody outside the room got the room's emit
        await cs[0].sio.call("echo", "flush")  # one round trip on a node: pending frames arrive
        assert cs[3].received["progress"] == 0
        assert [c.received["shouted"] for c in cs] == [1, 1, 1, 1]
        assert await metric(node_a.url, "engine_cluster_publish_failures_total") == 0


async def _nodes_are(url: str, expected: set[str]) -> bool:
    return await _alive_nodes(url) == expected


PUBLISHER = """
import asyncio, sys, socketio
async def main():
    manager = socketio.AsyncRedisManager(sys.argv[1], channel=sys.argv[2], write_only=True)
    await manager.emit("news", {"from": "cron"}, room="task:1", namespace="/")
asyncio.run(main())
"""


async def test_an_external_process_publishes_through_the_broker(
    redis_server: RedisServer, write_profile: Callable[..., Path]
) -> None:
    a = write_profile(cluster_profile(redis_server.url, node_id="node-a"), "a.toml")
    b = write_profile(cluster_profile(redis_server.url, node_id="node-b"), "b.toml")
    async with serving(a) as node_a, serving(b) as node_b, clients(3) as cs:
        await cs[0].connect(node_a.url)
        await cs[1].connect(node_b.url)
        await cs[2].connect(node_b.url)
        for client in cs[:2]:
            await client.sio.call("join_room", {"room": "task:1"})
        for node in (node_a, node_b):
            await wait_until(lambda node=node: node.engine.broker.state.last_echo, what="probe")
        script = textwrap.dedent(PUBLISHER)
        result = await anyio.run_process(
            [PYTHON, "-c", script, redis_server.url, "engine-test"],
            cwd=ROOT,
            env=subprocess_env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        await wait_until(lambda: cs[0].received["news"] and cs[1].received["news"], what="news")
        await cs[1].sio.call("echo", "flush")
        assert [c.received["news"] for c in cs] == [1, 1, 0]
        assert cs[0].payloads[-1] == ("news", {"from": "cron"})


async def test_a_redis_outage_degrades_then_heals_and_counts_dropped_publishes(
    redis_server: RedisServer, write_profile: Callable[..., Path]
) -> None:
    a = write_profile(cluster_profile(redis_server.url, node_id="node-a"), "a.toml")
    b = write_profile(cluster_profile(redis_server.url, node_id="node-b"), "b.toml")
    async with serving(a) as node_a, serving(b) as node_b, clients(2) as cs:
        await cs[0].connect(node_a.url)
        await cs[1].connect(node_b.url)
        for node in (node_a, node_b):
            await wait_until(lambda node=node: node.engine.broker.state.last_echo, what="probe")

        # load: both clients shout (a room emit through the broker) and echo, closed loop
        done = anyio.Event()
        answered = [0, 0]

        async def load(index: int) -> None:
            client = cs[index]
            while not done.is_set():
                await client.sio.emit("shout", index)
                assert await client.sio.call("echo", index, timeout=5) == index
                answered[index] += 1

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(load, 0)
            tasks.start_soon(load, 1)
            await wait_until(lambda: min(answered) > 20, what="load running")

            redis_server.stop()
            for node in (node_a, node_b):
                health = await wait_until(
                    lambda node=node: _health_is(node.url, "degraded"), what="degraded"
                )
                assert any(r.startswith("cluster broker: ") for r in health["reasons"]), health
                assert health["ready"] is True  # still serves its own clients
            during = list(answered)
            await wait_until(lambda: min(answered) > min(during) + 20, what="load in outage")
            for node in (node_a, node_b):
                stats = await get_json(node.url + "/engine/api/stats")
                assert stats["cluster"]["publish_failures"] > 0
                assert stats["cluster"]["problems"]
                assert await metric(node.url, "engine_cluster_publish_failures_total") > 0
            print(
                "\nbroker outage: dropped publishes "
                f"a={node_a.engine.broker.state.publish_failures} "
                f"b={node_b.engine.broker.state.publish_failures}"
            )

            redis_server.start()
            for node in (node_a, node_b):
                await wait_until(
                    lambda node=node: _health_is(node.url, "healthy"), within=20, what="healthy"
                )
            done.set()

        # rooms work across nodes again
        for client in cs:
            await client.sio.call("join_room", {"room": "task:9"})
        await node_a.engine.sio.emit("after", 1, room="task:9")
        await wait_until(lambda: all(c.received["after"] == 1 for c in cs), what="after")
        assert await metric(node_b.url, "engine_cluster_listener_reconnects_total") >= 1


async def _health_is(url: str, status: str) -> dict[str, object] | None:
    body = await get_json(url + "/healthz")
    return body if body["status"] == status else None


async def test_the_supervisor_restarts_a_listener_that_ended(
    redis_server: RedisServer, write_profile: Callable[..., Path]
) -> None:
    a = write_profile(cluster_profile(redis_server.url, node_id="node-a"), "a.toml")
    b = write_profile(cluster_profile(redis_server.url, node_id="node-b"), "b.toml")
    async with serving(a) as node_a, serving(b) as node_b, clients(1) as cs:
        await cs[0].connect(node_a.url)
        broker = node_a.engine.broker
        assert broker is not None
        await wait_until(lambda: broker.state.last_echo, what="probe")
        first = broker.listener_task
        assert first is not None
        # python-socketio's listener swallows a cancellation and returns for good
        first.cancel()
        await wait_until(lambda: broker.listener_task is not first, what="restart")
        await wait_until(lambda: broker.state.listener_error is None, what="listening again")
        assert await metric(node_a.url, "engine_cluster_listener_restarts_total") == 1
        stats = await get_json(node_a.url + "/engine/api/stats")
        assert stats["cluster"]["listener_restarts"] == 1
        await node_b.engine.sio.emit("again", 1)
        await wait_until(lambda: cs[0].received["again"] == 1, what="delivery after restart")


async def test_an_idle_listener_with_a_read_timeout_does_not_reconnect(
    redis_server: RedisServer, write_profile: Callable[..., Path]
) -> None:
    """python-socketio's listener with socket_timeout reconnects whenever the channel is quiet;
    the broker's listener ignores socket_timeout (publishing still uses it)."""
    profile = cluster_profile(
        redis_server.url,
        node_id="node-a",
        cluster={
            "redis_options": {"socket_timeout": 0.1},
            "probe_interval_seconds": 0.5,
            "probe_timeout_seconds": 2.0,
        },
    )
    async with serving(write_profile(profile)) as node:
        broker = node.engine.broker
        assert broker is not None
        await wait_until(lambda: broker.state.last_echo, what="first probe")
        first = broker.state.last_echo
        # quiet between probes: several read timeouts' worth, three probe round trips
        await wait_until(lambda: broker.state.last_echo - first > 1.2, what="three probes")
        assert broker.state.listener_reconnects == 0
        assert broker.state.listener_error is None
        assert broker.publisher_options()["socket_timeout"] == 0.1
        assert "socket_timeout" not in broker.listener_options()


async def test_memory_adapter_reports_its_node(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(cluster_profile(None, node_id="solo"))) as node:
        stats = await get_json(node.url + "/engine/api/stats")
        assert node_of(stats) == "solo"
        assert stats["cluster"] == {
            "adapter": "memory",
            "nodes": [{"id": "solo", "self": True, "alive": True}],
        }
        assert node.engine.broker is None
