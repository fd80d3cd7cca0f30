"""`/engine/client.js` in headless Chromium against a running engine, and the client config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

from tests.conftest import serving
from tests.handlers import WatchedNamespace
from tests.integration.test_dashboard_browser import chromium, needs_chromium

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "helper"
environment = "development"

[server]
allowed_origins = ["*"]

[auth]
type = "token"

[auth.token]
tokens = [{ token = "alice-token-0001", user_id = "alice" }]

[namespaces."/"]
handler = "tests.handlers:WatchedNamespace"
require_auth = true
events = ["echo"]

[namespaces."/".recovery]
max_disconnection_seconds = 60

[progress]
enabled = true
max_updates_per_second = 1000
"""


async def test_client_config_follows_the_profile(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(PROFILE)) as running, httpx.AsyncClient() as http:
        answer = await http.get(running.url + "/engine/api/client-config")
        assert answer.headers["access-control-allow-origin"] == "*"
        config = answer.json()
        assert config["path"] == "/socket.io/"
        assert config["namespaces"]["/"]["recovery"] == {"max_disconnection_seconds": 60}
        assert config["progress"]["namespace"] == "/"
        retry = config["reconnection"]["retry_codes"]
        assert "rate_limited" in retry
        assert "server_draining" in retry
        assert "unauthorized" not in retry
        script = await http.get(running.url + "/engine/client.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert 'from "./socket.io.esm.min.js"' in script.text
        bundle = await http.get(running.url + "/engine/socket.io.esm.min.js")
        assert "Socket.IO v4.8" in bundle.text[:200]


@needs_chromium
async def test_helper_watches_a_task_across_a_dropped_transport(
    write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    async with serving(write_profile(PROFILE)) as running, chromium(tmp_path) as page:
        hub = running.engine.progress
        hub.publish("job-1", owner="alice", percent=0, message="queued")
        await page.navigate(running.url + "/engine/api/client-config")  # the engine's origin
        await page.evaluate(
            """(async () => {
                const { connect } = await import("/engine/client.js");
                window.seen = []; window.done = null; window.statuses = [];
                window.engine = await connect({
                    auth: { token: "alice-token-0001" },
                    onStatus: (status, detail) => window.statuses.push([status, detail]),
                });
                await new Promise((resolve) => window.engine.socket.connected
                    ? resolve() : window.engine.socket.once("connect", resolve));
                await window.engine.watchTask("job-1", {
                    onProgress: (state) => window.seen.push(state.percent),
                    onDone: (state) => { window.done = state; },
                });
                return true;
            })()"""
        )
        await page.wait_for("window.seen.length === 1")  # the latest state, at once
        for percent in (10, 20):
            hub.publish("job-1", percent=percent)
            await page.wait_for(f"window.seen.includes({percent})")

        # the transport drops; updates are published while the page is away
        sid = await page.evaluate(
            """(() => {
                const socket = window.engine.socket;
                socket.io.reconnection(false);
                const id = socket.id;
                socket.io.engine.close();
                return id;
            })()"""
        )
        with anyio.fail_after(5):
            await WatchedNamespace.ended(sid).wait()
        hub.publish("job-1", percent=30, message="missed 1")
        hub.publish("job-1", percent=40, message="missed 2")  # coalesced after 1 ms
        store = running.engine.sio.recovery.store
        with anyio.fail_after(5):  # the coalesced update goes out 1 ms later
            while len(await store.since("/", "@task:job-1", None, 99)) < 4:
                await anyio.lowlevel.checkpoint()
        await page.evaluate(
            "(() => { window.engine.socket.io.reconnection(true); "
            "window.engine.socket.connect(); return true; })()"
        )
        await page.wait_for("window.seen.includes(40)")
        statuses = await page.evaluate("window.statuses.map((s) => s[0])")
        assert statuses[-1] == "connected"
        assert await page.evaluate("window.engine.socket.recovered") is True
        assert await page.evaluate("window.engine.socket.id") == sid

        hub.complete("job-1", result={"url": "/files/job-1.csv"})
        done = await page.wait_for("window.done")
        assert done["status"] == "completed"
        assert done["result"] == {"url": "/files/job-1.csv"}
        # every update published reached the page once, in order (no loss across the drop)
        seen = await page.evaluate("window.seen")
        assert seen == [0, 10, 20, 30, 40], json.dumps(seen)


def test_the_example_profile_is_valid() -> None:
    from engine.profile.build import load_profile
    from tests.conftest import ROOT

    profile = load_profile(ROOT / "examples" / "progress" / "profile.toml", {})
    assert profile.progress.enabled
    assert profile.publish.token is not None
