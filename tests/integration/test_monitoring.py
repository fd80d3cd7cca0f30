"""Monitoring through a real engine: /metrics, stats JSON, dashboard login, health, sinks."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from engine.serve import Running
from tests.conftest import release, serving

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "dashboard-token-0123456789"
SCRAPE_TOKEN = "scrape-token-0123456789"
N_EVENTS = 5


class Tracked(socketio.AsyncNamespace):
    """Handler whose disconnects the test can wait on; `fail` raises (a handler error)."""

    disconnected: anyio.Event | None = None

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        if Tracked.disconnected is not None:
            Tracked.disconnected.set()

    async def on_echo(self, sid: str, data: Any) -> Any:
        return data

    async def on_broadcast(self, sid: str, data: Any) -> str:
        await self.emit("news", data)
        return "sent"

    async def on_fail(self, sid: str, data: Any = None) -> None:
        raise RuntimeError("handler failure (expected by the test)")


def profile_text(extra: str = "") -> str:
    return f"""
[engine]
name = "mon"
environment = "development"

[server]
shutdown_grace_seconds = 2

[namespaces."/"]
handler = "tests.integration.test_monitoring:Tracked"
events = ["echo", "broadcast", "fail"]

[monitoring]
metrics_interval_seconds = 0.1
loop_lag_interval_seconds = 0.05

[monitoring.sinks.prom]
type = "prometheus"

[monitoring.sinks.private]
type = "prometheus"
path = "/private/metrics"
bearer_token = "{SCRAPE_TOKEN}"

[monitoring.dashboard]
enabled = true
token = "{ADMIN_TOKEN}"
{extra}
"""


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name` over every label set containing `labels`."""
    want = set(labels.items())
    return sum(v for (n, lb), v in samples.items() if n == name and want <= lb)


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)


async def settle(
    http: httpx.AsyncClient, url: str, expected: Callable[[Samples], dict[str, tuple[float, float]]]
) -> Samples:
    """Scrape until `expected(samples)` maps every name to its wanted value (5 s at most).

    Between scrapes the test waits until every task of the loop is blocked, so server-side
    bookkeeping of what the clients already observed has run; no sleeps.
    """
    seen: dict[str, tuple[float, float]] = {}
    try:
        with anyio.fail_after(5):
            while True:
                samples = await scrape(http, url)
                seen = expected(samples)
                if all(got == want for got, want in seen.values()):
                    return samples
                await anyio.wait_all_tasks_blocked()
    except TimeoutError:
        pytest.fail(f"metrics never settled: {seen}")


async def connected_client(running: Running) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(running.url, transports=["websocket"], wait_timeout=5)
    return client


async def test_scripted_session_counts_in_metrics(write_profile: Callable[..., Path]) -> None:
    Tracked.disconnected = anyio.Event()
    async with serving(write_profile(profile_text())) as running, httpx.AsyncClient() as http:
        a = await connected_client(running)
        b = await connected_client(running)
        for i in range(N_EVENTS):
            assert await a.call("echo", {"i": i}, timeout=5) == {"i": i}
        news = anyio.Event()
        a.on("news", lambda data: news.set())
        assert await a.call("broadcast", "hello", timeout=5) == "sent"
        refused = await a.call("dance", timeout=5)
        assert refused["error"]["code"] == "unknown_event"
        await b.disconnect()
        with anyio.fail_after(5):
            await Tracked.disconnected.wait()
            await news.wait()

        url = f"{running.url}/metrics"

        def observed(s: Samples) -> dict[str, tuple[float, float]]:
            return dict(
                connects=(value(s, "engine_connects_total", namespace="/"), 2),
                connections=(value(s, "engine_connections", namespace="/"), 1),
                disconnects=(total(s, "engine_disconnects_total", namespace="/"), 1),
                echo_in=(value(s, "engine_events_in_total", namespace="/", event="echo"), N_EVENTS),
                broadcast_in=(
                    value(s, "engine_events_in_total", namespace="/", event="broadcast"),
                    1,
                ),
                echo_handled=(
                    value(s, "engine_handler_duration_seconds_count", namespace="/", event="echo"),
                    N_EVENTS,
                ),
                news_out=(total(s, "engine_events_out_total", namespace="/"), 2),
                denied=(total(s, "engine_policy_decisions_total", outcome="deny"), 1),
                handler_errors=(total(s, "engine_handler_errors_total"), 0),
                refused_connects=(total(s, "engine_connects_refused_total"), 0),
            )

        samples = await settle(http, url, observed)
        assert (
            value(
                samples,
                "engine_config_info",
                profile="mon",
                hash=running.engine.profile.config_hash,
            )
            == 1
        )
        await a.disconnect()


