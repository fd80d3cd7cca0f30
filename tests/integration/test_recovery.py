"""Connection state recovery with the official `socket.io-client` (npm, Node).

The client's transport is cut (`socket.io.engine.close()`, what a network loss looks like),
events are sent to its room while it is away, and it reconnects with the `{pid, offset}` it
holds: recovered with exactly the missed events in order, or not recovered with nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine.serve import Running
from tests.conftest import serving
from tests.handlers import WatchedNamespace
from tests.integration.js_session import JSSession, js_session, needs_node

pytestmark = [pytest.mark.anyio, needs_node]

PROFILE = """
[engine]
name = "recovery"
environment = "development"

[server]
allowed_origins = ["*"]

[auth]
type = "token"

[auth.token]
tokens = [
  {{ token = "alice-token-0001", user_id = "alice" }},
  {{ token = "bob-token-00001", user_id = "bob" }},
]

[namespaces."/"]
handler = "tests.handlers:WatchedNamespace"
require_auth = true
client_join = ["feed:*"]
auto_join = ["user:{{user.id}}"]

[namespaces."/".recovery]
max_disconnection_seconds = 120
max_events = {max_events}
"""


async def joined(client: JSSession, room: str) -> str:
    """Connect, join `room`; the sid."""
    await client.send(cmd="connect")
    connect = await client.until_type("connect")
    assert connect["recovered"] is False
    await client.send(cmd="emit", event="join_room", args=[room])
    ack = await client.until_type("ack")
    assert ack["args"] == [{"ok": True, "room": room}]
    sid: str = connect["id"]
    return sid


async def cut(client: JSSession, sid: str) -> None:
    """Drop the client's transport and wait until the server has seen it go."""
    await client.send(cmd="cut")
    await client.until_type("disconnect")
    with anyio.fail_after(5):
        await WatchedNamespace.ended(sid).wait()


async def ticks(running: Running, room: str, numbers: range) -> None:
    for n in numbers:
        await running.engine.sio.emit("tick", {"n": n}, room=room)


async def cut_after_one(running: Running, client: JSSession, room: str) -> str:
    """Join `room`, receive its event 0, then lose the transport; the sid."""
    sid = await joined(client, room)
    await ticks(running, room, range(1))
    await client.events("tick", 1)
    await cut(client, sid)
    return sid


def numbers(lines: list[dict[str, Any]]) -> list[int]:
    return [line["args"][0]["n"] for line in lines if line.get("event") == "tick"]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_recovered_with_exactly_the_missed_events_in_order(
    write_profile: Callable[..., Path], transports: list[str]
) -> None:
    async with (
        serving(write_profile(PROFILE.format(max_events=1000))) as running,
        js_session(
            running.url, auth={"token": "alice-token-0001"}, transports=transports
        ) as client,
    ):
        sid = await joined(client, "feed:1")
        await ticks(running, "feed:1", range(5))
        first = await client.events("tick", 5)
        offsets = [line["args"][-1] for line in first]
        assert all(isinstance(o, str) for o in offsets)
        assert len(set(offsets)) == 5

        await cut(client, sid)
        await ticks(running, "feed:1", range(5, 105))
        await ticks(running, "feed:2", range(1000, 1010))  # not its room: never replayed
        await client.send(cmd="connect")
        connect = await client.until_type("connect")
        assert connect == {"type": "connect", "id": sid, "recovered": True}
        # the missed events arrive before `connect` fires (the client buffers them)
        replayed = [line for line in client.seen if line.get("event") == "tick"][5:]
        assert numbers(replayed) == list(range(5, 105))

        # rooms came back (feed:1 by join_room, user:alice by auto_join): events flow live,
        # and leave_room knows the room was joined with join_room
        await running.engine.sio.emit("tick", {"n": 105}, room="feed:1")
        await running.engine.sio.emit("tick", {"n": 106}, room="user:alice")
        assert numbers(await client.events("tick", 2)) == [105, 106]
        await client.send(cmd="emit", event="leave_room", args=["feed:1"])
        assert (await client.until_type("ack"))["args"] == [{"ok": True, "room": "feed:1"}]


async def test_events_sent_during_the_reconnection_arrive_once_in_order(
    write_profile: Callable[..., Path],
) -> None:
    """A publisher that never stops: the client sees a gapless, duplicate-free sequence."""
    async with (
        serving(write_profile(PROFILE.format(max_events=10000))) as running,
        js_session(running.url, auth={"token": "alice-token-0001"}) as client,
    ):
        sid = await joined(client, "feed:1")
        sent = 0
        stop = anyio.Event()

        async def publish() -> None:
            nonlocal sent
            while not stop.is_set():
                await running.engine.sio.emit("tick", {"n": sent}, room="feed:1")
                sent += 1
                await anyio.lowlevel.checkpoint()  # let the connection's packets through

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(publish)
            await client.events("tick", 20)
            await cut(client, sid)
            await client.send(cmd="connect")
            connect = await client.until_type("connect")
            assert connect["recovered"] is True
            await client.events("tick", 20)
            stop.set()
        final = sent
        seen = numbers(client.seen)
        if len(seen) < final:
            await client.events("tick", final - len(seen))
        assert numbers(client.seen) == list(range(final))


async def test_not_recovered_past_the_history_bounds(write_profile: Callable[..., Path]) -> None:
    async with (
        serving(write_profile(PROFILE.format(max_events=50))) as running,
        js_session(running.url, auth={"token": "alice-token-0001"}) as client,
    ):
        sid = await cut_after_one(running, client, "feed:1")
        await ticks(running, "feed:1", range(1, 101))  # 100 missed, only 50 kept
        await client.send(cmd="connect")
        connect = await client.until_type("connect")
        assert connect["recovered"] is False
        assert connect["id"] != sid
        await running.engine.sio.emit("tick", {"n": 999}, room="user:alice")
        await client.events("tick", 1)
        assert numbers(client.seen) == [0, 999]  # nothing replayed, not even the last 50


async def test_not_recovered_past_max_disconnection_seconds(
    write_profile: Callable[..., Path],
) -> None:
    async with (
        serving(write_profile(PROFILE.format(max_events=1000))) as running,
        js_session(running.url, auth={"token": "alice-token-0001"}) as client,
    ):
        await cut_after_one(running, client, "feed:1")
        await ticks(running, "feed:1", range(1, 11))
        recovery = running.engine.sio.recovery
        real = recovery.clock
        recovery.clock = lambda: real() + 121  # time is an argument: two minutes later
        await client.send(cmd="connect")
        connect = await client.until_type("connect")
        assert connect["recovered"] is False
        await running.engine.sio.emit("tick", {"n": 999}, room="user:alice")
        await client.events("tick", 1)
        assert numbers(client.seen) == [0, 999]


async def test_authentication_runs_again_and_must_yield_the_same_user(
    write_profile: Callable[..., Path],
) -> None:
    async with (
        serving(write_profile(PROFILE.format(max_events=1000))) as running,
        js_session(running.url, auth={"token": "alice-token-0001"}) as client,
    ):
        await cut_after_one(running, client, "feed:1")
        await ticks(running, "feed:1", range(1, 4))
        await client.send(cmd="auth", auth={"token": "not-a-valid-token"})
        await client.send(cmd="connect")
        refused = await client.until_type("connect_error")
        assert refused["data"]["code"] == "unauthorized"
        # bob holds alice's pid and offset (the client keeps them): a fresh session for bob
        await client.send(cmd="auth", auth={"token": "bob-token-00001"})
        await client.send(cmd="connect")
        connect = await client.until_type("connect")
        assert connect["recovered"] is False
        assert numbers(client.seen) == [0]
