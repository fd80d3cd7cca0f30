"""Security policies end to end: real server, real python-socketio clients, real tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import flask
import httpx
import jwt
import pytest
import socketio

from tests.conftest import release, serving

pytestmark = pytest.mark.anyio

SECRET = "test-secret-that-is-at-least-32-bytes-long!"

JWT_PROFILE = """
[engine]
name = "sec"
environment = "production"

[server]
allowed_origins = ["https://app.example.com", "https://*.example.org"]

[auth]
type = "jwt"
sources = ["auth", "header"]

[auth.jwt]
secret = "${JWT_SECRET}"
audience = "engine-tests"
issuer = "tests"

[auth.roles.admin]
permissions = ["system_management"]

[auth.roles.viewer]
permissions = []

[namespaces."/"]
handler = "tests.handlers:RoomsNamespace"
require_auth = true
auto_join = ["user:{user.id}"]
client_join = ["inbox:{user.id}"]

[namespaces."/".events.my_rooms]

[namespaces."/".events.subscribe]
schema.type = "object"
schema.required = ["task_id"]
schema.properties.task_id = { type = "string", maxLength = 8 }

[namespaces."/admin"]
handler = "tests.handlers:EchoNamespace"
require_roles = ["admin"]
max_connections_per_user = 1

[namespaces."/admin".events.echo]
permission = "system_management"
"""


def token(sub: str = "alice", roles: list[str] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": sub,
        "roles": roles or [],
        "aud": "engine-tests",
        "iss": "tests",
        "iat": now,
        "exp": now + 300,
    }
    body.update(claims)
    return jwt.encode(body, SECRET, algorithm="HS256")


async def refused(url: str, namespace: str = "/", **kwargs: Any) -> Any:
    """Connect and return the refusal envelope (the test fails if the connection succeeds).

    The connect_error data is in the Socket.IO convention, `{"message", "data"}`, with the
    envelope `{"code", "message", "retry_after_seconds"?}` as `data`.
    """
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append, namespace=namespace)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, namespaces=[namespace], wait_timeout=5, **kwargs)
    await release(client)
    assert len(errors) == 1, errors
    error = errors[0]
    assert set(error) == {"message", "data"}, error
    assert error["message"] == error["data"]["message"]
    return error["data"]


async def connected(url: str, namespace: str = "/", **kwargs: Any) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, namespaces=[namespace], wait_timeout=5, **kwargs)
    return client


async def test_jwt_valid_expired_wrong_audience_and_header(
    write_profile: Callable[..., Path],
) -> None:
    env = {"JWT_SECRET": SECRET}
    async with serving(write_profile(JWT_PROFILE), env) as running:
        url = running.url
        alice = await connected(url, auth={"token": token("alice")})
        rooms = await alice.call("my_rooms", timeout=5)
        assert "user:alice" in rooms
        await alice.disconnect()

        expired = token(exp=int(time.time()) - 3600)
        assert await refused(url, auth={"token": expired}) == {
            "code": "unauthorized",
            "message": "token expired",
        }
        wrong_aud = await refused(url, auth={"token": token(aud="someone-else")})
        assert wrong_aud["code"] == "unauthorized"
        forged = jwt.encode(
            {"sub": "eve", "aud": "engine-tests", "iss": "tests", "exp": 2**31}, "x" * 40
        )
        assert (await refused(url, auth={"token": forged}))["code"] == "unauthorized"
        anonymous = await refused(url)
        assert anonymous["code"] == "unauthorized"
        assert "retry_after_seconds" not in anonymous

        via_header = await connected(url, headers={"Authorization": f"Bearer {token('bob')}"})
        assert "user:bob" in await via_header.call("my_rooms", timeout=5)
        await via_header.disconnect()


async def test_roles_permissions_caps_rooms_and_schemas(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(JWT_PROFILE), {"JWT_SECRET": SECRET}) as running:
        url = running.url
        viewer = await refused(url, "/admin", auth={"token": token("vic", ["viewer"])})
        assert viewer["code"] == "forbidden"
        admin = await connected(url, "/admin", auth={"token": token("ada", ["admin"])})
        assert await admin.call("echo", {"ok": 1}, namespace="/admin", timeout=5) == {"ok": 1}
        second = await refused(url, "/admin", auth={"token": token("ada", ["admin"])})
        assert second["code"] == "too_many_connections"
        await admin.disconnect()

        alice = await connected(url, auth={"token": token("alice")})

        async def call(event: str, data: Any) -> Any:
            return await alice.call(event, data, timeout=5)

        assert await call("join_room", "inbox:alice") == {"ok": True, "room": "inbox:alice"}
        assert (await call("join_room", "inbox:bob"))["error"]["code"] == "forbidden"
        assert (await call("subscribe", {"task_id": "far-too-long-id"}))["error"]["code"] == (
            "invalid_payload"
        )
        assert (await call("subscribe", {}))["error"]["code"] == "invalid_payload"
        assert (await call("undeclared", 1))["error"]["code"] == "unknown_event"
        await alice.disconnect()


async def test_wrong_origin_is_refused_on_every_transport(
    write_profile: Callable[..., Path],
) -> None:
    async with serving(write_profile(JWT_PROFILE), {"JWT_SECRET": SECRET}) as running:
        auth = {"token": token()}
        for transports in (["polling"], ["websocket"]):
            for origin in ("https://evil.example.com", "https://example.org", "null"):
                client = socketio.AsyncClient(reconnection=False)
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await client.connect(
                        running.url,
                        transports=transports,
                        headers={"Origin": origin},
                        auth=auth,
                        wait_timeout=5,
                    )
                await release(client)
            ok = await connected(
                running.url,
                transports=transports,
                headers={"Origin": "https://deep.sub.example.org"},
                auth=auth,
            )
            assert await ok.call("my_rooms", timeout=5)
            # the server's drain closes it (python-engineio's polling disconnect is slow)


TOKEN_PROFILE = """
[engine]
name = "tokens"
environment = "development"

