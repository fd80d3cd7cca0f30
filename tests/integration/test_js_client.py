"""The refusal contract as the official JavaScript client sees it (npm `socket.io-client` 4.8).

`tests/js/client.mjs` runs one client session per scenario in Node and prints what it observes;
the last test loads the client's browser bundle in headless Chromium. The JS client builds its
`connect_error` error from the CONNECT_ERROR packet's `message` and `data` only, so the refusal
envelope must be `data`: these tests read `err.message` and `err.data.code` as applications do.

Skipped when Node or `tests/js/node_modules` is missing (`scripts/test` installs both).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import socketio

from tests.conftest import ROOT, serving
from tests.integration.test_dashboard_browser import chromium, needs_chromium

pytestmark = pytest.mark.anyio

JS = ROOT / "tests" / "js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "socket.io-client").is_dir(),
    reason="node or tests/js/node_modules is missing (scripts/test installs them)",
)

PROFILE = """
[engine]
name = "js"
environment = "development"

[server]
trusted_proxies = ["127.0.0.1/32"]
allowed_origins = ["*"]

[auth]
type = "token"

[auth.token]
tokens = [
  { token = "alice-token-0001", user_id = "alice", roles = ["admin"] },
  { token = "bob-token-00001", user_id = "bob" },
  { token = "mallory-token-01", user_id = "mallory" },
]

[security.rate_limits]
connects_per_ip = { rate_per_second = 0.001, burst = 2 }
events_per_connection = { rate_per_second = 0.001, burst = 3 }

[security.abuse]
strikes = 4
window_seconds = 60
ladder_seconds = [30]
ban_by = ["user"]

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
require_auth = true
events = ["echo"]

[namespaces."/admin"]
handler = "tests.handlers:EchoNamespace"
require_roles = ["admin"]
max_connections_per_user = 1
"""

# every scenario comes from its own address (X-Forwarded-For from a trusted proxy), so the
# per-IP connect rate of one does not refuse another
_addresses = iter(f"10.7.0.{n}" for n in range(1, 250))


async def run_js(
    url: str, namespace: str = "/", *, token: str | None = None, **extra: Any
) -> list[dict[str, Any]]:
    """Run one client.mjs scenario; return the JSON lines it printed."""
    assert NODE is not None
    options: dict[str, Any] = {
        "extraHeaders": {"X-Forwarded-For": extra.pop("ip", None) or next(_addresses)}
    }
    if token is not None:
        options["auth"] = {"token": token}
    options.update(extra.pop("options", {}))
    scenario = {"url": url, "namespace": namespace, "options": options, **extra}
    with anyio.fail_after(20):
        done = await anyio.run_process(
            [NODE, str(JS / "client.mjs"), json.dumps(scenario)], cwd=JS, check=False
        )
    assert done.returncode == 0, (done.stderr.decode(), done.stdout.decode())
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def refusal(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The one connect_error a refused client saw, checked for the Socket.IO convention."""
    assert [line["type"] for line in lines] == ["connect_error"], lines
    error = lines[0]
    assert isinstance(error["data"], dict), error  # err.data
    assert error["message"] == error["data"]["message"]  # err.message: the human text
    return error


@needs_node
async def test_js_client_reads_err_data_code_for_every_connect_refusal(
    write_profile: Callable[..., Path],
) -> None:
    async with serving(write_profile(PROFILE)) as running:
        url = running.url
        for transports in (["polling", "websocket"], ["websocket"]):
            options = {"transports": transports}
            anonymous = refusal(await run_js(url, options=options))
            assert anonymous["message"] == "authentication required"
            assert anonymous["data"] == {
                "code": "unauthorized",
                "message": "authentication required",
            }

            bob = refusal(await run_js(url, "/admin", token="bob-token-00001", options=options))
            assert bob["data"]["code"] == "forbidden"

            # alice holds her one /admin connection; a second one is refused
            alice = socketio.AsyncClient(reconnection=False)
            await alice.connect(url, namespaces=["/admin"], auth={"token": "alice-token-0001"})
            try:
                second = refusal(
                    await run_js(url, "/admin", token="alice-token-0001", options=options)
                )
            finally:
                await alice.disconnect()
            assert second["data"]["code"] == "too_many_connections"

            # exactly as the reference server: recognised by its message, no data
            unknown = await run_js(url, "/random", options=options)
            assert [line["type"] for line in unknown] == ["connect_error"], unknown
            assert unknown[0]["message"] == "Invalid namespace"
            assert unknown[0]["data"] is None


