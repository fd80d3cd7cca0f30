"""Monitor metrics, stats, sinks queueing, options and dashboard helpers (no server needed)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.monitoring import (
    SINKS,
    HealthOptions,
    Monitor,
    MonitoringOptions,
    check_admin,
    dashboard_html,
    login_html,
)
from engine.monitoring.sinks import JsonlSink

DECLARED = {"/chat": frozenset({"message", "typing"}), "/": frozenset({"ping"})}
SCHEMA_PATH = Path(__file__).parents[2] / "engine" / "monitoring" / "schema_fragment.json"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(options: MonitoringOptions | None = None, clock: FakeClock | None = None) -> Monitor:
    return Monitor(
        options or MonitoringOptions(),
        profile_name="test",
        config_hash="abc123",
        declared_events=DECLARED,
        clock=clock or FakeClock(),
    )


def samples(monitor: Monitor) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = monitor.render_prometheus()
    assert content_type.startswith("text/plain")
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(monitor: Monitor, name: str, **labels: str) -> float:
    return samples(monitor).get((name, frozenset(labels.items())), 0.0)


def test_scripted_sequence_counts_exactly() -> None:
    m = make()
    m.connection_opened("/chat")
    m.connection_opened("/chat")
    m.connection_opened("/")
    m.connection_closed("/chat", "client disconnect")
    m.connect_refused("/chat", "unauthorized")
    for _ in range(3):
        m.event_in("/chat", "message", 10)
    m.event_in("/chat", "made_up", 5)
    m.event_in("/chat", "other_made_up", 5)
    m.event_out("/chat", "message", 20, recipients=4)
    m.handler_finished("/chat", "message", 0.004, error=False)
    m.handler_finished("/chat", "message", 0.2, error=True)
    m.ack_round_trip("/chat", 0.03)
    m.policy_decision("ip_limit", "allow")
    m.policy_decision("ip_limit", "deny")
    m.error("payload_too_large")
    m.set_active_bans([{"ip": "10.0.0.1", "reason": "abuse"}])
    m.set_rooms("/chat", {"lobby": 2, "vip": 1})
    m.loop_lag(0.012)

    s = samples(m)
    assert s[("engine_connections", frozenset({("namespace", "/chat")}))] == 1
    assert s[("engine_connections", frozenset({("namespace", "/")}))] == 1
    assert value(m, "engine_connects_total", namespace="/chat") == 2
    assert value(m, "engine_disconnects_total", namespace="/chat", reason="client disconnect") == 1
    assert value(m, "engine_connects_refused_total", namespace="/chat", code="unauthorized") == 1
    assert value(m, "engine_events_in_total", namespace="/chat", event="message") == 3
    assert value(m, "engine_events_in_total", namespace="/chat", event="other") == 2
    assert value(m, "engine_bytes_in_total", namespace="/chat") == 40
    assert value(m, "engine_events_out_total", namespace="/chat", event="message") == 4
    assert value(m, "engine_bytes_out_total", namespace="/chat") == 80
    assert (
        value(m, "engine_handler_duration_seconds_count", namespace="/chat", event="message") == 2
    )
    assert value(m, "engine_handler_errors_total", namespace="/chat", event="message") == 1
    assert value(m, "engine_ack_round_trip_seconds_count", namespace="/chat") == 1
    assert value(m, "engine_policy_decisions_total", policy="ip_limit", outcome="allow") == 1
    assert value(m, "engine_policy_decisions_total", policy="ip_limit", outcome="deny") == 1
    assert value(m, "engine_errors_total", code="payload_too_large") == 1
    assert value(m, "engine_active_bans") == 1
    assert value(m, "engine_rooms", namespace="/chat") == 2
    assert value(m, "engine_event_loop_lag_seconds") == pytest.approx(0.012)
    assert value(m, "engine_config_info", profile="test", hash="abc123") == 1
    event_labels = {
        dict(labels)["event"] for (name, labels) in s if name == "engine_events_in_total"
    }
    assert event_labels == {"message", "other"}


def test_label_cardinality_is_bounded() -> None:
    m = make()
    for i in range(500):
        m.event_in(f"/ns{i}", f"event{i}", 1)
        m.connection_closed("/chat", f"weird reason {i}")
        m.error(f"code_{i}")
    s = samples(m)
    namespaces = {dict(lb).get("namespace") for (n, lb) in s if n == "engine_events_in_total"}
    assert namespaces == {"other"}
    reasons = {dict(lb)["reason"] for (n, lb) in s if n == "engine_disconnects_total"}
    assert reasons == {"other"}
    codes = {dict(lb)["code"] for (n, lb) in s if n == "engine_errors_total"}
    assert len(codes) <= 65
    assert "other" in codes


def test_each_monitor_has_its_own_registry() -> None:
    a, b = make(), make()
    a.error("x")
    assert value(a, "engine_errors_total", code="x") == 1
    assert value(b, "engine_errors_total", code="x") == 0


def test_methods_never_raise_on_bad_input() -> None:
    m = make()
    m.set_rooms("/chat", {"a": "not a number"})  # type: ignore[dict-item]
    m.event_in("/chat", "message", "x")  # type: ignore[arg-type]
    m.security_event({"type": object(), "nested": {"password": "p", "deep": [1, {"x": 2}]}})
    report = m.health(1000.0)
    assert report.status == "healthy"
    stats = m.stats(1000.0)
    event = stats["security_events"][0]  # type: ignore[index]
    assert event["nested"]["password"] == "***"


def test_sink_queue_overflow_counts_drops(tmp_path: Path) -> None:
    options = MonitoringOptions.from_profile(
        {
            "sinks": {
                "audit": {
                    "type": "jsonl",
                    "path": str(tmp_path / "a.jsonl"),
                    "queue_size": 2,
                    "streams": ["security"],
                }
            }
        }
    )
    m = make(options)
    for i in range(5):
        m.security_event({"type": "auth_failed", "n": i})
    assert value(m, "engine_sink_dropped_total", sink="audit") == 3
    assert m.sinks[0].queued == 2


@pytest.mark.anyio
async def test_records_reach_jsonl_sink_and_flush_on_close(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    options = MonitoringOptions.from_profile(
        {
            "sinks": {
                "audit": {
                    "type": "jsonl",
                    "path": str(path),
                    "streams": ["security", "errors", "lifecycle", "metrics"],
                }
            }
        }
    )
    m = make(options)
    assert isinstance(m.sinks[0], JsonlSink)
    m.lifecycle("started", pid=1)
    m.security_event({"type": "auth_failed", "ip": "1.2.3.4", "token": "secret"})
    m.error("bad_packet")
    m.event_in("/chat", "message", 3)
    await m.aclose()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    streams = [r["stream"] for r in records]
    assert streams == ["lifecycle", "security", "errors", "metrics"]
    assert records[1]["token"] == "***"
    assert records[1]["ip"] == "1.2.3.4"
    counters = {c["name"]: c["value"] for c in records[3]["counters"]}
    assert counters["engine_events_in_total"] == 1
    m.error("after_close")
    assert value(m, "engine_sink_dropped_total", sink="audit") == 1


def test_stats_series_and_summary() -> None:
    clock = FakeClock(1000.0)
    m = make(MonitoringOptions(health=HealthOptions(min_handler_calls=1)), clock)
    m.connection_opened("/chat")
    m.set_rooms("/chat", {"lobby": 3})
    for t in range(1000, 1005):
        clock.t = t + 0.5
        for _ in range(10):
            m.event_in("/chat", "message", 1)
        m.event_out("/chat", "message", 1, recipients=2)
        m.handler_finished("/chat", "message", 0.01, error=False)
        m.policy_decision("ip_limit", "deny" if t == 1004 else "allow")
    m.security_event({"type": "banned", "ip": "9.9.9.9"})
    stats = m.stats(1005.1)
    summary: dict[str, Any] = stats["summary"]  # type: ignore[assignment]
    assert summary["connections"] == 1
    assert summary["events_in_per_second"] == pytest.approx(10.0)
    assert summary["events_out_per_second"] == pytest.approx(2.0)
    assert summary["handler_p50_seconds"] == pytest.approx(0.01)
    assert summary["handler_p99_seconds"] == pytest.approx(0.01)
    assert summary["denial_rate"] == pytest.approx(0.2)
    assert summary["error_rate"] == 0.0
    series: dict[str, list[Any]] = stats["series"]  # type: ignore[assignment]
    assert series["events_in"] == [10, 10, 10, 10, 10]
    assert series["denials"] == [0, 0, 0, 0, 1]
    assert len(series["t"]) == 5
    namespaces: list[dict[str, Any]] = stats["namespaces"]  # type: ignore[assignment]
    chat = next(n for n in namespaces if n["namespace"] == "/chat")
    assert chat["rooms"] == [{"room": "lobby", "members": 3}]
    assert stats["security_events"][0]["type"] == "banned"  # type: ignore[index]
    json.dumps(stats)  # JSON-ready
    # a gap of idle seconds is filled with zero samples, bounded by series_seconds
    later = m.stats(5000.0)
    assert len(later["series"]["t"]) == 600  # type: ignore[index]


def test_health_from_monitor_inputs() -> None:
    clock = FakeClock(1000.0)
    options = MonitoringOptions(
        health=HealthOptions(min_handler_calls=4, max_handler_error_rate=0.1, max_connections=2)
    )
    m = make(options, clock)
    assert m.health(1000.0).status == "healthy"
    for i in range(4):
        m.handler_finished("/chat", "message", 0.001, error=i == 0)
    report = m.health(1000.5)
    assert report.status == "degraded"
    assert any("error rate" in r for r in report.reasons)
    m.loop_lag(5.0)
    assert m.health(1000.5).status == "unhealthy"
    # the lag and the errors leave the windows
    assert m.health(1200.0).status == "healthy"
    m.connection_opened("/chat")
    m.connection_opened("/chat")
    assert m.health(1200.0).status == "degraded"


def test_options_from_profile_and_unknown_type() -> None:
    options = MonitoringOptions.from_profile(
        {
            "sinks": {"prom": {"type": "prometheus", "bearer_token": "s3cret"}},
            "dashboard": {"enabled": True, "token": "t" * 20},
            "health": {"max_loop_lag_seconds": 0.1},
        }
    )
    assert options.health.effective_unhealthy_loop_lag_seconds == pytest.approx(0.4)
    assert "s3cret" not in repr(options)
    assert "t" * 20 not in repr(options)
    m = make(options)
    sink = m.prometheus_sinks[0]
    assert sink.options.path == "/metrics"
    assert sink.authorized({"Authorization": "Bearer s3cret"})
    assert not sink.authorized({"authorization": "Bearer nope"})
    assert not sink.authorized({})
    with pytest.raises(LookupError, match="did you mean 'jsonl'"):
        MonitoringOptions.from_profile({"sinks": {"x": {"type": "jsonll", "path": "p"}}})


def _schema_defaults(schema: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    for variant in schema["properties"]["sinks"]["patternProperties"]["^[a-z][a-z0-9_]*$"]["oneOf"]:
        kind = variant["properties"]["type"]["const"]
        for key, prop in variant["properties"].items():
            if "default" in prop:
                yield kind, key, prop["default"]


def test_schema_fragment_is_strict_and_matches_options() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False, path
                for key, prop in node.get("properties", {}).items():
                    assert "description" in prop, f"{path}.{key}"
            for key, child in node.items():
                walk(child, f"{path}.{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}[{i}]")

    walk(schema, "monitoring")
    kinds = {k for k, _, _ in _schema_defaults(schema)}
    assert kinds == set(SINKS.names())
    for kind, key, default in _schema_defaults(schema):
        options_type = SINKS.get(kind).options_type
        built = options_type.from_profile({"path": "x"} if kind == "jsonl" else {})
        got = getattr(built, key)
        assert (list(got) if isinstance(got, tuple) else got) == default, (kind, key)
    secrets = re.findall(r'"(\w+)": \{[^{}]*"writeOnly": true', SCHEMA_PATH.read_text())
    assert set(secrets) == {"bearer_token", "token", "password"}
    validator = jsonschema.Draft7Validator(schema)
    for kind in SINKS.names():
        import tomllib

        example = tomllib.loads(SINKS.get(kind).EXAMPLE)["monitoring"]
        assert not list(validator.iter_errors(example)), kind
        MonitoringOptions.from_profile(example)


def test_dashboard_html_is_self_contained() -> None:
    page = dashboard_html("/x/stats</script>").decode()
    assert 'id="connections"' in page
    assert '"/x/stats\\u003c/script\\u003e"' in page
    assert "__STATS_PATH__" not in page
    assert 'credentials: "same-origin"' in page
    assert "<canvas" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "@import" not in page
    login = login_html('/login"><x', error="<b>").decode()
    assert 'action="/login&quot;&gt;&lt;x"' in login
    assert "&lt;b&gt;" in login
    assert 'name="token"' in login


def test_check_admin() -> None:
    token = "a-very-long-admin-token"
    assert check_admin({"Authorization": f"Bearer {token}"}, {}, token)
    assert check_admin({"authorization": f"bearer {token}"}, {}, token)
    assert check_admin({}, {"engine_admin_token": token}, token)
    assert check_admin({"Authorization": "Bearer wrong"}, {"engine_admin_token": token}, token)
    assert not check_admin({"Authorization": "Bearer wrong"}, {}, token)
    assert not check_admin({"Authorization": f"Basic {token}"}, {}, token)
    assert not check_admin({}, {"engine_admin_token": token + "x"}, token)
    assert not check_admin({"Authorization": "Bearer "}, {}, None)
    assert not check_admin({}, {}, token)


@pytest.mark.anyio
async def test_run_flushes_log_sink_on_cancel(capsys: pytest.CaptureFixture[str]) -> None:
    import anyio

    options = MonitoringOptions.from_profile(
        {
            "loop_lag_interval_seconds": 0.01,
            "sinks": {
                "console": {
                    "type": "log",
                    "output": "stdout",
                    "logger": "engine.test.monitoring",
                    "streams": ["security", "lifecycle"],
                }
            },
        }
    )
    m = make(options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(m.run)
        m.lifecycle("ready")
        m.security_event({"type": "auth_failed", "user": "bob", "password": "hunter2"})
        tg.cancel_scope.cancel()  # records still queued must be flushed by run()'s finally
    await m.aclose()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["stream"] for x in lines] == ["lifecycle", "security"]
    assert lines[0]["kind"] == "ready"
    assert lines[0]["logger"] == "engine.test.monitoring"
    assert lines[1]["password"] == "***"
    assert lines[1]["level"] == "INFO"


def test_event_labels_follow_the_declared_events_across_a_reload() -> None:
    m = make()
    m.event_in("/chat", "message", 1)
    m.event_in("/chat", "poll", 1)  # undeclared: other
    m.config_reloaded(
        "applied",
        config_hash="def456",
        declared_events={"/chat": frozenset({"poll"}), "/": frozenset({"ping"})},
    )
    m.event_in("/chat", "message", 1)  # no longer declared: other
    m.event_in("/chat", "poll", 1)
    m.handler_finished("/chat", "poll", 0.001, error=True)
    assert value(m, "engine_events_in_total", namespace="/chat", event="message") == 1
    assert value(m, "engine_events_in_total", namespace="/chat", event="other") == 2
    assert value(m, "engine_events_in_total", namespace="/chat", event="poll") == 1
    assert value(m, "engine_handler_errors_total", namespace="/chat", event="poll") == 1
    # a series appears with its first update, not before
    assert (
        "engine_events_out_total",
        frozenset({("namespace", "/chat"), ("event", "poll")}),
    ) not in samples(m)
