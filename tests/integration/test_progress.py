"""Progress channels end to end: a real engine, real python-socketio clients, the in-process
publisher (`engine.progress`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import socketio

from tests.conftest import serving

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "progress"
environment = "development"

[auth]
type = "token"

[auth.token]
tokens = [
  {{ token = "alice-token-0001", user_id = "alice" }},
  {{ token = "bob-token-00001", user_id = "bob" }},
  {{ token = "carol-token-0001", user_id = "carol", roles = ["ops"] }},
]

[namespaces."/"]
require_auth = true
events = ["echo"]

[progress]
enabled = true
max_updates_per_second = {rate}
retain_seconds = {retain}
subscriber_roles = ["ops"]
"""


class Watcher:
    """A python-socketio client recording task events with their arrival time."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.done = anyio.Event()
        for name in ("task_progress", "task_completed", "task_failed", "task_cancelled"):
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(state: dict[str, Any]) -> None:
            self.events.append((time.monotonic(), name, state))
            if name != "task_progress":
                self.done.set()

        return record

    async def call(self, event: str, data: Any) -> Any:
        with anyio.fail_after(5):
            return await self.client.call(event, data, timeout=5)


@asynccontextmanager
async def watcher(url: str, token: str) -> AsyncIterator[Watcher]:
    w = Watcher()
    await w.client.connect(url, auth={"token": token}, transports=["websocket"])
    try:
        yield w
    finally:
        await w.client.disconnect()


def served(write_profile: Callable[..., Path], rate: float = 10, retain: float = 300) -> Any:
    return serving(write_profile(PROFILE.format(rate=rate, retain=retain)))


async def test_only_the_owner_or_a_named_role_may_subscribe(
    write_profile: Callable[..., Path],
) -> None:
    async with served(write_profile) as running:
        hub = running.engine.progress
        hub.publish("report-1", owner="alice", percent=10, message="starting")
        async with (
            watcher(running.url, "alice-token-0001") as alice,
            watcher(running.url, "bob-token-00001") as bob,
            watcher(running.url, "carol-token-0001") as carol,
        ):
            answer = await alice.call("join_task", {"task_id": "report-1"})
            assert answer["ok"] is True
            assert answer["state"]["percent"] == 10
            assert answer["state"]["message"] == "starting"
            refused = await bob.call("join_task", "report-1")
            assert refused["error"]["code"] == "forbidden"
            unknown = await bob.call("join_task", "no-such-task")
            assert unknown["error"]["message"] == refused["error"]["message"].replace(
                "report-1", "no-such-task"
            )  # unknown and not-yours read alike
            assert (await carol.call("join_task", "report-1"))["ok"] is True
            assert (await alice.call("join_room", "@task:report-1"))["error"]["code"] == (
                "forbidden"
            )
            # the latest state at once, then the updates, then the terminal event
            hub.complete("report-1", result={"rows": 3})
            for w in (alice, carol):
                with anyio.fail_after(5):
                    await w.done.wait()
                kinds = [name for _, name, _ in w.events]
                assert kinds[0] == "task_progress"
                assert kinds[-1] == "task_completed"
                assert w.events[-1][2]["result"] == {"rows": 3}
                assert w.events[-1][2]["percent"] == 100
            assert bob.events == []
            left = await alice.call("leave_task", "report-1")
            assert left == {"ok": True, "task_id": "report-1"}


async def test_a_tight_publisher_is_coalesced_and_the_final_state_arrives(
    write_profile: Callable[..., Path],
) -> None:
    rate = 20
    async with served(write_profile, rate=rate) as running:
        hub = running.engine.progress
        hub.publish("bulk", owner="alice", percent=0)
        async with watcher(running.url, "alice-token-0001") as alice:
            await alice.call("join_task", "bulk")
            started = time.monotonic()
            updates = 10_000
            for i in range(1, updates + 1):
                hub.publish("bulk", percent=100 * i / (updates + 1), data={"i": i})
                if i % 500 == 0:  # pace the publisher at about 10,000 updates/s
                    await anyio.sleep(0.05)
            elapsed = time.monotonic() - started
            hub.complete("bulk", result="ok")
            with anyio.fail_after(5):
                await alice.done.wait()
        progress = [state for _, name, state in alice.events if name == "task_progress"]
        # one at join, then at most one per 1/rate seconds (the first one immediately)
        assert len(progress) <= 1 + 1 + rate * elapsed + 1, (len(progress), elapsed)
        # and the channel did not stall (how many depends on how often the publisher's loop
        # yields: a synchronous batch of publishes holds the timers back)
        assert len(progress) >= 3
        # last state wins: the last update before completion carries the newest data seen
        assert [s["data"]["i"] for s in progress[1:]] == sorted(
            s["data"]["i"] for s in progress[1:]
        )
        final = alice.events[-1]
        assert final[1] == "task_completed"
        assert final[2]["result"] == "ok"
        assert final[2]["data"] == {"i": updates}
        assert final[2]["eta_seconds"] == 0.0
        print(f"coalescing: {updates} updates in {elapsed:.2f}s -> {len(progress)} events")


async def test_cancellation_reaches_the_publisher(write_profile: Callable[..., Path]) -> None:
    async with served(write_profile) as running:
        hub = running.engine.progress
        handle = hub.publish("long", owner="alice", percent=5)
        async with (
            watcher(running.url, "alice-token-0001") as alice,
            watcher(running.url, "bob-token-00001") as bob,
        ):
            assert (await bob.call("cancel_task", "long"))["error"]["code"] == "forbidden"
            assert handle.cancel_requested is False
            await alice.call("join_task", "long")
            answer = await alice.call("cancel_task", {"task_id": "long"})
            assert answer == {"ok": True, "task_id": "long", "cancel_requested": True}
            with anyio.fail_after(5):
                await handle.wait_cancelled()
            assert handle.cancel_requested is True
            hub.cancelled("long", message="stopped by the user")
            with anyio.fail_after(5):
                await alice.done.wait()
            assert alice.events[-1][1] == "task_cancelled"
            assert alice.events[-1][2]["message"] == "stopped by the user"
            again = await alice.call("cancel_task", "long")
            assert again["error"]["code"] == "forbidden"


async def test_finished_tasks_are_kept_then_forgotten(write_profile: Callable[..., Path]) -> None:
    async with served(write_profile, retain=0) as running:
        hub = running.engine.progress
        hub.publish("brief", owner="alice", percent=50)
        hub.fail("brief", error={"code": "boom"})
        assert hub.get("brief") is not None  # until the loop runs the retention timer
        async with watcher(running.url, "alice-token-0001") as alice:
            answer = await alice.call("join_task", "brief")
            assert answer["error"]["code"] == "forbidden"  # forgotten
        assert hub.get("brief") is None

    async with served(write_profile, retain=300) as running:
        running.engine.progress.publish("kept", owner="alice", percent=50)
        running.engine.progress.fail("kept", error={"code": "boom"})
        async with watcher(running.url, "alice-token-0001") as alice:
            answer = await alice.call("join_task", "kept")
            assert answer["state"]["status"] == "failed"
            assert answer["state"]["error"] == {"code": "boom"}
            with anyio.fail_after(5):
                await alice.done.wait()  # a late subscriber still gets the terminal event
