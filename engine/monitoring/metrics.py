"""The Prometheus metrics of one engine: declared once, children cached, labels bounded.

Metric names are the concepts' names (`engine_<what>_<unit>`); one registry per engine, so
two engines in one process (tests) never share a series.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

OTHER: Final = "other"
LABEL_CAP: Final = 64
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Capped:
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


class Metrics:
    """Every metric the monitor exports, in `registry`."""

    def __init__(self, registry: CollectorRegistry, profile_name: str, config_hash: str) -> None:
        reg = registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.connections = Gauge(
            "engine_connections", "Open connections.", ["namespace"], registry=reg
        )
        self.connects = Counter(
            "engine_connects_total", "Accepted connections.", ["namespace"], registry=reg
        )
        self.disconnects = Counter(
            "engine_disconnects_total", "Disconnections.", ["namespace", "reason"], registry=reg
        )
        self.refused = Counter(
            "engine_connects_refused_total",
            "Refused connections.",
            ["namespace", "code"],
            registry=reg,
        )
        self.events_in = Counter(
            "engine_events_in_total", "Events received.", ["namespace", "event"], registry=reg
        )
        self.events_out = Counter(
            "engine_events_out_total",
            "Events delivered (one per recipient).",
            ["namespace", "event"],
            registry=reg,
        )
        self.bytes_in = Counter(
            "engine_bytes_in_total", "Event payload bytes received.", ["namespace"], registry=reg
        )
        self.bytes_out = Counter(
            "engine_bytes_out_total",
            "Event payload bytes delivered (size x recipients).",
            ["namespace"],
            registry=reg,
        )
        self.handler = Histogram(
            "engine_handler_duration_seconds",
            "Event handler duration.",
            ["namespace", "event"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.handler_errors = Counter(
            "engine_handler_errors_total",
            "Event handlers that raised.",
            ["namespace", "event"],
            registry=reg,
        )
        self.ack = Histogram(
            "engine_ack_round_trip_seconds",
            "Server-to-client ack round trip.",
            ["namespace"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.policy = Counter(
            "engine_policy_decisions_total",
            "Policy decisions.",
            ["policy", "outcome"],
            registry=reg,
        )
        self.errors = Counter("engine_errors_total", "Errors by code.", ["code"], registry=reg)
        self.security = Counter(
            "engine_security_events_total", "Security events by type.", ["type"], registry=reg
        )
        self.bans = Gauge("engine_active_bans", "Active bans.", registry=reg)
        self.rooms = Gauge("engine_rooms", "Rooms.", ["namespace"], registry=reg)
        self.lag = Gauge("engine_event_loop_lag_seconds", "Latest event-loop lag.", registry=reg)
        self.dropped = Counter(
            "engine_sink_dropped_total", "Records a sink dropped.", ["sink"], registry=reg
        )
        self.config = Info("engine_config", "Loaded profile.", registry=reg)
        self.config.info({"profile": profile_name, "hash": config_hash})
        self.reloads = Counter(
            "engine_config_reloads_total", "Profile reloads by result.", ["result"], registry=reg
        )
        self.publish_failures = Counter(
            "engine_cluster_publish_failures_total",
            "Broker messages (emits, room changes, disconnects for other nodes) dropped because "
            "Redis could not be reached.",
            registry=reg,
        )
        self.listener_restarts = Counter(
            "engine_cluster_listener_restarts_total",
            "Times the broker's listener task ended and its supervisor started it again.",
            registry=reg,
        )
        self.listener_reconnects = Counter(
            "engine_cluster_listener_reconnects_total",
            "Times the broker's listener lost its Redis subscription and subscribed again.",
            registry=reg,
        )
        self.cluster_nodes = Gauge(
            "engine_cluster_nodes",
            "Engine processes whose liveness probes this one received recently, itself included.",
            registry=reg,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """A labelled child, cached: prometheus_client's ``labels()`` locks and allocates on
        every call, which shows up at thousands of events a second. Label values are capped,
        so the cache is bounded."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class EventChildren:
    """The children one bounded ``(namespace, event)`` label pair updates, fetched once.

    Every event reaches two or three of these; looking each up through :meth:`Metrics.child`
    costs a key tuple and a dict probe per metric per event. Each group is fetched on its first
    use, never before, so the exposition shows exactly the series it showed without this (a
    child fetched early would export a zero series).
    """

    __slots__ = (
        "ev",
        "handler",
        "handler_errors",
        "inbound",
        "labels",
        "metrics",
        "ns",
        "outbound",
    )

    def __init__(self, metrics: Metrics, ns: str, ev: str) -> None:
        self.metrics = metrics
        self.ns = ns
        self.ev = ev
        self.labels = (("namespace", ns), ("event", ev))
        self.inbound: tuple[Any, Any] | None = None
        self.outbound: tuple[Any, Any] | None = None
        self.handler: Any = None
        self.handler_errors: Any = None

    def fetch_inbound(self) -> tuple[Any, Any]:
        """``engine_events_in_total`` and ``engine_bytes_in_total`` of this pair."""
        m = self.metrics
        self.inbound = (m.child(m.events_in, self.ns, self.ev), m.child(m.bytes_in, self.ns))
        return self.inbound

    def fetch_outbound(self) -> tuple[Any, Any]:
        """``engine_events_out_total`` and ``engine_bytes_out_total`` of this pair."""
        m = self.metrics
        self.outbound = (m.child(m.events_out, self.ns, self.ev), m.child(m.bytes_out, self.ns))
        return self.outbound

    def fetch_handler(self) -> Any:
        """``engine_handler_duration_seconds`` of this pair."""
        m = self.metrics
        self.handler = m.child(m.handler, self.ns, self.ev)
        return self.handler

    def fetch_handler_errors(self) -> Any:
        """``engine_handler_errors_total`` of this pair."""
        m = self.metrics
        self.handler_errors = m.child(m.handler_errors, self.ns, self.ev)
        return self.handler_errors
