"""The lifecycle contract as the official JS client (npm socket.io-client) sees it.

Maintenance: a refused CONNECT carries `err.data.code == "maintenance"` and the retry hint;
connected users get the `maintenance` notice, then an `error` with the same code and a
server disconnect; a handler failure reaches the client as `internal` with an `error_id`; a
namespace removed by a reload says `namespace_removed` before the disconnect.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import serving
from tests.integration.lifecycle import COMMON, reload, token
from tests.integration.test_js_client import needs_node, refusal, run_js

pytestmark = [pytest.mark.anyio, needs_node]

BASE = (
    """
[engine]
name = "js-lifecycle"
environment = "development"

[server]
trusted_proxies = ["127.0.0.1/32"]
allowed_origins = ["*"]

[auth]
type = "jwt"

[auth.jwt]
secret = "first-secret-of-the-lifecycle-tests-0123456789"

[auth.roles.admin]
permissions = []

[namespaces."/"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
require_auth = true
"""
    + COMMON
)
EXTRA = """
[namespaces."/extra"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
"""
MAINTENANCE = """
[maintenance]
enabled = true
message = "back soon"
retry_after_seconds = 42
admit_roles = ["admin"]
existing = "disconnect"
grace_seconds = 0.2
"""


async def members(running: Any, namespace: str, count: int) -> None:
    """Wait until `count` connections are admitted to `namespace` (server state, no event)."""
    guard = running.engine.sio.guard
    with anyio.fail_after(10):
        while sum(1 for ns, _ in guard.members if ns == namespace) < count:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_js_client_sees_maintenance_refusal_notice_and_disconnect(
    write_profile: Callable[..., Path],
) -> None:
    normal = write_profile(BASE, "normal.toml")
    maintenance = write_profile(BASE + MAINTENANCE, "maintenance.toml")
    async with serving(normal) as running:
        url = running.url
        lines: list[dict[str, Any]] = []

        async def connected_user() -> None:
            lines.extend(
                await run_js(
                    url,
                    token=token("uma"),
                    options={"transports": ["websocket"]},
                    await_disconnect=True,
                    print_events=True,
                    timeout_ms=15000,
                )
            )

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(connected_user)
            await members(running, "/", 1)
            status, report = await reload(running, maintenance)
            assert (status, report["outcome"]) == (200, "applied"), report

        notices = [line for line in lines if line["type"] == "event"]
        assert notices[0]["event"] == "maintenance"
        assert notices[0]["args"][0]["message"] == "back soon"
        assert notices[0]["args"][0]["retry_after_seconds"] == 42
        errors = [line for line in lines if line["type"] == "error"]
        assert errors[0]["args"][0]["code"] == "maintenance"
        assert lines[-1] == {"type": "disconnect", "reason": "io server disconnect"}

        # new connections: users refused with the code and the hint, admins admitted
        refused = refusal(await run_js(url, token=token("ulf")))
        assert refused["message"] == "back soon"
        assert refused["data"]["code"] == "maintenance"
        assert refused["data"]["retry_after_seconds"] == 42
        admitted = await run_js(url, token=token("ada", ["admin"]))
        assert [line["type"] for line in admitted] == ["connect", "done"]


async def test_js_client_sees_internal_with_error_id_and_namespace_removed(
    write_profile: Callable[..., Path],
) -> None:
    with_extra = write_profile(BASE + EXTRA, "extra.toml")
    without = write_profile(BASE, "without.toml")
    async with serving(with_extra) as running:
        url = running.url
        failed = await run_js(
            url, token=token("uma"), steps=[{"emit": "fail", "args": [1], "ack": True}]
        )
        error = failed[1]["args"][0]["error"]
        assert error["code"] == "internal"
        assert len(error["error_id"]) == 16
        assert "exception" not in error  # the text stays in the server log

        lines: list[dict[str, Any]] = []

        async def on_extra() -> None:
            lines.extend(
                await run_js(
                    url, "/extra", token=token("uma"), await_disconnect=True, print_events=True
                )
            )

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(on_extra)
            await members(running, "/extra", 1)
            status, report = await reload(running, without)
            assert (status, report["namespaces_removed"]) == (200, ["/extra"]), report
        errors = [line for line in lines if line["type"] == "error"]
        assert errors[0]["args"][0]["code"] == "namespace_removed"
        assert lines[-1] == {"type": "disconnect", "reason": "io server disconnect"}