@needs_node
async def test_js_client_sees_event_refusals_then_a_ban(
    write_profile: Callable[..., Path],
) -> None:
    async with serving(write_profile(PROFILE)) as running:
        url = running.url
        steps = [
            {"emit": "echo", "args": [1], "ack": True},
            {"emit": "dance", "args": [], "ack": True},  # not in the allow-list
            {"emit": "dance", "args": []},  # no ack asked: an `error` event
            {"emit": "echo", "args": [2], "ack": True},  # over the connection's burst
            {"emit": "echo", "args": [3], "ack": True},  # the third strike bans mallory
        ]
        lines = await run_js(url, token="mallory-token-01", steps=steps, await_disconnect=True)
        kinds = [line["type"] for line in lines]
        assert kinds[:2] == ["connect", "ack"], lines
        assert lines[1]["args"] == [1]
        unknown = lines[2]["args"][0]["error"]
        assert unknown["code"] == "unknown_event"
        assert lines[3]["type"] == "error"
        assert lines[3]["args"][0]["code"] == "unknown_event"
        assert lines[4]["args"][0]["error"]["code"] == "rate_limited"
        assert lines[4]["args"][0]["error"]["retry_after_seconds"] > 0
        assert lines[5]["args"][0]["error"]["code"] == "banned"
        assert kinds[6:] == ["disconnect"], lines

        banned = refusal(await run_js(url, token="mallory-token-01"))
        assert banned["data"]["code"] == "banned"
        assert 0 < banned["data"]["retry_after_seconds"] <= 30


@needs_node
async def test_js_client_sees_a_refused_handshake(write_profile: Callable[..., Path]) -> None:
    """A connect flood is refused on the handshake, before any session: no CONNECT_ERROR can
    carry it, so the client gets a transport error with the HTTP status, and (polling) the
    same `{"message", "data"}` JSON as the response body."""
    async with serving(write_profile(PROFILE)) as running:
        ip = "10.8.0.1"
        for _ in range(2):  # the burst
            assert refusal(await run_js(running.url, ip=ip))["data"]["code"] == "unauthorized"
        lines = await run_js(running.url, ip=ip, options={"transports": ["polling"]})
        assert [line["type"] for line in lines] == ["connect_error"], lines
        assert lines[0]["message"] == "xhr poll error"
        assert lines[0]["description"] == 429
        body = json.loads(lines[0]["body"])
        assert body["data"]["code"] == "rate_limited"
        assert body["data"]["retry_after_seconds"] > 0
        assert body["message"] == body["data"]["message"]


@needs_node
@needs_chromium
async def test_browser_client_reads_err_data_code(
    write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    bundle = (JS / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js").read_text()
    async with serving(write_profile(PROFILE)) as running, chromium(tmp_path) as page:
        # a page of the engine's own origin (any will do), the client bundle loaded into it
        await page.navigate(f"{running.url}/healthz")
        assert await page.evaluate(bundle + ";typeof io") == "function"
        script = """new Promise((resolve) => {
            const socket = io(%s, {reconnection: false, auth: %s});
            socket.on("connect", () => resolve({connected: true}));
            socket.on("connect_error", (err) => resolve({message: err.message, data: err.data}));
        })"""
        anonymous = await page.evaluate(script % (json.dumps(running.url), "{}"))
        assert anonymous == {
            "message": "authentication required",
            "data": {"code": "unauthorized", "message": "authentication required"},
        }
        forbidden = await page.evaluate(
            script % (json.dumps(running.url + "/admin"), '{"token": "bob-token-00001"}')
        )
        assert forbidden["data"]["code"] == "forbidden"
