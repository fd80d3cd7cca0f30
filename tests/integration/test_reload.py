"""Hot reload under load: real server, 100 real python-socketio clients sending steadily.

A valid reload (a limit tightened, an event added, the JWT secret rotated) changes every
decision at one instant and drops no connection and no ack; an invalid reload and a
restart-required one change nothing and say why; buckets and bans outlive a reload; namespaces
come and go; health, metrics and the dashboard follow the active config_hash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import socketio

from tests.conftest import release, serving
from tests.integration.lifecycle import (
    COMMON,
    SECRET_A,
    SECRET_B,
    get_json,
    metric,
    metrics,
    reload,
    token,
    watched,
)

pytestmark = pytest.mark.anyio

CLIENTS = 100
TICK_SECONDS = 0.25  # each client sends one event per tick: 400 events/s in all
ROUND = ("echo", "added", "limited")


def load_profile_text(
    *,
    secret: str = SECRET_A,
    limited: str = "{ rate_per_second = 100, burst = 100 }",
    added: bool = False,
    ping_interval: int = 25,
) -> str:
    events = '[namespaces."/".events.added]\n' if added else ""
    return f"""
[engine]
name = "reload"
environment = "development"

[server]
ping_interval_seconds = {ping_interval}
shutdown_grace_seconds = 2

[auth]
type = "jwt"
sources = ["auth"]

[auth.jwt]
secret = "{secret}"

