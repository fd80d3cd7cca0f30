"""The stats document: what `GET [monitoring.dashboard] stats_path` serves and the dashboard
draws (summary, per-second series, namespaces and rooms, security events, bans, sinks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.monitoring.health import assess
from engine.monitoring.series import percentile

if TYPE_CHECKING:
    from engine.monitoring.monitor import Monitor

RATE_WINDOW_SECONDS = 10


def stats_document(monitor: Monitor, now: float) -> dict[str, object]:
    monitor._refresh()
    cur = monitor._roll(now)
    opts = monitor.options
    report = assess(monitor._health_inputs(now), opts.health)
    recent = monitor._window(now, RATE_WINDOW_SECONDS - 1)
    span = max(len(recent), 1)
    window = monitor._window(now, opts.health.window_seconds)
    latencies = sorted([*cur.latencies, *(x for s in window for x in s.latencies)])
    calls = cur.handler_calls + sum(s.handler_calls for s in window)
    failed = cur.handler_errors + sum(s.handler_errors for s in window)
    decisions = cur.decisions + sum(s.decisions for s in window)
    denials = cur.denials + sum(s.denials for s in window)
    connections = sum(monitor._connections.values())
    series = list(monitor.series.samples)
    off = monitor._wall_offset
    namespaces: list[dict[str, object]] = []
    for ns in sorted(set(monitor._connections) | set(monitor._rooms) | set(monitor._declared)):
        count, top = monitor._rooms.get(ns, (0, ()))
        namespaces.append(
            {
                "namespace": ns,
                "connections": monitor._connections.get(ns, 0),
                "room_count": count,
                "rooms": [{"room": r, "members": n} for r, n in top],
            }
        )
    return {
        "profile": monitor.profile_name,
        "config_hash": monitor.config_hash,
        "generated_at": now + off,
        "uptime_seconds": max(now - monitor._started, 0.0),
        "lifecycle": dict(monitor._lifecycle),
        "health": report.to_json(),
        "node": dict(monitor.node),
        "cluster": monitor._cluster_state(),
        "summary": {
            "connections": connections,
            "events_in_per_second": sum(s.events_in for s in recent) / span,
            "events_out_per_second": sum(s.events_out for s in recent) / span,
            "handler_p50_seconds": percentile(latencies, 0.5),
            "handler_p99_seconds": percentile(latencies, 0.99),
            "handler_calls": calls,
            "error_rate": failed / calls if calls else 0.0,
            "denial_rate": denials / decisions if decisions else 0.0,
            "active_bans": len(monitor._bans),
            "loop_lag_seconds": monitor._last_lag,
        },
        "series": {
            "interval_seconds": 1,
            "t": [s.sec + off for s in series],
            "connections": [s.connections for s in series],
            "events_in": [s.events_in for s in series],
            "events_out": [s.events_out for s in series],
            "errors": [s.errors for s in series],
            "denials": [s.denials for s in series],
            "p50": [s.p50 for s in series],
            "p99": [s.p99 for s in series],
        },
        "namespaces": namespaces,
        "security_events": list(reversed(monitor._security)),
        "bans": [dict(b) for b in monitor._bans],
        "sinks": [
            {"id": s.id, "type": s.type_name, "queued": s.queued, "dropped": s.dropped}
            for s in monitor.sinks
        ],
    }
