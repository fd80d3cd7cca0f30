"""The dashboard in a real headless Chromium, driven over the DevTools protocol (CDP).

Skipped when Chromium is not installed (`scripts/system-deps` installs it). Saves a screenshot to
`artifacts/dashboard.png`.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
import socketio
from anyio.abc import Process

from tests.conftest import ROOT, serving

pytestmark = pytest.mark.anyio

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
TOKEN = "browser-token-0123456789abcdef"
PROFILE = f"""
[engine]
name = "browser"
environment = "development"

[server]
shutdown_grace_seconds = 2

[namespaces."/"]
handler = "tests.integration.test_monitoring:Tracked"
events = ["echo"]

[namespaces."/chat"]
events = ["message"]

[monitoring.sinks.prom]
type = "prometheus"

[monitoring.dashboard]
enabled = true
token = "{TOKEN}"
"""
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1600,1000",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/system-deps installs it)"
)


class CDP:
    """A minimal sequential DevTools client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def _receive(self) -> dict[str, Any]:
        message = await self.ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"devtools connection ended: {message.type}")
        data: dict[str, Any] = json.loads(message.data)
        return data

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        await self.ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            data = await self._receive()
            if data.get("id") == call_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                result: dict[str, Any] = data["result"]
                return result
            if "method" in data:
                self.events.append(data)

    async def event(self, method: str) -> dict[str, Any]:
        """The next (possibly already received) event `method`."""
        for i, data in enumerate(self.events):
            if data["method"] == method:
                return self.events.pop(i)
        while True:
            data = await self._receive()
            if data.get("method") == method:
                return data
            if "method" in data:
                self.events.append(data)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JS in the page, awaiting a returned promise."""
        reply = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def navigate(self, url: str) -> None:
        self.events.clear()
        await self.call("Page.navigate", url=url)
        await self.event("Page.loadEventFired")

    async def wait_for(self, predicate_js: str, seconds: float = 10) -> Any:
        """Resolve when the JS expression `predicate_js` is truthy (checked in the page)."""
        script = f"""new Promise((resolve) => {{
            const check = () => {{
                let value;
                try {{ value = ({predicate_js}); }} catch (e) {{ value = undefined; }}
                if (value) resolve(value); else setTimeout(check, 25);
            }};
            check();
        }})"""
        with anyio.fail_after(seconds):
            return await self.evaluate(script)


@asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[CDP]:
    """Start headless Chromium and attach to its first page over CDP."""
    assert CHROMIUM is not None
    profile_dir = tmp_path / "chromium-profile"
    args = [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"]
    process: Process = await anyio.open_process(args)
    log: list[str] = []
    found = anyio.Event()
    endpoint: list[str] = []

    async def read_stderr() -> None:
        assert process.stderr is not None
        buffer = ""
        async for chunk in process.stderr:
            buffer += chunk.decode(errors="replace")
            *lines, buffer = buffer.split("\n")
            for line in lines:
                log.append(line)
                if line.startswith("DevTools listening on ") and not found.is_set():
                    endpoint.append(line.removeprefix("DevTools listening on ").strip())
                    found.set()

    async def drain_stdout() -> None:
        assert process.stdout is not None
        async for _ in process.stdout:
            pass

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_stderr)
            tasks.start_soon(drain_stdout)
            try:
                with anyio.fail_after(30):
                    await found.wait()
            except TimeoutError:
                pytest.fail("chromium did not start:\n" + "\n".join(log[-20:]))
            port = endpoint[0].split("//", 1)[1].split("/", 1)[0]
            async with httpx.AsyncClient() as http:
                targets = (await http.get(f"http://{port}/json/list")).json()
            page = next(t for t in targets if t["type"] == "page")
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws,
            ):
                cdp = CDP(ws)
                await cdp.call("Page.enable")
                await cdp.call("Runtime.enable")
                yield cdp
            tasks.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
        with anyio.move_on_after(10, shield=True):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


@needs_chromium
async def test_dashboard_in_chromium(write_profile: Callable[..., Path], tmp_path: Path) -> None:
    async with serving(write_profile(PROFILE)) as running, chromium(tmp_path) as page:
        base = running.url
        # unauthenticated: the dashboard sends the browser to the login form, the API says 401
        await page.navigate(f"{base}/engine/dashboard")
        assert await page.evaluate("location.pathname") == "/engine/dashboard/login"
        assert await page.evaluate("document.getElementById('connections')") is None
        assert await page.evaluate("fetch('/engine/api/stats').then((r) => r.status)") == 401
        # log in through the form: the HttpOnly cookie is set and the dashboard loads
        await page.evaluate(
            f"document.getElementById('token').value = {json.dumps(TOKEN)};"
            "document.querySelector('form').submit(); true"
        )
        await page.event("Page.loadEventFired")
        assert await page.evaluate("location.pathname") == "/engine/dashboard"
        assert await page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts
        await page.wait_for("document.getElementById('status').textContent === 'healthy'")
        assert await page.evaluate("document.getElementById('connections').textContent") == "0"

        client = socketio.AsyncClient(reconnection=False)
        await client.connect(base, namespaces=["/", "/chat"], transports=["websocket"])
        try:
            for i in range(3):
                await client.call("echo", i, timeout=5)
            shown = await page.wait_for(
                "document.getElementById('connections').textContent !== '0'"
                " && document.getElementById('connections').textContent"
            )
            assert shown == "2"  # one client, two namespaces
            await page.wait_for(
                "document.getElementById('namespaces').textContent.includes('/chat')"
            )
            shot = await page.call("Page.captureScreenshot", format="png")
        finally:
            await client.disconnect()
        artifacts = ROOT / "artifacts"
        artifacts.mkdir(exist_ok=True)
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        (artifacts / "dashboard.png").write_bytes(png)