[namespaces."/"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
require_auth = true

[namespaces."/".events.echo]

[namespaces."/".events.limited]
rate_limit = {limited}

{events}
{COMMON}
"""


@dataclass
class Call:
    event: str
    sent: float
    received: float
    result: Any


@dataclass
class Sender:
    """One client sending `ROUND` events, one per tick, recording every ack."""

    index: int
    client: socketio.AsyncClient
    calls: list[Call] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def run(self, stop: anyio.Event, progress: Callable[[], None]) -> None:
        step = 0
        next_tick = time.perf_counter()
        while not stop.is_set():
            event = ROUND[step % len(ROUND)]
            sent = time.perf_counter()
            try:
                result = await self.client.call(event, self.index, timeout=10)
            except Exception as exc:  # a lost ack or a dropped connection
                self.failures.append(f"{event}: {type(exc).__name__}: {exc}")
                return
            self.calls.append(Call(event, sent, time.perf_counter(), result))
            progress()
            step += 1
            next_tick += TICK_SECONDS
            # the steady send rate of the load, not a wait for something to happen
            await anyio.sleep(max(0.0, next_tick - time.perf_counter()))

    def done_since(self, moment: float) -> int:
        return sum(1 for c in self.calls if c.sent > moment)


class Load:
    """The senders of all clients; `until(n, since)` waits for n calls per client after since."""

    def __init__(self, senders: list[Sender]) -> None:
        self.senders = senders
        self.stop = anyio.Event()
        self.tick = anyio.Event()

    def progress(self) -> None:
        self.tick.set()
        self.tick = anyio.Event()

    async def until(self, calls: int, since: float, within: float = 20.0) -> None:
        with anyio.fail_after(within):
            while any(s.done_since(since) < calls for s in self.senders):
                failed = [f for s in self.senders for f in s.failures]
                assert not failed, failed[:5]
                await self.tick.wait()


def is_refused(result: Any, code: str) -> bool:
    return isinstance(result, dict) and result.get("error", {}).get("code") == code


async def connect_all(url: str, count: int) -> list[tuple[socketio.AsyncClient, Any]]:
    clients = [watched() for _ in range(count)]

    async def connect(index: int) -> None:
        client, _ = clients[index]
        await client.connect(
            url,
            transports=["websocket"],
            auth={"token": token(f"user{index}")},
            wait_timeout=20,
        )

    async with anyio.create_task_group() as tasks:
        for index in range(count):
            tasks.start_soon(connect, index)
    return clients


async def disconnect_all(clients: list[socketio.AsyncClient]) -> None:
    async with anyio.create_task_group() as tasks:
        for client in clients:
            tasks.start_soon(client.disconnect)


async def test_reload_under_load_is_atomic_and_drops_nothing(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(load_profile_text())
    tightened = write_profile(
        load_profile_text(
            secret=SECRET_B, limited="{ rate_per_second = 0.2, burst = 1 }", added=True
        ),
        "tightened.toml",
    )
    broken = write_profile(load_profile_text() + "\n[server\nport = 1\n", "broken.toml")
    # a live change (the event removed) beside one that needs a restart: neither applies
    restart = write_profile(
        load_profile_text(
            secret=SECRET_B, limited="{ rate_per_second = 0.2, burst = 1 }", ping_interval=30
        ),
        "restart.toml",
    )
    async with serving(path) as running:
        started = time.perf_counter()
        pairs = await connect_all(running.url, CLIENTS)
        print(f"\n{CLIENTS} clients connected in {time.perf_counter() - started:.2f} s")
        sids = [client.sid for client, _ in pairs]
        load = Load([Sender(i, client) for i, (client, _) in enumerate(pairs)])
        old_hash = running.engine.profile.config_hash

        async with anyio.create_task_group() as tasks:
            for sender in load.senders:
                tasks.start_soon(sender.run, load.stop, load.progress)
            await load.until(len(ROUND) * 2, 0.0)

            reload_started = time.perf_counter()
            status, report = await reload(running, tightened)
            reload_ended = time.perf_counter()
            assert status == 200, report
            assert report["outcome"] == "applied"
            assert report["old_config_hash"] == old_hash
            new_hash = report["new_config_hash"]
            assert new_hash == running.engine.profile.config_hash != old_hash
            live = "\n".join(report["live"])
            assert "auth.jwt.secret" in live
            assert "namespaces./.events.added" in live or '"/".events.added' in live, live
            assert "rate_limit" in live
            assert report["restart_required"] == []
            print(
                f"reload under load ({CLIENTS} clients, {CLIENTS / TICK_SECONDS:.0f} events/s): "
                f"{(reload_ended - reload_started) * 1000:.1f} ms (HTTP round trip)"
            )
            await load.until(len(ROUND) * 2, reload_ended)

            status, report = await reload(running, broken)
            assert status == 422
            assert report["outcome"] == "invalid"
            assert report["errors"], report
            assert any("broken.toml" in e for e in report["errors"]), report["errors"]
            status, report = await reload(running, restart)
            assert status == 409
            assert report["outcome"] == "refused"
            assert any("server.ping_interval_seconds" in c for c in report["restart_required"])
            assert any("added" in c for c in report["live"]), report["live"]
            assert running.engine.profile.config_hash == new_hash
            after_refusals = time.perf_counter()
            await load.until(len(ROUND) * 2, after_refusals)
            load.stop.set()

        failures = [f for s in load.senders for f in s.failures]
        assert not failures, failures[:5]
        for sender in load.senders:
            added = [c for c in sender.calls if c.event == "added"]
            # per connection: refused, refused, ..., accepted, accepted, ... (one switch)
            outcomes = [not is_refused(c.result, "unknown_event") for c in added]
            assert outcomes == sorted(outcomes), (sender.index, outcomes)
            for call in added:
                if call.received < reload_started:
                    assert is_refused(call.result, "unknown_event"), call
                if call.sent > reload_ended:
                    # also after the invalid and the refused reloads: nothing changed
                    assert call.result == {"added": sender.index}, call
            limited = [c for c in sender.calls if c.event == "limited"]
            assert all(
                c.result == {"limited": sender.index} for c in limited if c.sent < reload_started
            )
            assert any(
                is_refused(c.result, "rate_limited") for c in limited if c.sent > reload_ended
            ), (sender.index, [c.result for c in limited])
            echoes = [c for c in sender.calls if c.event == "echo"]
            assert all(c.result == sender.index for c in echoes)
        total = sum(len(s.calls) for s in load.senders)
        print(f"acks received: {total}, lost: 0")

        for (client, inbox), sid in zip(pairs, sids, strict=True):
            assert client.connected
            assert client.sid == sid
            assert "disconnect" not in inbox.names()

        # the rotated secret: old tokens are refused, new ones admitted; nobody was dropped
        stale, stale_inbox = watched("connect_error")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await stale.connect(running.url, auth={"token": token("late")}, wait_timeout=5)
        await release(stale)
        assert (await stale_inbox.wait("connect_error"))["data"]["code"] == "unauthorized"
        fresh, _ = watched()
        await fresh.connect(
            running.url, auth={"token": token("late", secret=SECRET_B)}, wait_timeout=5
        )
        assert await fresh.call("added", 7, timeout=5) == {"added": 7}
        await fresh.disconnect()

        text = await metrics(running)
        for result, count in (("applied", 1), ("invalid", 1), ("refused", 1)):
            assert metric(text, "engine_config_reloads_total", result=result) == count
        assert metric(text, "engine_config_info", hash=new_hash) == 1
        await disconnect_all([client for client, _ in pairs])


STATE_PROFILE = f"""
[engine]
name = "state"
environment = "development"

[auth]
type = "jwt"
sources = ["auth"]

[auth.jwt]
secret = "{SECRET_A}"

[security.abuse]
strikes = 2
window_seconds = 60
ladder_seconds = [60]
ban_by = ["user"]

[namespaces."/"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
require_auth = true

[namespaces."/".events.echo]

[namespaces."/".events.limited]
rate_limit = {{ rate_per_second = 0.01, burst = 2 }}
{COMMON}
"""


async def test_buckets_and_bans_survive_a_reload(write_profile: Callable[..., Path]) -> None:
    path = write_profile(STATE_PROFILE)
    changed = write_profile(
        STATE_PROFILE.replace('[namespaces."/".events.echo]', '[namespaces."/".events.added]\n'),
        "changed.toml",
    )
    async with serving(path) as running:
        url = running.url
        drained, _ = watched()
        await drained.connect(url, auth={"token": token("drained")}, transports=["websocket"])
        for _ in range(2):
            assert await drained.call("limited", 1, timeout=5) == {"limited": 1}
        banned, banned_inbox = watched("error")
        await banned.connect(url, auth={"token": token("mallory")}, transports=["websocket"])
        for _ in range(2):  # two strikes: banned, and the session is closed
            await banned.emit("undeclared", 1)
        await banned_inbox.wait("disconnect")
        assert "banned" in [e.get("code") for e in banned_inbox.all("error")]

        status, report = await reload(running, changed)
        assert (status, report["outcome"]) == (200, "applied"), report

        # the bucket drained before the reload is still empty (same limit, same connection)
        refused = await drained.call("limited", 1, timeout=5)
        assert refused["error"]["code"] == "rate_limited", refused
        assert await drained.call("added", 2, timeout=5) == {"added": 2}
        # the ban issued before the reload still holds
        again, inbox = watched()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await again.connect(url, auth={"token": token("mallory")}, wait_timeout=5)
        await release(again)
        assert (await inbox.wait("connect_error"))["data"]["code"] == "banned"
        await drained.disconnect()


def namespaces_profile(*names: str) -> str:
    sections = "\n".join(
        f'[namespaces."{name}"]\nhandler = "tests.lifecycle_handlers:LifecycleNamespace"\n'
        for name in names
    )
    return f"""
[engine]
name = "namespaces-{len(names)}"
environment = "development"

{sections}
{COMMON}
"""


async def test_namespaces_added_and_removed_and_config_hash_everywhere(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(namespaces_profile("/", "/old"))
    swapped = write_profile(namespaces_profile("/", "/new", "/newer"), "swapped.toml")
    async with serving(path) as running:
        url = running.url
        old_hash = running.engine.profile.config_hash
        client, inbox = watched("error", namespaces=("/", "/old"))
        await client.connect(url, namespaces=["/", "/old"], transports=["websocket"])
        assert await client.call("echo", 1, namespace="/old", timeout=5) == 1
        early, early_inbox = watched(namespaces=("/new",))
        with pytest.raises(socketio.exceptions.ConnectionError):
            await early.connect(url, namespaces=["/new"], wait_timeout=5)
        await release(early)
        assert await early_inbox.wait("/new connect_error") == {"message": "Invalid namespace"}

        status, report = await reload(running)  # the running file, unchanged
        assert (status, report["outcome"]) == (200, "unchanged"), report

        status, report = await reload(running, swapped)
        assert (status, report["outcome"]) == (200, "applied"), report
        assert report["namespaces_added"] == ["/new", "/newer"]
        assert report["namespaces_removed"] == ["/old"]
        new_hash = report["new_config_hash"]

        # clients of the removed namespace learn why, then are disconnected from it only
        error = await inbox.wait("/old error")
        assert error["code"] == "namespace_removed", error
        await inbox.wait("/old disconnect")
        assert await client.call("echo", 2, timeout=5) == 2
        assert "disconnect" not in inbox.names()

        # the added namespaces accept connections, the removed one no longer does
        late, _ = watched(namespaces=("/new", "/newer"))
        await late.connect(url, namespaces=["/new", "/newer"], transports=["websocket"])
        assert await late.call("echo", 3, namespace="/newer", timeout=5) == 3
        gone, gone_inbox = watched(namespaces=("/old",))
        with pytest.raises(socketio.exceptions.ConnectionError):
            await gone.connect(url, namespaces=["/old"], wait_timeout=5)
        await release(gone)
        assert await gone_inbox.wait("/old connect_error") == {"message": "Invalid namespace"}

        # every view of the engine shows the active profile
        for route in ("/readyz", "/healthz"):
            status, body = await get_json(running, route)
            assert status == 200, body
            assert body["config_hash"] == new_hash != old_hash
            assert body["profile"] == "namespaces-3"
        status, stats = await get_json(running, "/engine/api/stats")
        assert status == 200
        assert stats["config_hash"] == new_hash
        connections = {ns["namespace"]: ns["connections"] for ns in stats["namespaces"]}
        assert {"/new", "/newer"} <= set(connections), connections
        # the server-side disconnect is off the books (it no longer counts against caps)
        assert connections.get("/old", 0) == 0, connections
        assert connections["/"] == 1, connections
        assert connections["/newer"] == 1, connections
        text = await metrics(running)
        assert metric(text, "engine_config_info", hash=new_hash, profile="namespaces-3") == 1
        assert metric(text, "engine_config_info", hash=old_hash) is None
        assert metric(text, "engine_config_reloads_total", result="applied") == 1
        assert metric(text, "engine_config_reloads_total", result="unchanged") == 1
        await late.disconnect()
        await client.disconnect()