async def test_metrics_bearer_token_and_methods(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(profile_text())) as running, httpx.AsyncClient() as http:
        private = f"{running.url}/private/metrics"
        refused = await http.get(private)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"]["code"] == "unauthorized"
        wrong = await http.get(private, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        allowed = await http.get(private, headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        assert allowed.status_code == 200
        assert "engine_connections" in allowed.text
        assert SCRAPE_TOKEN not in allowed.text
        assert ADMIN_TOKEN not in allowed.text
        assert (await http.get(f"{running.url}/metrics")).status_code == 200  # public sink
        head = await http.head(f"{running.url}/metrics")
        assert head.status_code == 200
        assert head.content == b""
        post = await http.post(f"{running.url}/metrics", content=b"x")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"


async def test_separate_metrics_listener(write_profile: Callable[..., Path]) -> None:
    extra = '[monitoring.sinks.side]\ntype = "prometheus"\npath = "/side"\nbind = "127.0.0.1:0"\n'
    async with serving(write_profile(profile_text(extra))) as running, httpx.AsyncClient() as http:
        side = running.metrics_urls["127.0.0.1:0"]
        assert side != running.url
        samples = await scrape(http, f"{side}/side")
        assert ("engine_active_bans", frozenset()) in samples
        assert (await http.get(f"{running.url}/side")).status_code == 404
        assert (await http.get(f"{side}/healthz")).status_code == 404


async def test_stats_json_shape_and_auth(write_profile: Callable[..., Path]) -> None:
    async with serving(write_profile(profile_text())) as running, httpx.AsyncClient() as http:
        stats_url = f"{running.url}/engine/api/stats"
        refused = await http.get(stats_url)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/json"
        assert refused.json() == {
            "error": {"code": "unauthorized", "message": "admin token required"}
        }
        wrong = await http.get(stats_url, headers={"Authorization": "Bearer nope-nope-nope-nope"})
        assert wrong.status_code == 401
        bad_cookie = await http.get(stats_url, headers={"Cookie": "engine_admin_token=nope"})
        assert bad_cookie.status_code == 401

        client = await connected_client(running)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = await http.get(stats_url, headers=auth)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        stats = response.json()
        assert {
            "profile",
            "config_hash",
            "generated_at",
            "uptime_seconds",
            "lifecycle",
            "health",
            "summary",
            "series",
            "namespaces",
            "security_events",
            "bans",
            "sinks",
        } <= set(stats)
        assert stats["profile"] == "mon"
        assert stats["lifecycle"]["state"] == "ready"
        assert stats["health"] == {"status": "healthy", "reasons": []}
        assert {
            "connections",
            "events_in_per_second",
            "handler_p99_seconds",
            "error_rate",
            "denial_rate",
            "active_bans",
            "loop_lag_seconds",
        } <= set(stats["summary"])
        assert {"t", "connections", "events_in", "events_out", "p50", "p99"} <= set(stats["series"])
        assert [s["id"] for s in stats["sinks"]] == ["prom", "private"]
        assert "/" in [ns["namespace"] for ns in stats["namespaces"]]
        assert stats["summary"]["connections"] == 1  # needs Monitor.connection_opened
        by_cookie = await http.get(
            stats_url, headers={"Cookie": f"engine_admin_token={ADMIN_TOKEN}"}
        )
        assert by_cookie.status_code == 200
        assert ADMIN_TOKEN not in by_cookie.text
        assert SCRAPE_TOKEN not in by_cookie.text
        await client.disconnect()


async def test_dashboard_login_flow(
    write_profile: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(write_profile(profile_text())) as running, httpx.AsyncClient() as http:
        base = running.url
        page = await http.get(f"{base}/engine/dashboard")
        assert page.status_code == 303
        assert page.headers["location"] == "/engine/dashboard/login"
        form = await http.get(f"{base}/engine/dashboard/login")
        assert form.status_code == 200
        assert form.headers["content-type"].startswith("text/html")
        assert 'name="token"' in form.text
        assert 'action="/engine/dashboard/login"' in form.text

        wrong = await http.post(f"{base}/engine/dashboard/login", data={"token": "guess"})
        assert wrong.status_code == 401
        assert "Wrong token" in wrong.text
        assert "set-cookie" not in wrong.headers
        cross = await http.post(
            f"{base}/engine/dashboard/login",
            data={"token": ADMIN_TOKEN},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        assert "set-cookie" not in cross.headers
        cross_site = await http.post(
            f"{base}/engine/dashboard/login",
            data={"token": ADMIN_TOKEN},
            headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        )
        assert cross_site.status_code == 403
        huge = await http.post(f"{base}/engine/dashboard/login", data={"token": "x" * 10_000})
        assert huge.status_code == 413

        login = await http.post(f"{base}/engine/dashboard/login", data={"token": ADMIN_TOKEN})
        assert login.status_code == 303
        assert login.headers["location"] == "/engine/dashboard"
        cookie = login.headers["set-cookie"]
        assert cookie.startswith("engine_admin_token=")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/" in cookie
        assert "Secure" not in cookie  # a development profile on plain HTTP

        dashboard = await http.get(f"{base}/engine/dashboard")  # httpx keeps the cookie
        assert dashboard.status_code == 200
        assert 'id="connections"' in dashboard.text
        assert "/engine/api/stats" in dashboard.text
        csp = dashboard.headers["content-security-policy"]
        assert "script-src 'sha256-" in csp
        assert "frame-ancestors 'none'" in csp
        assert ADMIN_TOKEN not in dashboard.text
        again = await http.get(f"{base}/engine/dashboard/login")
        assert again.status_code == 303  # already logged in

        stats = (await http.get(f"{base}/engine/api/stats")).json()
        types = [e["type"] for e in stats["security_events"]]
        assert types[:2] == ["admin_login", "admin_login_failed"]
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side  # the engine did log (start-up, drain, ...)
    for record in server_side:
        assert ADMIN_TOKEN not in record.getMessage()


async def test_dashboard_disabled_serves_nothing(write_profile: Callable[..., Path]) -> None:
    text = profile_text().replace("enabled = true", "enabled = false")
    async with serving(write_profile(text)) as running, httpx.AsyncClient() as http:
        for path in ("/engine/dashboard", "/engine/api/stats", "/engine/dashboard/login"):
            assert (await http.get(f"{running.url}{path}")).status_code == 404


async def test_health_reports_degraded_then_unhealthy(write_profile: Callable[..., Path]) -> None:
    extra = """
[monitoring.health]
max_connections = 1
min_handler_calls = 1
unhealthy_handler_error_rate = 0.5
"""
    async with serving(write_profile(profile_text(extra))) as running, httpx.AsyncClient() as http:
        health = (await http.get(f"{running.url}/healthz")).json()
        assert health["status"] == "healthy"
        assert health["reasons"] == []
        assert health["ready"] is True
        assert health["phase"] == "serving"

        client = await connected_client(running)  # needs Monitor.connection_opened
        health_r = await http.get(f"{running.url}/healthz")
        ready_r = await http.get(f"{running.url}/readyz")
        assert health_r.status_code == 200
        assert ready_r.status_code == 200
        assert health_r.json()["status"] == "degraded"
        assert health_r.json()["reasons"] == ["at connection capacity (1/1)"]
        assert ready_r.json()["status"] == "degraded"
        assert ready_r.json()["ready"] is True

        await client.emit("fail", "boom")  # needs Monitor.handler_finished(error=True)

        async def unhealthy() -> bool:
            return (await http.get(f"{running.url}/healthz")).status_code == 503

        await until(unhealthy)
        body = (await http.get(f"{running.url}/healthz")).json()
        assert body["status"] == "unhealthy"
        assert any(r.startswith("handler error rate 100.0%") for r in body["reasons"])
        ready_r = await http.get(f"{running.url}/readyz")
        assert ready_r.status_code == 503
        assert ready_r.json()["ready"] is False
        await client.disconnect()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Re-check after the loop's tasks are all blocked, for up to 5 s; no sleeps."""
    with anyio.fail_after(5):
        while not await check():
            await anyio.wait_all_tasks_blocked()


async def test_statsd_sink_delivers_udp(write_profile: Callable[..., Path]) -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0) as udp:
        port = udp.extra(anyio.abc.SocketAttribute.local_port)
        extra = f'[monitoring.sinks.udp]\ntype = "statsd"\nhost = "127.0.0.1"\nport = {port}\n'
        async with serving(write_profile(profile_text(extra))):
            with anyio.fail_after(5):
                packet, _ = await udp.receive()
    lines = packet.decode().splitlines()
    assert lines
    assert all(":" in line and "|" in line for line in lines)
    assert "engine.active_bans:0|g" in lines
    assert any(line.startswith("engine.event_loop_lag_seconds:") for line in lines)


async def test_jsonl_sink_receives_lifecycle(
    write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    extra = (
        f'[monitoring.sinks.audit]\ntype = "jsonl"\npath = "{path}"\n'
        'streams = ["security", "lifecycle"]\n'
    )
    async with serving(write_profile(profile_text(extra))) as running, httpx.AsyncClient() as http:
        await http.post(f"{running.url}/engine/dashboard/login", data={"token": "guess"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lifecycle = [line["kind"] for line in lines if line["stream"] == "lifecycle"]
    assert lifecycle == ["started", "ready", "draining", "stopped"]
    assert all(line["profile"] == "mon" for line in lines if line["stream"] == "lifecycle")
    security = [line for line in lines if line["stream"] == "security"]
    assert [s["type"] for s in security] == ["admin_login_failed"]
    assert "guess" not in path.read_text()


ADMIN_UI_PROFILE = """
[engine]
name = "adminui"
environment = "development"

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"

[monitoring.admin_ui]
enabled = true
namespace = "/socketio-admin"
username = "ops"
password = "${ADMIN_UI_PASSWORD}"
"""


async def test_official_admin_ui_namespace_with_its_own_credentials(
    write_profile: Callable[..., Path],
) -> None:
    env = {"ADMIN_UI_PASSWORD": "correct-horse-battery"}
    async with serving(write_profile(ADMIN_UI_PROFILE), env) as running:
        wrong = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await wrong.connect(
                running.url,
                namespaces=["/socketio-admin"],
                auth={"username": "ops", "password": "guess-guess-guess"},
                wait_timeout=5,
            )
        await release(wrong)
        admin = socketio.AsyncClient(reconnection=False)
        got_stats = anyio.Event()
        admin.on("server_stats", lambda *args: got_stats.set(), namespace="/socketio-admin")
        await admin.connect(
            running.url,
            namespaces=["/socketio-admin"],
            auth={"username": "ops", "password": "correct-horse-battery"},
            wait_timeout=5,
        )
        with anyio.fail_after(10):
            await got_stats.wait()
        user = socketio.AsyncClient(reconnection=False)
        await user.connect(running.url, wait_timeout=5)
        assert await user.call("echo", "still served", timeout=5) == "still served"
        await user.disconnect()
        await admin.disconnect()
