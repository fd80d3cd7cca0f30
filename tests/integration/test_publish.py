"""The publish API and `engine.publish.Publisher` against a real engine and real clients."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import socketio

from tests.conftest import PYTHON, serving, subprocess_env

pytestmark = pytest.mark.anyio

TOKEN = "publish-token-0123456789"
PROFILE = f"""
[engine]
name = "publish"
environment = "development"

[auth]
type = "token"

[auth.token]
tokens = [
  {{ token = "alice-token-0001", user_id = "alice", roles = ["admin"] }},
  {{ token = "bob-token-00001", user_id = "bob" }},
]

[namespaces."/"]
require_auth = true
events = ["echo"]
auto_join = ["user:{{user.id}}"]

[namespaces."/".recovery]
max_events = 1000

[progress]
enabled = true

[publish]
token = "{TOKEN}"
"""
AUTH = {"authorization": f"Bearer {TOKEN}"}


class Listener:
    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.seen: list[tuple[str, list[Any]]] = []
        self.arrived = anyio.Event()
        self.client.on("*", self._record)

    async def _record(self, event: str, *args: Any) -> None:
        self.seen.append((event, list(args)))
        self.arrived.set()

    async def next(self) -> tuple[str, list[Any]]:
        with anyio.fail_after(5):
            while not self.seen:
                self.arrived = anyio.Event()
                await self.arrived.wait()
        return self.seen.pop(0)


async def listener(url: str, token: str) -> Listener:
    li = Listener()
    await li.client.connect(url, auth={"token": token}, transports=["websocket"])
    return li


async def test_auth_schema_errors_idempotency_and_offsets(
    write_profile: Callable[..., Path],
) -> None:
    async with serving(write_profile(PROFILE)) as running, httpx.AsyncClient() as http:
        url = running.url + "/engine/api/publish"
        body = {"event": "notice", "args": [{"text": "hi"}], "room": "user:bob"}
        assert (await http.post(url, json=body)).status_code == 401
        wrong = await http.post(url, json=body, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"

        bad = await http.post(url, content=b"{nope", headers=AUTH)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_payload")
        for problem, message in (
            ({"args": []}, "exactly one of `event` or `progress` is required"),
            ({"event": "x", "room": "r", "user": "u"}, "at most one of `room`, `user`, `role`"),
            ({"event": "x", "args": "nope"}, "body.args: 'nope' is not of type 'array'"),
            ({"event": "bad name!"}, "body.event: 'bad name!' does not match"),
        ):
            answer = await http.post(url, json=problem, headers=AUTH)
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["message"].startswith(message), answer.text
        unknown_ns = await http.post(url, json={"event": "x", "namespace": "/nope"}, headers=AUTH)
        assert unknown_ns.status_code == 404

        bob = await listener(running.url, "bob-token-00001")
        alice = await listener(running.url, "alice-token-0001")
        try:
            keyed = {**body, "idempotency_key": "k-1"}
            first = await http.post(url, json=keyed, headers=AUTH)
            assert first.status_code == 200
            assert first.json()["recipients"] == 1
            offset = first.json()["offset"]
            assert isinstance(offset, str)
            event, args = await bob.next()
            assert (event, args) == ("notice", [{"text": "hi"}, offset])  # offset: last arg
            again = await http.post(url, json=keyed, headers=AUTH)
            assert again.json() == {**first.json(), "duplicate": True}

            by_user = await http.post(
                url, json={"event": "dm", "args": [1], "user": "alice"}, headers=AUTH
            )
            assert by_user.json()["recipients"] == 1
            by_role = await http.post(
                url, json={"event": "ops", "args": [2], "role": "admin"}, headers=AUTH
            )
            assert by_role.json()["recipients"] == 1
            assert (await alice.next())[0] == "dm"
            assert (await alice.next())[0] == "ops"
            everyone = await http.post(url, json={"event": "all", "args": [3]}, headers=AUTH)
            assert everyone.json()["recipients"] == 2
            assert (await bob.next())[0] == "all"  # and not the idempotent repeat before it
            assert (await alice.next())[0] == "all"

            history = running.url + "/engine/api/history"
            backfill = await http.get(
                history, params={"room": "user:bob", "since": offset}, headers=AUTH
            )
            assert backfill.status_code == 200
            events = backfill.json()["events"]
            assert [e["event"] for e in events] == ["all"]  # after `since`, bob's room or all
            whole = await http.get(history, params={"room": "user:bob"}, headers=AUTH)
            assert [e["event"] for e in whole.json()["events"]] == ["notice", "all"]
            gone = await http.get(history, params={"since": "1-nothere"}, headers=AUTH)
            assert gone.status_code == 410
        finally:
            await bob.client.disconnect()
            await alice.client.disconnect()


async def test_publish_api_is_off_without_a_token(write_profile: Callable[..., Path]) -> None:
    text = PROFILE.replace(f'[publish]\ntoken = "{TOKEN}"\n', "")
    async with serving(write_profile(text)) as running, httpx.AsyncClient() as http:
        answer = await http.post(
            running.url + "/engine/api/publish", json={"event": "x"}, headers=AUTH
        )
        assert answer.status_code == 404


WORKER = """
import json, sys
from engine.publish import Publisher, PublishError
publisher = Publisher(sys.argv[1], token=sys.argv[2])
print(json.dumps(publisher.progress("export-7", owner="alice", percent=0, message="start")))
sys.stdout.flush()
sys.stdin.readline()  # the test has subscribed
for percent in (25, 50, 75):
    task = publisher.progress("export-7", percent=percent)
print(json.dumps(task))
try:
    publisher.progress("export-7", percent=101)
except PublishError as exc:
    print(json.dumps({"status": exc.status, "code": exc.code}))
print(json.dumps(publisher.complete("export-7", result={"rows": 42})))
"""


async def test_python_publisher_from_another_process(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running:
        alice = await listener(running.url, "alice-token-0001")
        try:
            async with await anyio.open_process(
                [PYTHON, "-c", WORKER, running.url, TOKEN], env=subprocess_env()
            ) as worker:
                assert worker.stdout is not None
                assert worker.stdin is not None
                lines = worker.stdout
                buffer = b""

                async def line() -> dict[str, Any]:
                    nonlocal buffer
                    with anyio.fail_after(10):
                        while b"\n" not in buffer:
                            buffer += await lines.receive()
                    raw, _, buffer = buffer.partition(b"\n")
                    out: dict[str, Any] = json.loads(raw)
                    return out

                created = await line()
                assert created["status"] == "running"
                with anyio.fail_after(5):
                    joined = await alice.client.call("join_task", "export-7", timeout=5)
                assert joined["ok"] is True
                await worker.stdin.send(b"go\n")
                assert (await line())["percent"] == 75
                assert await line() == {"status": 422, "code": "invalid_payload"}
                assert (await line())["status"] == "completed"
                await worker.wait()
            seen: list[str] = []
            while "task_completed" not in seen:
                event, args = await alice.next()
                seen.append(event)
                if event == "task_completed":
                    assert args[0]["result"] == {"rows": 42}
                    assert isinstance(args[-1], str)  # a recoverable event: its offset
            assert seen[0] == "task_progress"
        finally:
            await alice.client.disconnect()
