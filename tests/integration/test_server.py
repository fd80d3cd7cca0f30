"""A real engine on 127.0.0.1:0 talking to real python-socketio clients."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import socketio

from tests.conftest import release, serving

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "itest"
environment = "development"

[server]
shutdown_grace_seconds = 2

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
auto_join = ["everyone", "sid:{sid}", "ns:{namespace}"]
client_join = ["room:*", "mine:{sid}"]
max_client_rooms = 2

[namespaces."/chat"]
events = ["message"]

[namespaces."/legacy"]
handler = "tests.handlers:LegacyConnect"

[namespaces."/rooms"]
handler = "tests.handlers:RoomsNamespace"
auto_join = ["r:{sid}"]
client_join = ["extra"]
"""


class Inbox:
    """Collects events a client receives; waits with a timeout instead of sleeping."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.changed = anyio.Event()

    def put(self, event: str, data: Any) -> None:
        self.items.append((event, data))
        self.changed.set()
        self.changed = anyio.Event()

    async def get(self, event: str) -> Any:
        with anyio.fail_after(5):
            while True:
                for item in self.items:
                    if item[0] == event:
                        self.items.remove(item)
                        return item[1]
                await self.changed.wait()


def client_with_inbox(*events: str, namespace: str = "/") -> tuple[socketio.AsyncClient, Inbox]:
    client = socketio.AsyncClient(reconnection=False)
    inbox = Inbox()
    for name in events:
        client.on(name, (lambda n: lambda data=None: inbox.put(n, data))(name), namespace=namespace)
    return client, inbox


async def test_handler_class_receives_events_and_acks(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        client, inbox = client_with_inbox("welcome")
        await client.connect(running.url, namespaces=["/"], transports=["websocket"])
        welcome = await inbox.get("welcome")
        assert welcome == {"sid": client.get_sid("/")}
        assert await client.call("echo", {"x": [1, 2, "ü"]}, timeout=5) == {"x": [1, 2, "ü"]}
        await client.disconnect()


async def test_polling_transport_works(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        client = socketio.AsyncClient(reconnection=False)
        gone = anyio.Event()
        client.on("disconnect", lambda *args: gone.set())
        await client.connect(running.url, namespaces=["/"], transports=["polling"])
        assert client.transport() == "polling"
        assert await client.call("echo", "hi", timeout=5) == "hi"
        # python-engineio's polling client waits out its long-poll on disconnect; a server
        # drain closes the session at once, which is what this checks
        running.stop()
        with anyio.fail_after(5):
            await gone.wait()


async def test_undeclared_namespace_is_refused(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        client = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        client.on("connect_error", lambda data: errors.append(data), namespace="/nope")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(running.url, namespaces=["/nope"], wait_timeout=5)
        await release(client)
        assert errors == [{"message": "Invalid namespace"}]  # as the reference server


async def test_every_declared_namespace_accepts(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            running.url, namespaces=["/", "/chat", "/rooms"], transports=["websocket"]
        )
        assert set(client.connection_namespaces) == {"/", "/chat", "/rooms"}
        await client.disconnect()


async def test_auto_join_and_room_broadcast(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        first, first_inbox = client_with_inbox("shouted")
        second, second_inbox = client_with_inbox("shouted")
        await first.connect(running.url, transports=["websocket"])
        await second.connect(running.url, transports=["websocket"])
        await first.emit("shout", "hello all")
        assert await first_inbox.get("shouted") == "hello all"
        assert await second_inbox.get("shouted") == "hello all"
        await first.disconnect()
        await second.disconnect()


async def test_auto_join_templates_render(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(running.url, namespaces=["/rooms"], transports=["websocket"])
        sid = client.get_sid("/rooms")
        assert await client.call("my_rooms", namespace="/rooms", timeout=5) == sorted(
            [sid, f"r:{sid}"]
        )
        assert await client.call("join_room", "extra", namespace="/rooms", timeout=5) == {
            "ok": True,
            "room": "extra",
        }
        assert "extra" in await client.call("my_rooms", namespace="/rooms", timeout=5)
        await client.disconnect()


async def test_join_and_leave_rules(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(running.url, transports=["websocket"])
        sid = client.get_sid("/")

        async def call(event: str, data: Any) -> Any:
            return await client.call(event, data, timeout=5)

        assert await call("join_room", {"room": "room:a"}) == {"ok": True, "room": "room:a"}
        assert await call("join_room", f"mine:{sid}") == {"ok": True, "room": f"mine:{sid}"}
        # max_client_rooms = 2
        full = await call("join_room", "room:b")
        assert full["error"]["code"] == "forbidden"
        assert "at most 2 rooms" in full["error"]["message"]
        # patterns: '*' does not cross ':', templates are literal
        assert (await call("leave_room", "room:a")) == {"ok": True, "room": "room:a"}
        assert (await call("join_room", "room:a:b"))["error"]["code"] == "forbidden"
        assert (await call("join_room", "mine:someone-else"))["error"]["code"] == "forbidden"
        assert (await call("join_room", "everyone2"))["error"]["code"] == "forbidden"
        assert (await call("join_room", 42))["error"]["code"] == "invalid_payload"
        assert (await call("leave_room", "everyone"))["error"]["code"] == "forbidden"
        await client.disconnect()


async def test_event_allow_list_with_and_without_ack(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        client, inbox = client_with_inbox("error", namespace="/chat")
        await client.connect(running.url, namespaces=["/chat"], transports=["websocket"])
        refused = await client.call("shout", "x", namespace="/chat", timeout=5)
        message = "event 'shout' is not accepted in this namespace"
        assert refused == {"error": {"code": "unknown_event", "message": message}}
        await client.emit("shout", "x", namespace="/chat")
        assert (await inbox.get("error"))["code"] == "unknown_event"
        await client.disconnect()


async def test_legacy_connect_handler_and_refusal(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        refused = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(running.url, namespaces=["/legacy"], wait_timeout=5)
        await release(refused)
        allowed = socketio.AsyncClient(reconnection=False)
        await allowed.connect(
            running.url, namespaces=["/legacy"], headers={"X-Let-Me-In": "yes"}, wait_timeout=5
        )
        assert await allowed.call("ping_me", namespace="/legacy", timeout=5) == "pong"
        await allowed.disconnect()


async def test_healthz_and_readyz(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running, httpx.AsyncClient() as http:
        health = await http.get(f"{running.url}/healthz")
        ready = await http.get(f"{running.url}/readyz")
        assert health.status_code == 200
        assert ready.status_code == 200
        for body in (health.json(), ready.json()):
            assert body["profile"] == "itest"
            assert body["config_hash"] == running.engine.profile.config_hash
            assert len(body["config_hash"]) == 16
        assert health.json()["status"] == "healthy"
        assert ready.json()["status"] == "healthy"
        assert ready.json()["ready"] is True
        assert ready.json()["phase"] == "serving"
        missing = await http.get(f"{running.url}/nothing-here")
        assert missing.status_code == 404
        assert json.loads(missing.text)["error"]["code"] == "not_found"


async def test_draining_refuses_and_closes(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running, httpx.AsyncClient() as http:
        client = socketio.AsyncClient(reconnection=False)
        gone = anyio.Event()
        client.on("disconnect", lambda *args: gone.set())
        await client.connect(running.url, transports=["websocket"])
        running.stop()
        with anyio.fail_after(5):
            await gone.wait()
        assert running.engine.lifecycle.phase.value in ("draining", "stopped")
        assert not running.engine.lifecycle.ready
        try:
            ready = await http.get(f"{running.url}/readyz")
        except httpx.HTTPError:
            pass  # the listener may already be closed: also not ready
        else:
            assert ready.status_code == 503


ORDER = """
[engine]
name = "order"
environment = "development"

