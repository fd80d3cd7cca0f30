"""Helpers shared by the lifecycle tests: reload over HTTP, event inboxes, JWTs, metrics."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import socketio

from engine.serve import Running

ADMIN_TOKEN = "admin-token-of-the-lifecycle-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET_A = "first-secret-of-the-lifecycle-tests-0123456789"
SECRET_B = "second-secret-of-the-lifecycle-tests-987654321"

# what every lifecycle profile shares: admin API, metrics, dashboard stats
COMMON = f"""
[admin]
token = "{ADMIN_TOKEN}"

[monitoring.sinks.prometheus]
type = "prometheus"
path = "/metrics"

[monitoring.dashboard]
enabled = true
token = "{ADMIN_TOKEN}"
"""


def token(sub: str, roles: list[str] | None = None, secret: str = SECRET_A) -> str:
    now = int(time.time())
    body = {"sub": sub, "roles": roles or [], "iat": now, "exp": now + 300}
    return jwt.encode(body, secret, algorithm="HS256")


async def reload(running: Running, profile: Path | None = None) -> tuple[int, dict[str, Any]]:
    """POST the admin reload route, as `engine reload` does; (HTTP status, report)."""
    body = {"profile": str(profile)} if profile is not None else {}
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
        response = await http.post("/engine/api/reload", json=body, headers=ADMIN)
    return response.status_code, response.json()


async def get_json(running: Running, path: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
        response = await http.get(path, headers=ADMIN)
    return response.status_code, response.json()


async def metrics(running: Running) -> str:
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
        return (await http.get("/metrics")).text


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text, None when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


class Inbox:
    """Events one client received, in order; waits with a deadline instead of sleeping."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any, float]] = []
        self.changed = anyio.Event()

    def put(self, event: str, data: Any) -> None:
        self.items.append((event, data, time.perf_counter()))
        self.changed.set()
        self.changed = anyio.Event()

    def names(self) -> list[str]:
        return [name for name, _, _ in self.items]

    def all(self, event: str) -> list[Any]:
        return [data for name, data, _ in self.items if name == event]

    async def wait(self, event: str, within: float = 5.0) -> Any:
        """The first `event` received (already, or within `within` seconds)."""
        with anyio.fail_after(within):
            while True:
                for name, data, _ in self.items:
                    if name == event:
                        return data
                await self.changed.wait()


def watched(
    *events: str, namespaces: tuple[str, ...] = ("/",), **options: Any
) -> tuple[socketio.AsyncClient, Inbox]:
    """A client whose `events` (and connect/disconnect) land in an inbox.

    Events of namespace "/" are recorded by name, the others as "<namespace> <name>".
    """
    client = socketio.AsyncClient(**{"reconnection": False, **options})
    inbox = Inbox()
    for namespace in namespaces:
        prefix = "" if namespace == "/" else f"{namespace} "
        for name in (*events, "connect", "disconnect", "connect_error"):
            client.on(name, _recorder(inbox, prefix + name), namespace=namespace)
    return client, inbox


def _recorder(inbox: Inbox, name: str) -> Any:
    def record(*args: Any) -> None:
        inbox.put(name, args[0] if args else None)

    return record
