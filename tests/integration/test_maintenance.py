"""Maintenance turned on and off by a reload, seen by an admin client and a user client.

Refused: new connections that are not admitted (code `maintenance`, retry_after_seconds).
Notified: connected clients that are not admitted (a `maintenance` event). Disconnected after
the grace period: the same clients, at the Socket.IO level (no reconnect storm). Untouched:
admitted roles and namespaces. /readyz stays ready; /healthz says maintenance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import socketio

from engine.cli import main
from tests.conftest import ROOT, release, serving
from tests.integration.lifecycle import (
    ADMIN_TOKEN,
    COMMON,
    SECRET_A,
    get_json,
    reload,
    token,
    watched,
)

pytestmark = pytest.mark.anyio

GRACE_SECONDS = 0.5

NORMAL = f"""
[engine]
name = "service"
environment = "development"

[auth]
type = "jwt"
sources = ["auth"]

[auth.jwt]
secret = "{SECRET_A}"

[auth.roles.admin]
permissions = []

[auth.roles.viewer]
permissions = []

[namespaces."/"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
require_auth = true
max_connections_per_user = 1

[namespaces."/status"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
require_auth = true

[namespaces."/admin"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
require_roles = ["admin"]
{COMMON}
"""

MAINTENANCE = f"""
{NORMAL}
[maintenance]
enabled = true
message = "Upgrading; back soon."
retry_after_seconds = 30
admit_roles = ["admin"]
admit_namespaces = ["/status"]
existing = "disconnect"
grace_seconds = {GRACE_SECONDS}
"""

EVENTS = ("maintenance", "error")


async def refusal(url: str, who: str, roles: list[str], namespace: str = "/") -> Any:
    client, inbox = watched(namespaces=(namespace,))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            url, namespaces=[namespace], auth={"token": token(who, roles)}, wait_timeout=5
        )
    await release(client)
    prefix = "" if namespace == "/" else f"{namespace} "
    return (await inbox.wait(prefix + "connect_error"))["data"]


async def test_maintenance_on_and_off_by_reload(write_profile: Callable[..., Path]) -> None:
    normal = write_profile(NORMAL)
    maintenance = write_profile(MAINTENANCE, "maintenance.toml")
    async with serving(normal) as running:
        url = running.url
        admin, admin_inbox = watched(*EVENTS, namespaces=("/", "/admin"))
        await admin.connect(
            url,
            namespaces=["/", "/admin"],
            auth={"token": token("ada", ["admin"])},
            transports=["websocket"],
        )
        user, user_inbox = watched(*EVENTS, namespaces=("/", "/status"))
        await user.connect(
            url,
            namespaces=["/", "/status"],
            auth={"token": token("uma", ["viewer"])},
            transports=["websocket"],
        )
        admin_sid, user_status_sid = admin.get_sid("/admin"), user.get_sid("/status")

        switched = time.perf_counter()  # before the request: the grace starts inside it
        status, report = await reload(running, maintenance)
        assert (status, report["outcome"]) == (200, "applied"), report
        assert any(c.startswith("~ maintenance.enabled") for c in report["live"]), report

        # notified: the user on "/", with the grace period; never the admitted connections
        notice = await user_inbox.wait("maintenance")
        assert notice == {
            "message": "Upgrading; back soon.",
            "retry_after_seconds": 30,
            "disconnect_in_seconds": GRACE_SECONDS,
        }
        # refused: new connections not admitted; admitted: roles and namespaces
        refused = await refusal(url, "ulf", ["viewer"])
        assert refused == {
            "code": "maintenance",
            "message": "Upgrading; back soon.",
            "retry_after_seconds": 30,
        }
        late_admin, _ = watched()
        await late_admin.connect(url, auth={"token": token("alan", ["admin"])})
        status_only, _ = watched(namespaces=("/status",))
        await status_only.connect(
            url, namespaces=["/status"], auth={"token": token("ulf", ["viewer"])}
        )
        assert await status_only.call("echo", 1, namespace="/status", timeout=5) == 1

        # ready, and saying why it refuses
        status, ready = await get_json(running, "/readyz")
        assert status == 200
        assert ready["ready"] is True
        status, health = await get_json(running, "/healthz")
        assert status == 200
        assert health["maintenance"] is True
        assert "maintenance" in health["reasons"]

        # disconnected after the grace period: the user from "/" only, with the reason
        await user_inbox.wait("disconnect", within=GRACE_SECONDS + 5)
        grace = time.perf_counter() - switched
        print(
            f"\nmaintenance: user disconnected {grace:.3f} s after the switch "
            f"(grace_seconds={GRACE_SECONDS})"
        )
        assert grace >= GRACE_SECONDS
        errors = user_inbox.all("error")
        assert [e["code"] for e in errors] == ["maintenance"], errors
        assert user.get_sid("/status") == user_status_sid
        assert await user.call("echo", 2, namespace="/status", timeout=5) == 2
        # untouched: the admin, on both namespaces
        assert await admin.call("echo", 3, timeout=5) == 3
        assert await admin.call("echo", 4, namespace="/admin", timeout=5) == 4
        assert admin_inbox.names() == ["connect", "/admin connect"]

        status, report = await reload(running, normal)
        assert (status, report["outcome"]) == (200, "applied"), report
        status, health = await get_json(running, "/healthz")
        assert health["maintenance"] is False
        # normal service: the user is back (its old connection no longer counts against
        # max_connections_per_user = 1), nobody admitted was dropped
        again, _ = watched()
        await again.connect(url, auth={"token": token("uma", ["viewer"])})
        assert await again.call("echo", 5, timeout=5) == 5
        assert admin.get_sid("/admin") == admin_sid
        assert admin_inbox.names() == ["connect", "/admin connect"]
        for client in (admin, user, late_admin, status_only, again):
            await client.disconnect()


async def test_shipped_maintenance_profile_and_back_with_engine_reload(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`engine reload --profile profiles/maintenance.toml`, then production.toml again."""
    secret = "production-secret-of-the-lifecycle-tests-0123"
    env = {
        "ENGINE_JWT_SECRET": secret,
        "ENGINE_ADMIN_TOKEN": ADMIN_TOKEN,
        "ENGINE_SECURITY_LOG": str(tmp_path / "security.jsonl"),
    }
    for name, value in env.items():  # a reload reads the file with the process environment
        monkeypatch.setenv(name, value)
    production = ROOT / "profiles" / "production.toml"
    maintenance = ROOT / "profiles" / "maintenance.toml"
    origin = {"Origin": "https://app.example.com"}
    async with serving(production, env) as running:
        url = running.url

        def engine_reload(path: Path) -> int:
            return main(["reload", "--profile", str(path), "--url", url])

        admin, admin_inbox = watched(*EVENTS, namespaces=("/admin",))
        await admin.connect(
            url,
            namespaces=["/admin"],
            headers=origin,
            auth={"token": token("ada", ["admin"], secret)},
            transports=["websocket"],
        )
        user, user_inbox = watched(*EVENTS)
        await user.connect(
            url, headers=origin, auth={"token": token("uma", [], secret)}, transports=["websocket"]
        )
        assert await anyio.to_thread.run_sync(engine_reload, maintenance) == 0
        assert running.engine.profile.engine.name == "maintenance"
        notice = await user_inbox.wait("maintenance")
        assert notice["disconnect_in_seconds"] == 60
        status, ready = await get_json(running, "/readyz")
        assert (status, ready["ready"], ready["maintenance"]) == (200, True, True)
        # the event maintenance.toml adds is admitted (/admin has no handler, so no ack: an
        # `error` event would say otherwise, ahead of the refusal of the next call)
        await admin.emit("maintenance_cancel", namespace="/admin")
        probe = await admin.call("undeclared", namespace="/admin", timeout=5)
        assert probe["error"]["code"] == "unknown_event"
        assert admin_inbox.all("/admin error") == []

        assert await anyio.to_thread.run_sync(engine_reload, production) == 0
        assert running.engine.profile.engine.name == "production"
        status, health = await get_json(running, "/healthz")
        assert (status, health["maintenance"]) == (200, False)
        # back before the grace period ended: nobody was disconnected, no restart happened
        assert user.connected
        assert "disconnect" not in user_inbox.names()
        assert admin_inbox.names() == ["/admin connect"]
        assert user.get_sid() is not None
        refused = await admin.call("maintenance_cancel", namespace="/admin", timeout=5)
        assert refused["error"]["code"] == "unknown_event"
        for client in (admin, user):
            await client.disconnect()
