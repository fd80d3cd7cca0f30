"""Helpers of the tests that run real clusters: profiles, clients that count, conditions.

Waiting is on conditions with a deadline (`wait_until`), never on a fixed sleep.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import socketio
import tomli_w

from tests.conftest import ROOT, subprocess_env


def cluster_profile(
    redis_url: str | None,
    *,
    node_id: str | None = None,
    cluster: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> str:
    """A development profile whose `/` namespace echoes and shouts to room `everyone`."""
    table: dict[str, Any] = {"adapter": "memory"}
    if redis_url is not None:
        table = {
            "adapter": "redis",
            "url": redis_url,
            "channel": "engine-test",
            "probe_interval_seconds": 0.2,
            "probe_timeout_seconds": 1.0,
        }
    if node_id is not None:
        table["node_id"] = node_id
    table.update(cluster or {})
    document: dict[str, Any] = {
        "engine": {"name": "cluster-live", "environment": "development"},
        "server": {
            "host": "127.0.0.1",
            "port": 0,
            "shutdown_grace_seconds": 2,
            "allowed_origins": ["*"],
            "trusted_proxies": ["127.0.0.0/8"],
            "log_level": "warning",
            **(server or {}),
        },
        "namespaces": {
            "/": {
                "handler": "tests.handlers:EchoNamespace",
                "auto_join": ["everyone"],
                "client_join": ["task:*"],
            }
        },
        "cluster": table,
        "monitoring": {
            "sinks": {"prom": {"type": "prometheus", "path": "/metrics"}},
            "dashboard": {"enabled": True},
        },
    }
    return tomli_w.dumps(document)


async def wait_until(
    predicate: Callable[[], Any], within: float = 10.0, what: str = "condition"
) -> Any:
    """Re-evaluate `predicate` (sync or async) until truthy; fail after `within` seconds."""
    deadline = anyio.current_time() + within
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if anyio.current_time() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await anyio.sleep(0.02)


class Client:
    """A real python-socketio client that counts what it receives."""

    def __init__(self, name: str = "", *, ip_cookies: bool = False) -> None:
        """`ip_cookies`: keep cookies set by a host given as an IP address, as browsers do
        (aiohttp's default jar drops them, and with them a balancer's sticky cookie)."""
        self.name = name
        session = (
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) if ip_cookies else None
        )
        self.sio = socketio.AsyncClient(
            reconnection=True, reconnection_delay=0.1, http_session=session
        )
        self.received: Counter[str] = Counter()
        self.payloads: list[tuple[str, Any]] = []
        self.connects = 0
        self.disconnected_at: float | None = None
        self.connected_at: float | None = None
        self.sio.on("*", self._any)
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)

    async def _any(self, event: str, data: Any = None) -> None:
        self.received[event] += 1
        self.payloads.append((event, data))

    async def _connect(self) -> None:
        self.connects += 1
        self.connected_at = anyio.current_time()

    async def _disconnect(self, *args: Any) -> None:
        self.disconnected_at = anyio.current_time()

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    async def connect(self, url: str, transports: list[str] | None = None) -> None:
        await self.sio.connect(url, transports=transports or ["websocket"], wait_timeout=10)

    async def close(self) -> None:
        if self.sio.connected and self.sio.transport() == "polling":
            # python-engineio's polling disconnect waits for its pending long-poll GET, which
            # the server answers only at the next ping (python-socketio on hypercorn alike):
            # abort instead, the server closes the session at the ping timeout
            await self.sio.eio.disconnect(abort=True)
        elif self.sio.connected or self.sio.eio.state != "disconnected":
            await self.sio.disconnect()
        http = getattr(self.sio.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()


@asynccontextmanager
async def clients(n: int, *, ip_cookies: bool = False) -> AsyncIterator[list[Client]]:
    made = [Client(str(i), ip_cookies=ip_cookies) for i in range(n)]
    try:
        yield made
    finally:
        with anyio.CancelScope(shield=True):
            for client in made:
                with suppress(Exception):
                    await client.close()


async def get_json(url: str, limit: float = 5.0) -> Any:
    async with httpx.AsyncClient(timeout=limit) as http:
        response = await http.get(url)
        return response.json()


async def metric(url: str, name: str) -> float:
    """The value of an unlabelled metric in a /metrics page."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def node_of(stats: dict[str, Any]) -> str:
    return str(stats["node"]["id"])


def start_engine(profile: Path, bind: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """`python -m engine run --profile PROFILE --bind BIND` as a real process."""
    argv = [sys.executable, "-m", "engine", "run", "--profile", str(profile), "--bind", bind]
    return start_process(argv, log, **env)


def start_process(argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """A real process with its output (both streams) appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=subprocess_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def ready(url: str, within: float = 20.0) -> None:
    """Wait until GET /readyz answers 200."""

    async def check() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as http:
                return (await http.get(url + "/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(check, within, f"{url}/readyz")


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


Predicate = Callable[[], bool | Awaitable[bool]]
