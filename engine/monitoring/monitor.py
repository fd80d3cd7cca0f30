"""The :class:`Monitor`: the one object the server adapter reports to.

Every public method is synchronous, cheap and never raises (failures are logged once per method
and swallowed), except :meth:`Monitor.run` and :meth:`Monitor.aclose`, which are coroutines.
All ``now`` arguments are on the monitor's clock, ``time.monotonic()`` unless a ``clock`` is given.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, ParamSpec, TypeVar

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from engine.monitoring.health import HealthInputs, HealthReport, assess
from engine.monitoring.options import MonitoringOptions
from engine.monitoring.records import EventRecord, Labels, MetricsSnapshot, TimingSeries, redact
from engine.monitoring.sinks import SINKS, PrometheusSink, Sink

__all__ = ["DISCONNECT_REASONS", "Monitor"]

_log = logging.getLogger("engine.monitoring")

P = ParamSpec("P")
R = TypeVar("R")

OTHER: Final = "other"
DISCONNECT_REASONS: Final = frozenset(
    {
        "client disconnect",
        "server disconnect",
        "ping timeout",
        "transport close",
        "transport error",
        "refused",
    }
)
LABEL_CAP: Final = 64
RESERVOIR: Final = 256
RATE_WINDOW_SECONDS: Final = 10
LAG_WINDOW_SECONDS: Final = 5
MAX_ROOMS_LISTED: Final = 200
MAX_BANS_LISTED: Final = 1000
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def _never_raises(default: Any = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Log (once per method) and swallow exceptions; return ``default`` instead."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        warned = False

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            nonlocal warned
            try:
                return func(*args, **kwargs)
            except Exception:
                if not warned:
                    warned = True
                    _log.exception(
                        "monitoring: %s failed (further failures silenced)", func.__name__
                    )
                return default  # type: ignore[no-any-return]

        return wrapper

    return decorate


class _Capped:
    """Maps label values to themselves until ``cap`` distinct values were seen, then ``other``."""

    def __init__(self, cap: int = LABEL_CAP) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.cap:
            return OTHER
        self.seen.add(value)
        return value


class _Second:
    """Mutable accumulator of the current second."""

    __slots__ = (
        "decisions",
        "denials",
        "errors",
        "events_in",
        "events_out",
        "handler_calls",
        "handler_errors",
        "latencies",
        "latency_seen",
        "loop_lag",
        "sec",
    )

    def __init__(self, sec: int) -> None:
        self.sec = sec
        self.events_in = 0
        self.events_out = 0
        self.errors = 0
        self.handler_calls = 0
        self.handler_errors = 0
        self.denials = 0
        self.decisions = 0
        self.latencies: list[float] = []
        self.latency_seen = 0
        self.loop_lag = 0.0

    def add_latency(self, seconds: float) -> None:
        self.latency_seen += 1
        if len(self.latencies) < RESERVOIR:
            self.latencies.append(seconds)
        else:
            j = random.randrange(self.latency_seen)
            if j < RESERVOIR:
                self.latencies[j] = seconds


@dataclass(frozen=True, slots=True)
class _Sample:
    """A closed second."""

    sec: int
    connections: int
    events_in: int
    events_out: int
    errors: int
    handler_calls: int
    handler_errors: int
    denials: int
    decisions: int
    p50: float | None
    p99: float | None
    loop_lag: float
    latencies: tuple[float, ...] = field(repr=False)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (``None`` when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Reservoir:
    __slots__ = ("count", "samples", "total")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if len(self.samples) < RESERVOIR:
            self.samples.append(value)
        else:
            j = random.randrange(self.count)
            if j < RESERVOIR:
                self.samples[j] = value


class Monitor:
    """Metrics, sinks, health and stats for one running engine.

    :param options: the ``[monitoring]`` options.
    :param profile_name: profile name (``engine_config_info``).
    :param config_hash: hash of the resolved profile (``engine_config_info``).
    :param declared_events: namespace -> declared event names; bounds label cardinality.
    :param clock: monotonic clock used for series and windows (tests inject one).
    """

    def __init__(
        self,
        options: MonitoringOptions,
        *,
        profile_name: str,
        config_hash: str,
        declared_events: Mapping[str, frozenset[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.profile_name = profile_name
        self.config_hash = config_hash
        self._clock = clock
        self._declared = {ns: frozenset(evs) for ns, evs in declared_events.items()}
        self._namespaces = frozenset(self._declared) | {"/"}
        self._codes = _Capped()
        self._policies = _Capped()
        self._types = _Capped()
        self._refused_codes = _Capped()
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._build_metrics()

        now = clock()
        self._wall_offset = time.time() - now
        self._started = now
        self._cur = _Second(int(now))
        self._series: deque[_Sample] = deque(maxlen=max(options.series_seconds, 1))
        self._connections: dict[str, int] = {}
        self._rooms: dict[str, tuple[int, tuple[tuple[str, int], ...]]] = {}
        self._bans: tuple[dict[str, object], ...] = ()
        self._security: deque[dict[str, object]] = deque(
            maxlen=max(options.recent_security_events, 1)
        )
        self._lifecycle: dict[str, object] = {"state": "created"}
        self._last_lag = 0.0

        self.sinks: tuple[Sink[Any], ...] = tuple(
            SINKS.get(cfg.type)(cfg.id, cfg.options, self._on_drop) for cfg in options.sinks
        )
        for sink in self.sinks:
            self._dropped.labels(sink.id)  # export 0 from the start
        self._by_stream: dict[str, tuple[Sink[Any], ...]] = {
            stream: tuple(s for s in self.sinks if s.accepts(stream))
            for stream in ("security", "errors", "lifecycle", "metrics")
        }
        self._agg_counters: dict[tuple[str, Labels], float] = {}
        self._agg_timings: dict[tuple[str, Labels], _Reservoir] = {}
        self._aggregate = bool(self._by_stream["metrics"])
        self._last_metrics_flush = now
        self._closed = False
        self._refreshers: list[Callable[[], None]] = []
        self._health_checks: list[Callable[[], str | None]] = []

    def add_refresher(self, refresh: Callable[[], None]) -> None:
        """Register a snapshot (rooms, say) to take just before metrics or stats are read.

        State that is cheap to read on demand but costly to track on every change is
        pulled this way instead of pushed.
        """
        self._refreshers.append(refresh)

    def add_health_check(self, check: Callable[[], str | None]) -> None:
        """Register a component's degraded reason (None while it is fine) for health reports."""
        self._health_checks.append(check)

    def _refresh(self) -> None:
        for refresh in self._refreshers:
            try:
                refresh()
            except Exception:
                _log.exception("monitoring refresher failed")

    # -- setup -------------------------------------------------------------------------------

    def _build_metrics(self) -> None:
        reg = self.registry
        self._m_connections = Gauge(
            "engine_connections", "Open connections.", ["namespace"], registry=reg
        )
        self._m_connects = Counter(
            "engine_connects_total", "Accepted connections.", ["namespace"], registry=reg
        )
        self._m_disconnects = Counter(
            "engine_disconnects_total", "Disconnections.", ["namespace", "reason"], registry=reg
        )
        self._m_refused = Counter(
            "engine_connects_refused_total",
            "Refused connections.",
            ["namespace", "code"],
            registry=reg,
        )
        self._m_events_in = Counter(
            "engine_events_in_total", "Events received.", ["namespace", "event"], registry=reg
        )
        self._m_events_out = Counter(
            "engine_events_out_total",
            "Events delivered (one per recipient).",
            ["namespace", "event"],
            registry=reg,
        )
        self._m_bytes_in = Counter(
            "engine_bytes_in_total", "Event payload bytes received.", ["namespace"], registry=reg
        )
        self._m_bytes_out = Counter(
            "engine_bytes_out_total",
            "Event payload bytes delivered (size x recipients).",
            ["namespace"],
            registry=reg,
        )
        self._m_handler = Histogram(
            "engine_handler_duration_seconds",
            "Event handler duration.",
            ["namespace", "event"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._m_handler_errors = Counter(
            "engine_handler_errors_total",
            "Event handlers that raised.",
            ["namespace", "event"],
            registry=reg,
        )
        self._m_ack = Histogram(
            "engine_ack_round_trip_seconds",
            "Server-to-client ack round trip.",
            ["namespace"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._m_policy = Counter(
            "engine_policy_decisions_total",
            "Policy decisions.",
            ["policy", "outcome"],
            registry=reg,
        )
        self._m_errors = Counter("engine_errors_total", "Errors by code.", ["code"], registry=reg)
        self._m_security = Counter(
            "engine_security_events_total", "Security events by type.", ["type"], registry=reg
        )
        self._m_bans = Gauge("engine_active_bans", "Active bans.", registry=reg)
        self._m_rooms = Gauge("engine_rooms", "Rooms.", ["namespace"], registry=reg)
        self._m_lag = Gauge("engine_event_loop_lag_seconds", "Latest event-loop lag.", registry=reg)
        self._dropped = Counter(
            "engine_sink_dropped_total", "Records a sink dropped.", ["sink"], registry=reg
        )
        self._m_config = Info("engine_config", "Loaded profile.", registry=reg)
        self._m_config.info({"profile": self.profile_name, "hash": self.config_hash})
        self._m_reloads = Counter(
            "engine_config_reloads_total", "Profile reloads by result.", ["result"], registry=reg
        )

    # -- label bounding ----------------------------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """A labelled child, cached: prometheus_client's ``labels()`` locks and allocates on
        every call, which shows up at thousands of events a second. Label values are capped,
        so the cache is bounded."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _ns(self, namespace: str) -> str:
        return namespace if namespace in self._namespaces else OTHER

    def _event(self, namespace: str, event: str) -> str:
        declared = self._declared.get(namespace)
        return event if declared is not None and event in declared else OTHER

    # -- per-second series -------------------------------------------------------------------

    def _roll(self, now: float) -> _Second:
        sec = int(now)
        cur = self._cur
        if sec <= cur.sec:
            return cur
        conns = sum(self._connections.values())
        lat = sorted(cur.latencies)
        self._series.append(
            _Sample(
                sec=cur.sec,
                connections=conns,
                events_in=cur.events_in,
                events_out=cur.events_out,
                errors=cur.errors,
                handler_calls=cur.handler_calls,
                handler_errors=cur.handler_errors,
                denials=cur.denials,
                decisions=cur.decisions,
                p50=percentile(lat, 0.5),
                p99=percentile(lat, 0.99),
                loop_lag=cur.loop_lag,
                latencies=tuple(lat),
            )
        )
        maxlen = self._series.maxlen or 1
        for gap in range(max(cur.sec + 1, sec - maxlen), sec):
            self._series.append(
                _Sample(gap, conns, 0, 0, 0, 0, 0, 0, 0, None, None, 0.0, latencies=())
            )
        self._cur = _Second(sec)
        return self._cur

    def _now(self) -> _Second:
        return self._roll(self._clock())

    # -- metric-stream aggregation -----------------------------------------------------------

    def _count(self, name: str, labels: Labels, value: float = 1.0) -> None:
        key = (name, labels)
        self._agg_counters[key] = self._agg_counters.get(key, 0.0) + value

    def _time(self, name: str, labels: Labels, seconds: float) -> None:
        key = (name, labels)
        res = self._agg_timings.get(key)
        if res is None:
            res = self._agg_timings[key] = _Reservoir()
        res.add(seconds * 1000.0)

    def _emit(self, stream: str, fields: Mapping[str, object]) -> EventRecord | None:
        sinks = self._by_stream.get(stream, ())
        if not sinks and stream != "security":
            return None
        record = EventRecord(stream, time.time(), redact(fields))  # type: ignore[arg-type]
        for sink in sinks:
            sink.offer(record)
        return record

    def _on_drop(self, sink_id: str, n: int) -> None:
        self._dropped.labels(sink_id).inc(n)

    # -- the adapter interface ---------------------------------------------------------------

    @_never_raises()
    def connection_opened(self, namespace: str) -> None:
        """A client connected to ``namespace``."""
        self._now()
        ns = self._ns(namespace)
        self._connections[ns] = self._connections.get(ns, 0) + 1
        self._child(self._m_connections, ns).inc()
        self._child(self._m_connects, ns).inc()
        if self._aggregate:
            self._count("engine_connects_total", (("namespace", ns),))

    @_never_raises()
    def connection_closed(self, namespace: str, reason: str) -> None:
        """A connection to ``namespace`` ended for ``reason``."""
        self._now()
        ns = self._ns(namespace)
        why = reason if reason in DISCONNECT_REASONS else OTHER
        open_now = self._connections.get(ns, 0)
        if open_now > 0:
            self._connections[ns] = open_now - 1
            self._child(self._m_connections, ns).dec()
        self._child(self._m_disconnects, ns, why).inc()
        if self._aggregate:
            self._count("engine_disconnects_total", (("namespace", ns), ("reason", why)))

    @_never_raises()
    def connect_refused(self, namespace: str, code: str) -> None:
        """A connection to ``namespace`` was refused with ``code``."""
        self._now()
        ns = self._ns(namespace)
        label = self._refused_codes(code)
        self._child(self._m_refused, ns, label).inc()
        if self._aggregate:
            self._count("engine_connects_refused_total", (("namespace", ns), ("code", label)))

    @_never_raises()
    def event_in(self, namespace: str, event: str, nbytes: int) -> None:
        """An event arrived (undeclared events count as ``other``)."""
        cur = self._now()
        cur.events_in += 1
        ns = self._ns(namespace)
        ev = self._event(namespace, event)
        self._child(self._m_events_in, ns, ev).inc()
        self._child(self._m_bytes_in, ns).inc(max(nbytes, 0))
        if self._aggregate:
            self._count("engine_events_in_total", (("namespace", ns), ("event", ev)))
            self._count("engine_bytes_in_total", (("namespace", ns),), max(nbytes, 0))

    @_never_raises()
    def event_out(self, namespace: str, event: str, nbytes: int, recipients: int) -> None:
        """An event was emitted to ``recipients`` clients."""
        n = max(recipients, 0)
        cur = self._now()
        cur.events_out += n
        ns = self._ns(namespace)
        ev = self._event(namespace, event)
        self._child(self._m_events_out, ns, ev).inc(n)
        self._child(self._m_bytes_out, ns).inc(max(nbytes, 0) * n)
        if self._aggregate:
            self._count("engine_events_out_total", (("namespace", ns), ("event", ev)), n)
            self._count("engine_bytes_out_total", (("namespace", ns),), max(nbytes, 0) * n)

    @_never_raises()
    def handler_finished(self, namespace: str, event: str, seconds: float, error: bool) -> None:
        """An event handler finished after ``seconds``; ``error`` if it raised."""
        cur = self._now()
        seconds = max(seconds, 0.0)
        cur.handler_calls += 1
        cur.add_latency(seconds)
        ns = self._ns(namespace)
        ev = self._event(namespace, event)
        self._child(self._m_handler, ns, ev).observe(seconds)
        labels = (("namespace", ns), ("event", ev))
        if self._aggregate:
            self._time("engine_handler_duration_seconds", labels, seconds)
        if error:
            cur.handler_errors += 1
            cur.errors += 1
            self._child(self._m_handler_errors, ns, ev).inc()
            if self._aggregate:
                self._count("engine_handler_errors_total", labels)
            self._emit("errors", {"code": "handler_error", "namespace": ns, "event": ev})

    @_never_raises()
    def ack_round_trip(self, namespace: str, seconds: float) -> None:
        """A client acknowledged a server emit after ``seconds``."""
        self._now()
        ns = self._ns(namespace)
        self._child(self._m_ack, ns).observe(max(seconds, 0.0))
        if self._aggregate:
            self._time("engine_ack_round_trip_seconds", (("namespace", ns),), max(seconds, 0.0))

    @_never_raises()
    def policy_decision(self, policy: str, outcome: str) -> None:
        """A policy decided ``allow`` or ``deny``."""
        cur = self._now()
        deny = outcome == "deny"
        result = "deny" if deny else "allow" if outcome == "allow" else OTHER
        cur.decisions += 1
        if deny:
            cur.denials += 1
        label = self._policies(policy)
        self._child(self._m_policy, label, result).inc()
        if self._aggregate:
            self._count("engine_policy_decisions_total", (("policy", label), ("outcome", result)))

    @_never_raises()
    def error(self, code: str) -> None:
        """An error with ``code`` happened (handler failures go to :meth:`handler_finished`)."""
        cur = self._now()
        cur.errors += 1
        label = self._codes(code)
        self._child(self._m_errors, label).inc()
        if self._aggregate:
            self._count("engine_errors_total", (("code", label),))
        self._emit("errors", {"code": code})

    @_never_raises()
    def security_event(self, event: Mapping[str, object]) -> None:
        """A security-relevant event (``type``, ``namespace``, ``sid``, ``user``, ``ip``, ...)."""
        self._now()
        record = self._emit("security", event)
        if record is not None:
            self._security.append(record.to_json())
        label = self._types(str(event.get("type", "unknown")))
        self._child(self._m_security, label).inc()
        if self._aggregate:
            self._count("engine_security_events_total", (("type", label),))

    @_never_raises()
    def security_event_suppressed(self, kind: str) -> None:
        """A security event the flood budget kept out of the streams: counted only."""
        label = self._types(kind)
        self._child(self._m_security, label).inc()
        if self._aggregate:
            self._count("engine_security_events_total", (("type", label),))

    @_never_raises()
    def config_reloaded(
        self,
        result: str,
        config_hash: str | None = None,
        declared_events: Mapping[str, frozenset[str]] | None = None,
        profile_name: str | None = None,
        **fields: object,
    ) -> None:
        """A reload ended with `result` (applied | unchanged | refused | invalid)."""
        self._child(self._m_reloads, result).inc()
        if result == "applied" and config_hash is not None:
            self.config_hash = config_hash
            self.profile_name = profile_name or self.profile_name
            self._m_config.info({"profile": self.profile_name, "hash": config_hash})
            if declared_events is not None:
                self._declared = {ns: frozenset(evs) for ns, evs in declared_events.items()}
                self._namespaces = frozenset(self._declared) | {"/"}
        self._emit(
            "lifecycle",
            {
                "kind": "reload",
                "result": result,
                "profile": self.profile_name,
                "config_hash": self.config_hash,
                **fields,
            },
        )

    @_never_raises()
    def lifecycle(self, kind: str, **fields: object) -> None:
        """Lifecycle stage reached: ``started``, ``ready``, ``draining``, ``stopped``."""
        now = self._clock()
        self._roll(now)
        self._lifecycle = {"state": kind, "since": now + self._wall_offset}
        if kind == "started":
            self._started = now
        self._emit(
            "lifecycle",
            {"kind": kind, "profile": self.profile_name, "config_hash": self.config_hash, **fields},
        )

    @_never_raises()
    def set_rooms(self, namespace: str, rooms: Mapping[str, int]) -> None:
        """Snapshot of ``namespace``'s rooms: room name -> member count."""
        ns = self._ns(namespace)
        top = sorted(rooms.items(), key=lambda item: (-item[1], item[0]))[:MAX_ROOMS_LISTED]
        self._rooms[namespace] = (len(rooms), tuple((str(r), int(n)) for r, n in top))
        total = sum(count for key, (count, _) in self._rooms.items() if self._ns(key) == ns)
        self._child(self._m_rooms, ns).set(total)

    @_never_raises()
    def set_active_bans(self, bans: Sequence[Mapping[str, object]]) -> None:
        """Snapshot of active bans."""
        self._bans = tuple(redact(ban) for ban in bans[:MAX_BANS_LISTED])
        self._m_bans.set(len(bans))

    @_never_raises()
    def loop_lag(self, seconds: float) -> None:
        """Measured event-loop lag."""
        cur = self._now()
        seconds = max(seconds, 0.0)
        self._last_lag = seconds
        cur.loop_lag = max(cur.loop_lag, seconds)
        self._m_lag.set(seconds)

    # -- reading -----------------------------------------------------------------------------

    def now(self) -> float:
        """The monitor's clock (pass it to :meth:`health` and :meth:`stats`)."""
        return self._clock()

    def _window(self, now: float, seconds: float) -> list[_Sample]:
        cutoff = int(now) - seconds
        out: list[_Sample] = []
        for sample in reversed(self._series):
            if sample.sec < cutoff:
                break
            out.append(sample)
        return out

    def _health_inputs(self, now: float) -> HealthInputs:
        cur = self._roll(now)
        window = self._window(now, self.options.health.window_seconds)
        lag_window = self._window(now, LAG_WINDOW_SECONDS)
        return HealthInputs(
            loop_lag_seconds=max([cur.loop_lag, *(s.loop_lag for s in lag_window)]),
            handler_calls=cur.handler_calls + sum(s.handler_calls for s in window),
            handler_errors=cur.handler_errors + sum(s.handler_errors for s in window),
            connections=sum(self._connections.values()),
            degraded=tuple(reason for check in self._health_checks if (reason := check())),
        )

    @_never_raises(default=HealthReport("unhealthy", ("monitoring failed to assess health",)))
    def health(self, now: float) -> HealthReport:
        """Assess health at ``now`` against ``[monitoring.health]``."""
        return assess(self._health_inputs(now), self.options.health)

    @_never_raises(default={"error": "monitoring failed to build stats"})
    def stats(self, now: float) -> dict[str, object]:
        """The JSON document served at the dashboard's stats path."""
        self._refresh()
        cur = self._roll(now)
        opts = self.options
        report = assess(self._health_inputs(now), opts.health)
        recent = self._window(now, RATE_WINDOW_SECONDS - 1)
        span = max(len(recent), 1)
        window = self._window(now, opts.health.window_seconds)
        latencies = sorted([*cur.latencies, *(x for s in window for x in s.latencies)])
        calls = cur.handler_calls + sum(s.handler_calls for s in window)
        failed = cur.handler_errors + sum(s.handler_errors for s in window)
        decisions = cur.decisions + sum(s.decisions for s in window)
        denials = cur.denials + sum(s.denials for s in window)
        connections = sum(self._connections.values())
        series = list(self._series)
        off = self._wall_offset
        namespaces: list[dict[str, object]] = []
        for ns in sorted(set(self._connections) | set(self._rooms) | set(self._declared)):
            count, top = self._rooms.get(ns, (0, ()))
            namespaces.append(
                {
                    "namespace": ns,
                    "connections": self._connections.get(ns, 0),
                    "room_count": count,
                    "rooms": [{"room": r, "members": n} for r, n in top],
                }
            )
        return {
            "profile": self.profile_name,
            "config_hash": self.config_hash,
            "generated_at": now + off,
            "uptime_seconds": max(now - self._started, 0.0),
            "lifecycle": dict(self._lifecycle),
            "health": report.to_json(),
            "summary": {
                "connections": connections,
                "events_in_per_second": sum(s.events_in for s in recent) / span,
                "events_out_per_second": sum(s.events_out for s in recent) / span,
                "handler_p50_seconds": percentile(latencies, 0.5),
                "handler_p99_seconds": percentile(latencies, 0.99),
                "handler_calls": calls,
                "error_rate": failed / calls if calls else 0.0,
                "denial_rate": denials / decisions if decisions else 0.0,
                "active_bans": len(self._bans),
                "loop_lag_seconds": self._last_lag,
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
            "security_events": list(reversed(self._security)),
            "bans": [dict(b) for b in self._bans],
            "sinks": [
                {"id": s.id, "type": s.type_name, "queued": s.queued, "dropped": s.dropped}
                for s in self.sinks
            ],
        }

    def render_prometheus(self) -> tuple[bytes, str]:
        """Prometheus text exposition of this monitor's registry: ``(body, content_type)``."""
        self._refresh()
        try:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        except Exception:
            _log.exception("monitoring: rendering metrics failed")
            return b"", CONTENT_TYPE_LATEST

    @property
    def prometheus_sinks(self) -> tuple[PrometheusSink, ...]:
        """Configured ``prometheus`` sinks (the app serves each ``options.path``)."""
        return tuple(s for s in self.sinks if isinstance(s, PrometheusSink))

    # -- background --------------------------------------------------------------------------

    @_never_raises()
    def flush_metrics(self, now: float | None = None) -> MetricsSnapshot | None:
        """Send a snapshot of metric deltas and gauges to ``metrics``-stream sinks."""
        sinks = self._by_stream["metrics"]
        if not sinks:
            return None
        now = self._clock() if now is None else now
        counters = tuple((n, lb, v) for (n, lb), v in self._agg_counters.items())
        timings = tuple(
            TimingSeries(n, lb, tuple(r.samples), r.count, r.total)
            for (n, lb), r in self._agg_timings.items()
        )
        self._agg_counters = {}
        self._agg_timings = {}
        gauges: list[tuple[str, Labels, float]] = [
            ("engine_connections", (("namespace", ns),), float(c))
            for ns, c in sorted(self._connections.items())
        ]
        rooms: dict[str, float] = {}
        for key, (count, _) in self._rooms.items():
            rooms[self._ns(key)] = rooms.get(self._ns(key), 0.0) + count
        gauges.extend(("engine_rooms", (("namespace", ns),), c) for ns, c in sorted(rooms.items()))
        gauges.append(("engine_active_bans", (), float(len(self._bans))))
        gauges.append(("engine_event_loop_lag_seconds", (), self._last_lag))
        snapshot = MetricsSnapshot(
            ts=now + self._wall_offset,
            interval_seconds=max(now - self._last_metrics_flush, 0.0),
            counters=counters,
            gauges=tuple(gauges),
            timings=timings,
        )
        self._last_metrics_flush = now
        for sink in sinks:
            sink.offer(snapshot)
        return snapshot

    async def _probe(self) -> None:
        interval = max(self.options.loop_lag_interval_seconds, 0.01)
        every = max(self.options.metrics_interval_seconds, interval)
        next_flush = self._clock() + every
        while True:
            started = time.perf_counter()
            await anyio.sleep(interval)
            self.loop_lag(max(time.perf_counter() - started - interval, 0.0))
            now = self._clock()
            if self._aggregate and now >= next_flush:
                self.flush_metrics(now)
                next_flush = now + every

    async def run(self) -> None:
        """Run sink writers and the loop-lag probe until cancelled; then flush the sinks."""
        try:
            async with anyio.create_task_group() as tg:
                for sink in self.sinks:
                    if sink.streams:
                        tg.start_soon(sink.run)
                tg.start_soon(self._probe)
        finally:
            with anyio.CancelScope(shield=True):
                self.flush_metrics()
                for sink in self.sinks:
                    await sink.flush()

    async def aclose(self) -> None:
        """Flush and close every sink (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            self.flush_metrics()
            for sink in self.sinks:
                await sink.aclose()