[server]
shutdown_grace_seconds = 1
handler_mode = "{mode}"

[namespaces."/"]
handler = "tests.handlers:OrderNamespace"
"""


@pytest.mark.parametrize("mode", ["inline", "task"])
async def test_handler_mode_inline_keeps_order_per_connection(
    write_profile: Callable[..., Path], mode: str
) -> None:
    """inline: a connection's events run one at a time, in order; other connections go on."""
    import asyncio

    from tests.handlers import OrderNamespace

    OrderNamespace.GATE = asyncio.Event()
    OrderNamespace.RECORD = record = []
    async with serving(write_profile(ORDER.replace("{mode}", mode))) as running:
        a = socketio.AsyncClient(reconnection=False)
        b = socketio.AsyncClient(reconnection=False)
        await a.connect(running.url, transports=["websocket"])
        await b.connect(running.url, transports=["websocket"])
        hold = asyncio.ensure_future(a.call("hold", timeout=5))
        with anyio.fail_after(5):
            while not record:  # noqa: ASYNC110 - waiting for the server's handler to start
                await anyio.sleep(0.005)
        echo = asyncio.ensure_future(a.call("echo", 1, timeout=5))
        # another connection is served while `a`'s handler waits
        assert await b.call("echo", 2, timeout=5) == 2
        if mode == "task":
            assert await echo == 1  # not behind the held handler
        OrderNamespace.GATE.set()
        assert await hold == "held"
        assert await echo == 1
        a_events = [what for sid, what in record if sid == a.get_sid("/")]
        if mode == "inline":
            assert a_events == ["hold:start", "hold:end", "echo"], record
        else:
            assert a_events == ["hold:start", "echo", "hold:end"], record
        await a.disconnect()
        await b.disconnect()
