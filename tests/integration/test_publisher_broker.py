"""`engine.publish.connect(profile)` through the Redis broker, from a separate process.

Two engine nodes in this event loop share one real redis-server (`[cluster] adapter =
"redis"`); a second Python process loads the same profile and publishes through the broker
(python-socketio's write-only manager on the cluster channel), appending to the Redis history
first: each member of the room, on either node, gets the event once, with its offset; an
official client (Node) whose transport was cut while the worker published recovers the events
on the other node.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import socketio

from engine.profile.build import load_profile
from engine.publish import AsyncBrokerPublisher, BrokerPublisher, Publisher, PublishError, connect
from tests.conftest import PYTHON, serving, subprocess_env
from tests.integration.js_session import js_session, needs_node
from tests.integration.test_recovery_redis import PROFILE, cluster, cut, joined, numbers
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

WORKER = """
import json, sys
from engine.publish import BrokerPublisher, PublishError, Unsupported, connect

publisher = connect(sys.argv[1])
assert isinstance(publisher, BrokerPublisher), publisher
out = {"answers": []}
for n in json.loads(sys.argv[2]):
    out["answers"].append(publisher.emit("tick", {"n": n}, room="feed:1"))
for name, call in (
    ("user", lambda: publisher.emit("x", user="alice")),
    ("role", lambda: publisher.emit("x", role="admin")),
    ("progress", lambda: publisher.progress("t-1", percent=5)),
    ("namespace", lambda: publisher.emit("x", namespace="/nope")),
    ("event", lambda: publisher.emit("bad name!")),
):
    try:
        call()
    except PublishError as exc:
        out[name] = [exc.status, exc.code, isinstance(exc, Unsupported)]
out["history"] = publisher.history(room="feed:1")["events"][-1]
print(json.dumps(out))
"""


async def publish(profile: Path, redis: RedisServer, ticks: list[int]) -> dict[str, Any]:
    """Run the worker in its own process; its JSON report."""
    with anyio.fail_after(20):
        done = await anyio.run_process(
            [PYTHON, "-c", WORKER, str(profile), json.dumps(ticks)],
            env=subprocess_env(REDIS_URL=redis.url),
        )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


class Member:
    """A python-socketio client in room feed:1 of one node."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.ticks: list[list[Any]] = []
        self.changed = anyio.Event()
        self.client.on("tick", self._tick)

    async def _tick(self, *args: Any) -> None:
        self.ticks.append(list(args))
        self.changed.set()

    async def arrived(self, count: int) -> None:
        while len(self.ticks) < count:
            self.changed = anyio.Event()
            await self.changed.wait()

    async def join(self, url: str) -> None:
        await self.client.connect(url, auth={"token": "alice-token-0001"}, transports=["websocket"])
        assert await self.client.call("join_room", "feed:1") == {"ok": True, "room": "feed:1"}


async def test_a_worker_reaches_both_nodes_once_with_offsets(
    write_profile: Callable[..., Path], redis_server: RedisServer
) -> None:
    path = write_profile(PROFILE)
    env = {"REDIS_URL": redis_server.url}
    async with serving(path, env) as a, serving(path, env) as b:
        members = [Member(), Member()]
        outsider = Member()
        try:
            await members[0].join(a.url)
            await members[1].join(b.url)
            await outsider.client.connect(
                b.url, auth={"token": "alice-token-0001"}, transports=["websocket"]
            )
            report = await publish(path, redis_server, [1, 2])
            offsets = [answer["offset"] for answer in report["answers"]]
            assert all(isinstance(o, str) for o in offsets)
            assert int(offsets[0].rpartition("-")[2]) < int(offsets[1].rpartition("-")[2])
            assert all(a["nodes"] >= 2 and a["recipients"] is None for a in report["answers"])
            with anyio.fail_after(5):
                for member in members:
                    await member.arrived(2)
            await anyio.sleep(0.3)  # and nothing more
            for member in members:
                assert member.ticks == [[{"n": 1}, offsets[0]], [{"n": 2}, offsets[1]]]
            assert outsider.ticks == []
            assert report["history"] == {"offset": offsets[1], "event": "tick", "args": [{"n": 2}]}
            # what the broker path refuses, and the same validation as the HTTP API
            assert report["user"] == [501, "not_supported", True]
            assert report["role"] == [501, "not_supported", True]
            assert report["progress"] == [501, "not_supported", True]
            assert report["namespace"] == [404, "invalid_namespace", False]
            assert report["event"] == [422, "invalid_payload", False]
        finally:
            for member in (*members, outsider):
                await member.client.disconnect()


@needs_node
async def test_a_client_cut_during_a_worker_publish_recovers_it_on_the_other_node(
    write_profile: Callable[..., Path], redis_server: RedisServer
) -> None:
    async with (
        cluster(write_profile, redis_server) as (a, b, balancer, url),
        js_session(url, auth={"token": "alice-token-0001"}) as client,
    ):
        profile = a.engine.runtime.profile.path
        assert profile is not None
        sid = await joined(client, "feed:1")
        live = (await publish(profile, redis_server, [0]))["answers"][0]["offset"]
        (first,) = await client.events("tick", 1)
        assert first["args"] == [{"n": 0}, live]  # through the broker, with its offset

        await cut(client, sid)
        balancer.target = b
        report = await publish(profile, redis_server, [1, 2, 3])
        await client.send(cmd="connect")
        connect = await client.until_type("connect")
        assert connect == {"type": "connect", "id": sid, "recovered": True}
        assert numbers(client.seen) == [0, 1, 2, 3]  # the missed ones, in order, once
        replayed = [line["args"][-1] for line in client.seen if line.get("event") == "tick"]
        assert replayed[1:] == [answer["offset"] for answer in report["answers"]]


async def test_connect_picks_http_without_a_broker_and_redis_down_is_an_error(
    write_profile: Callable[..., Path],
) -> None:
    plain = write_profile(
        '[engine]\nname = "p"\nenvironment = "development"\n'
        '[server]\nhost = "0.0.0.0"\nport = 8123\n'
        '[namespaces."/"]\n[publish]\ntoken = "publish-token-0123456789"\n',
        "plain.toml",
    )
    publisher = connect(plain)
    assert isinstance(publisher, Publisher)
    assert publisher.url == "http://127.0.0.1:8123"
    assert publisher.token == "publish-token-0123456789"

    down = RedisServer(Path("."))  # a free port nobody listens on
    profile = load_profile(write_profile(PROFILE), {"REDIS_URL": down.url})
    assert isinstance(connect(profile), BrokerPublisher)
    async with AsyncBrokerPublisher(profile) as broker:
        with pytest.raises(PublishError) as refused:
            await broker.emit("tick", {"n": 1}, room="feed:1")
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