[auth]
type = "token"

[auth.token]
tokens = [
  { token = "${ALICE_TOKEN}", user_id = "alice", roles = ["admin"] },
  { token = "mallory-token-0001", user_id = "mallory" },
]

[security.rate_limits]
events_per_connection = { rate_per_second = 2, burst = 5 }

[security.abuse]
strikes = 3
window_seconds = 60
ladder_seconds = [30, 300]
ban_by = ["user"]

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
"""


class OffsetClock:
    """The guard's clock, which a test may move forward (bans last 30 s)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def test_flooding_client_is_limited_then_banned_then_readmitted(
    write_profile: Callable[..., Path],
) -> None:
    env = {"ALICE_TOKEN": "alice-token-42"}
    async with serving(write_profile(TOKEN_PROFILE), env) as running:
        clock = OffsetClock()
        running.engine.sio.guard.clock = clock
        url = running.url
        assert (await refused(url, auth={"token": "wrong"}))["code"] == "unauthorized"

        alice = await connected(url, auth={"token": "alice-token-42"})
        mallory = await connected(url, auth={"token": "mallory-token-0001"})
        gone = anyio.Event()
        mallory.on("disconnect", lambda *args: gone.set())

        answers = []
        alice_acks = []
        for index in range(12):
            try:
                answers.append(await mallory.call("echo", index, timeout=5))
            except socketio.exceptions.BadNamespaceError:
                break  # the server disconnected mallory
            # alice is well-behaved: one event per round, within her own limit
            if index % 4 == 0:
                alice_acks.append(await alice.call("echo", f"a{index}", timeout=5))
        assert answers[:5] == [0, 1, 2, 3, 4]
        limited = [
            a for a in answers if isinstance(a, dict) and a["error"]["code"] == "rate_limited"
        ]
        assert limited
        assert all(a["error"]["retry_after_seconds"] > 0 for a in limited)
        assert answers[-1]["error"]["code"] == "banned"
        with anyio.fail_after(5):
            await gone.wait()
        assert alice_acks == ["a0", "a4", "a8"][: len(alice_acks)]
        assert alice_acks

        banned = await refused(url, auth={"token": "mallory-token-0001"})
        assert banned["code"] == "banned"
        assert 0 < banned["retry_after_seconds"] <= 30
        assert await alice.call("echo", "still here", timeout=5) == "still here"

        clock.offset += 30.01  # the ban's deadline passes
        again = await connected(url, auth={"token": "mallory-token-0001"})
        assert await again.call("echo", "back", timeout=5) == "back"
        await again.disconnect()
        await alice.disconnect()


SESSION_PROFILE = """
[engine]
name = "flask"
environment = "development"

[auth]
type = "session"

[auth.session]
secret_key = "flask-secret-key-for-tests"
user_id_key = "_user_id"
roles_key = "roles"

[security.csrf]
payload_key = "csrf_token"
cookie_name = "csrf_token"

[namespaces."/"]
handler = "tests.handlers:RoomsNamespace"
auto_join = ["user:{user.id}"]
"""


