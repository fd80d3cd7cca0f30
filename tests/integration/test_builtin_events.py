"""Built-in events (`join_room`, `leave_room`) obey the same chain as declared events.

Real server, real python-socketio clients: a burst of `join_room` is rate limited exactly like
a burst of a declared event, a forbidden join is a strike like any other forbidden event, and
enough of them ban the client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import socketio

from tests.conftest import release, serving

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "builtin"
environment = "development"

[server]
trusted_proxies = ["127.0.0.1/32"]

[security.rate_limits]
events_per_connection = {{ rate_per_second = 0.001, burst = {burst} }}

[security.abuse]
strikes = {strikes}
window_seconds = 60
ladder_seconds = [30]
ban_by = ["ip"]

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
client_join = ["room:*"]
max_client_rooms = 100
events = ["echo"]
"""


async def codes(client: socketio.AsyncClient, calls: list[tuple[str, Any]]) -> list[str]:
    """The outcome of each call in order: `ok` or the refusal code."""
    out = []
    for event, data in calls:
        with anyio.fail_after(5):
            answer = await client.call(event, data, timeout=5)
        error = answer.get("error") if isinstance(answer, dict) else None
        out.append(error["code"] if error else "ok")
    return out


async def connected(url: str, ip: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=["websocket"], headers={"X-Forwarded-For": ip})
    return client


async def test_a_burst_of_join_room_is_limited_like_a_burst_of_declared_events(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(PROFILE.format(burst=5, strikes=1000))
    async with serving(path) as running:
        joiner = await connected(running.url, "10.20.0.1")
        echoer = await connected(running.url, "10.20.0.2")
        try:
            joins = await codes(joiner, [("join_room", f"room:{i}") for i in range(12)])
            echoes = await codes(echoer, [("echo", i) for i in range(12)])
        finally:
            await joiner.disconnect()
            await echoer.disconnect()
    assert joins == echoes == ["ok"] * 5 + ["rate_limited"] * 7


async def test_forbidden_joins_are_strikes_and_ban_like_forbidden_events(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(PROFILE.format(burst=1000, strikes=3))
    async with serving(path) as running:
        joiner = await connected(running.url, "10.21.0.1")
        disconnected = anyio.Event()
        joiner.on("disconnect", lambda *args: disconnected.set())
        got = await codes(joiner, [("join_room", "secret:1")] * 3)
        with anyio.fail_after(5):
            await disconnected.wait()
        unknown = await connected(running.url, "10.21.0.2")
        try:
            got_unknown = await codes(unknown, [("dance", None)] * 3)
        finally:
            await unknown.disconnect()
        again = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await again.connect(
                running.url, transports=["websocket"], headers={"X-Forwarded-For": "10.21.0.1"}
            )
        await release(again)
        await release(joiner)
    # the third strike bans: the refusal says so and the session is closed
    assert got == ["forbidden", "forbidden", "banned"]
    assert got_unknown == ["unknown_event", "unknown_event", "banned"]