def flask_session_cookie() -> str:
    """A session cookie produced by Flask itself for a logged-in user."""
    app = flask.Flask("site")
    app.secret_key = "flask-secret-key-for-tests"

    @app.route("/login")
    def login() -> str:
        flask.session["_user_id"] = "42"
        flask.session["roles"] = ["viewer"]
        return "ok"

    response = app.test_client().get("/login")
    cookie = response.headers["Set-Cookie"]
    return cookie.split(";")[0].split("=", 1)[1]


async def test_flask_session_cookie_with_csrf(write_profile: Callable[..., Path]) -> None:
    cookie = flask_session_cookie()
    async with serving(write_profile(SESSION_PROFILE)) as running:
        url = running.url
        missing_csrf = await refused(url, headers={"Cookie": f"session={cookie}"})
        assert missing_csrf["code"] == "forbidden"
        wrong_csrf = await refused(
            url,
            headers={"Cookie": f"session={cookie}; csrf_token=abc123abc123"},
            auth={"csrf_token": "zzz999zzz999"},
        )
        assert wrong_csrf["code"] == "forbidden"
        tampered = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
        assert (await refused(url, headers={"Cookie": f"session={tampered}"}))["code"] == (
            "unauthorized"
        )
        client = await connected(
            url,
            headers={"Cookie": f"session={cookie}; csrf_token=abc123abc123"},
            auth={"csrf_token": "abc123abc123"},
        )
        assert "user:42" in await client.call("my_rooms", timeout=5)
        await client.disconnect()


async def test_security_events_are_logged_as_json(
    write_profile: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(write_profile(JWT_PROFILE), {"JWT_SECRET": SECRET}) as running:
        for _ in range(12):
            await refused(running.url, auth={"token": "garbage"})
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{running.url}/healthz")).status_code == 200
    records = [r for r in caplog.records if r.name == "engine.security"]
    # 12 refusals from one address: the log keeps a burst of 5, then about one a second
    assert 5 <= len(records) < 12
    import json

    event = json.loads(records[0].getMessage())
    assert event["type"] == "connect_refused"
    assert event["code"] == "unauthorized"
    assert event["namespace"] == "/"
    assert event["ip"] == "127.0.0.1"
    assert event["policy"] == "auth"
    assert "garbage" not in records[0].getMessage()


CAPS_PROFILE = """
[engine]
name = "caps"
environment = "development"

[server]
trusted_proxies = ["127.0.0.1/32"]

[auth]
type = "token"
allow_anonymous = true

[auth.token]
tokens = [{ token = "carol-token-0001", user_id = "carol" }]

[security.rate_limits]
events_per_user = { rate_per_second = 0.001, burst = 3 }

[security.abuse]
strikes = 100
deny_cidrs = ["10.66.0.0/16"]

[security.connections]
max_per_ip = 2

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"

[namespaces."/".events.echo]

[namespaces."/".events.hasty]
rate_limit = { rate_per_second = 0.001, burst = 1, action = "disconnect" }
"""


async def test_deny_list_ip_cap_user_limit_and_disconnect_action(
    write_profile: Callable[..., Path],
) -> None:
    async with serving(write_profile(CAPS_PROFILE)) as running:
        url = running.url
        async with httpx.AsyncClient() as http:
            denied = await http.get(
                f"{url}/socket.io/?EIO=4&transport=polling",
                headers={"X-Forwarded-For": "10.66.1.2"},
            )
        assert denied.status_code == 403
        assert denied.json()["data"]["code"] == "forbidden"

        ip = {"X-Forwarded-For": "10.1.2.3"}
        first = await connected(url, headers=ip)
        second = await connected(url, headers=ip)
        third = await refused(url, headers=ip)
        assert third["code"] == "too_many_connections"
        await second.disconnect()
        # the cap counts live connections: a slot frees up when one leaves
        replacement = await connected(url, headers=ip)

        # events_per_user spans the user's connections
        carol_a = await connected(url, auth={"token": "carol-token-0001"})
        carol_b = await connected(url, auth={"token": "carol-token-0001"})
        results = [await c.call("echo", i, timeout=5) for i, c in enumerate([carol_a, carol_b] * 2)]
        assert results[:3] == [0, 1, 2]
        assert results[3]["error"]["code"] == "rate_limited"

        gone = anyio.Event()
        first.on("disconnect", lambda *args: gone.set())
        assert await first.call("hasty", 1, timeout=5) is None  # no handler: no value
        await first.emit("hasty", 2)
        with anyio.fail_after(5):
            await gone.wait()
        for client in (replacement, carol_a, carol_b):
            await client.disconnect()
