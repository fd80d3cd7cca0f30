"""The :class:`Monitor`: the one object the server adapter reports to.

Every public method is synchronous, cheap and never raises (failures are logged once per method
and swallowed), except :meth:`Monitor.run` and :meth:`Monitor.aclose`, which are coroutines.
All ``now`` arguments are on the monitor's clock, ``time.monotonic()`` unless a ``clock`` is given.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, ParamSpec, Protocol, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from engine.monitoring import tasks
from engine.monitoring.health import HealthInputs, HealthReport, assess
from engine.monitoring.metrics import OTHER, Capped, EventChildren, Metrics
from engine.monitoring.options import MonitoringOptions
from engine.monitoring.records import EventRecord, Labels, MetricsSnapshot, TimingSeries, redact
from engine.monitoring.series import Reservoir, Sample, Second, Series
from engine.monitoring.sinks import SINKS, PrometheusSink, Sink
from engine.monitoring.stats import stats_document

__all__ = ["DISCONNECT_REASONS", "ClusterView", "Monitor"]

_log = logging.getLogger("engine.monitoring")

P = ParamSpec("P")
R = TypeVar("R")

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
LAG_WINDOW_SECONDS: Final = 5
MAX_ROOMS_LISTED: Final = 200
MAX_BANS_LISTED: Final = 1000


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


class ClusterView(Protocol):
    """What the cluster broker tells the monitor (engine.cluster.broker implements it)."""

    def problems(self) -> tuple[str, ...]:
        """What is wrong with the broker now, one reason each; empty when fine."""
        ...

    def describe(self) -> dict[str, object]:
        """JSON-ready broker state for the stats document (adapter, nodes seen, counters)."""
        ...


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
        self._codes = Capped()
        self._policies = Capped()
        self._types = Capped()
        self._refused_codes = Capped()
        self.registry = CollectorRegistry(auto_describe=True)
        self.metrics = Metrics(self.registry, profile_name, config_hash)
        # (namespace, event) as received -> its label pair's children; only pairs that are
        # their own labels (declared, so bounded) are kept, and a reload that changes the
        # declared events clears it. By label pair: bounded by the declared events ever served.
        self._event_children: dict[tuple[str, str], EventChildren] = {}
        self._label_children: dict[tuple[str, str], EventChildren] = {}

        now = clock()
        self._wall_offset = time.time() - now
        self._started = now
        self.series = Series(now, options.series_seconds)
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
            self.metrics.dropped.labels(sink.id)  # export 0 from the start
        self._by_stream: dict[str, tuple[Sink[Any], ...]] = {
            stream: tuple(s for s in self.sinks if s.accepts(stream))
            for stream in ("security", "errors", "lifecycle", "metrics")
        }
        self._agg_counters: dict[tuple[str, Labels], float] = {}
        self._agg_timings: dict[tuple[str, Labels], Reservoir] = {}
        self._aggregate = bool(self._by_stream["metrics"])
        self._last_metrics_flush = now
        self._closed = False
        self._refreshers: list[Callable[[], None]] = []
        self.node: dict[str, object] = {"id": f"{socket.gethostname()}:{os.getpid()}"}
        self._cluster: ClusterView | None = None
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

    # -- label bounding ----------------------------------------------------------------------

    def _ns(self, namespace: str) -> str:
        return namespace if namespace in self._namespaces else OTHER

    def _event(self, namespace: str, event: str) -> str:
        declared = self._declared.get(namespace)
        return event if declared is not None and event in declared else OTHER

    def _children(self, namespace: str, event: str) -> EventChildren:
        """The bounded labels of (``namespace``, ``event``) and their metric children."""
        key = (namespace, event)
        found = self._event_children.get(key)
        if found is not None:
            return found
        labels = (self._ns(namespace), self._event(namespace, event))
        found = self._label_children.get(labels)
        if found is None:
            found = self._label_children[labels] = EventChildren(self.metrics, *labels)
        if labels == key:  # a pair that is its own labels: one of a bounded set
            self._event_children[key] = found
        return found

    # -- per-second series -------------------------------------------------------------------

    def _roll(self, now: float) -> Second:
        cur = self.series.cur
        if int(now) <= cur.sec:
            return cur  # within the second being filled: nothing closes, no count needed
        return self.series.roll(now, sum(self._connections.values()))

    def _now(self) -> Second:
        return self._roll(self._clock())

    def _window(self, now: float, seconds: float) -> list[Sample]:
        return self.series.window(now, seconds)

    # -- metric-stream aggregation -----------------------------------------------------------

    def _count(self, name: str, labels: Labels, value: float = 1.0) -> None:
        key = (name, labels)
        self._agg_counters[key] = self._agg_counters.get(key, 0.0) + value

    def _time(self, name: str, labels: Labels, seconds: float) -> None:
        key = (name, labels)
        res = self._agg_timings.get(key)
        if res is None:
            res = self._agg_timings[key] = Reservoir()
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
        self.metrics.dropped.labels(sink_id).inc(n)

    # -- the cluster broker ------------------------------------------------------------------

    def set_node(self, node_id: str, **fields: object) -> None:
        """This process's identity in the cluster, shown by the stats and the dashboard."""
        self.node = {"id": node_id, "pid": os.getpid(), **fields}

    def attach_cluster(self, view: ClusterView) -> None:
        """The broker whose problems count in health and whose state the stats show."""
        self._cluster = view

    @_never_raises()
    def cluster_publish_failed(self) -> None:
        """A broker message could not be published (it is dropped)."""
        self.metrics.publish_failures.inc()

    @_never_raises()
    def cluster_listener_restarted(self) -> None:
        """The broker's listener task ended and was started again."""
        self.metrics.listener_restarts.inc()

    @_never_raises()
    def cluster_listener_reconnected(self) -> None:
        """The broker's listener subscribed again after losing Redis."""
        self.metrics.listener_reconnects.inc()

    def _cluster_problems(self) -> tuple[str, ...]:
        return self._cluster.problems() if self._cluster is not None else ()

    def _cluster_state(self) -> dict[str, object]:
        if self._cluster is None:
            state: dict[str, object] = {
                "adapter": "memory",
                "nodes": [{"id": self.node["id"], "self": True, "alive": True}],
            }
        else:
            state = self._cluster.describe()
        nodes = state.get("nodes")
        if isinstance(nodes, list):
            self.metrics.cluster_nodes.set(sum(1 for n in nodes if n.get("alive")))
        return state

    # -- the adapter interface ---------------------------------------------------------------

    @_never_raises()
    def connection_opened(self, namespace: str) -> None:
        """A client connected to ``namespace``."""
        self._now()
        ns = self._ns(namespace)
        self._connections[ns] = self._connections.get(ns, 0) + 1
        self.metrics.child(self.metrics.connections, ns).inc()
        self.metrics.child(self.metrics.connects, ns).inc()
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
            self.metrics.child(self.metrics.connections, ns).dec()
        self.metrics.child(self.metrics.disconnects, ns, why).inc()
        if self._aggregate:
            self._count("engine_disconnects_total", (("namespace", ns), ("reason", why)))

    @_never_raises()
    def connect_refused(self, namespace: str, code: str) -> None:
        """A connection to ``namespace`` was refused with ``code``."""
        self._now()
        ns = self._ns(namespace)
        label = self._refused_codes(code)
        self.metrics.child(self.metrics.refused, ns, label).inc()
        if self._aggregate:
            self._count("engine_connects_refused_total", (("namespace", ns), ("code", label)))

    @_never_raises()
    def event_in(self, namespace: str, event: str, nbytes: int) -> None:
        """An event arrived (undeclared events count as ``other``)."""
        cur = self._now()
        cur.events_in += 1
        children = self._children(namespace, event)
        events_in, bytes_in = children.inbound or children.fetch_inbound()
        events_in.inc()
        bytes_in.inc(max(nbytes, 0))
        if self._aggregate:
            self._count("engine_events_in_total", children.labels)
            self._count("engine_bytes_in_total", children.labels[:1], max(nbytes, 0))

    @_never_raises()
    def event_out(self, namespace: str, event: str, nbytes: int, recipients: int) -> None:
        """An event was emitted to ``recipients`` clients."""
        n = max(recipients, 0)
        cur = self._now()
        cur.events_out += n
        children = self._children(namespace, event)
        events_out, bytes_out = children.outbound or children.fetch_outbound()
        events_out.inc(n)
        bytes_out.inc(max(nbytes, 0) * n)
        if self._aggregate:
            self._count("engine_events_out_total", children.labels, n)
            self._count("engine_bytes_out_total", children.labels[:1], max(nbytes, 0) * n)

    @_never_raises()
    def handler_finished(self, namespace: str, event: str, seconds: float, error: bool) -> None:
        """An event handler finished after ``seconds``; ``error`` if it raised."""
        cur = self._now()
        seconds = max(seconds, 0.0)
        cur.handler_calls += 1
        cur.add_latency(seconds)
        children = self._children(namespace, event)
        (children.handler or children.fetch_handler()).observe(seconds)
        if self._aggregate:
            self._time("engine_handler_duration_seconds", children.labels, seconds)
        if error:
            cur.handler_errors += 1
            cur.errors += 1
            (children.handler_errors or children.fetch_handler_errors()).inc()
            if self._aggregate:
                self._count("engine_handler_errors_total", children.labels)
            self._emit(
                "errors", {"code": "handler_error", "namespace": children.ns, "event": children.ev}
            )

    @_never_raises()
    def ack_round_trip(self, namespace: str, seconds: float) -> None:
        """A client acknowledged a server emit after ``seconds``."""
        self._now()
        ns = self._ns(namespace)
        self.metrics.child(self.metrics.ack, ns).observe(max(seconds, 0.0))
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
        self.metrics.child(self.metrics.policy, label, result).inc()
        if self._aggregate:
            self._count("engine_policy_decisions_total", (("policy", label), ("outcome", result)))

    @_never_raises()
    def error(self, code: str) -> None:
        """An error with ``code`` happened (handler failures go to :meth:`handler_finished`)."""
        cur = self._now()
        cur.errors += 1
        label = self._codes(code)
        self.metrics.child(self.metrics.errors, label).inc()
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
        self.metrics.child(self.metrics.security, label).inc()
        if self._aggregate:
            self._count("engine_security_events_total", (("type", label),))

    @_never_raises()
    def security_event_suppressed(self, kind: str) -> None:
        """A security event the flood budget kept out of the streams: counted only."""
        label = self._types(kind)
        self.metrics.child(self.metrics.security, label).inc()
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
        self.metrics.child(self.metrics.reloads, result).inc()
        if result == "applied" and config_hash is not None:
            self.config_hash = config_hash
            self.profile_name = profile_name or self.profile_name
            self.metrics.config.info({"profile": self.profile_name, "hash": config_hash})
            if declared_events is not None:
                self._declared = {ns: frozenset(evs) for ns, evs in declared_events.items()}
                self._namespaces = frozenset(self._declared) | {"/"}
                self._event_children.clear()  # which received names are their own labels
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
        self.metrics.child(self.metrics.rooms, ns).set(total)

    @_never_raises()
    def set_active_bans(self, bans: Sequence[Mapping[str, object]]) -> None:
        """Snapshot of active bans."""
        self._bans = tuple(redact(ban) for ban in bans[:MAX_BANS_LISTED])
        self.metrics.bans.set(len(bans))

    @_never_raises()
    def loop_lag(self, seconds: float) -> None:
        """Measured event-loop lag."""
        cur = self._now()
        seconds = max(seconds, 0.0)
        self._last_lag = seconds
        cur.loop_lag = max(cur.loop_lag, seconds)
        self.metrics.lag.set(seconds)

    # -- reading -----------------------------------------------------------------------------

    def now(self) -> float:
        """The monitor's clock (pass it to :meth:`health` and :meth:`stats`)."""
        return self._clock()

    def _health_inputs(self, now: float) -> HealthInputs:
        cur = self._roll(now)
        window = self._window(now, self.options.health.window_seconds)
        lag_window = self._window(now, LAG_WINDOW_SECONDS)
        return HealthInputs(
            loop_lag_seconds=max([cur.loop_lag, *(s.loop_lag for s in lag_window)]),
            handler_calls=cur.handler_calls + sum(s.handler_calls for s in window),
            handler_errors=cur.handler_errors + sum(s.handler_errors for s in window),
            connections=sum(self._connections.values()),
            degraded=(
                *(reason for check in self._health_checks if (reason := check())),
                *(f"cluster broker: {p}" for p in self._cluster_problems()),
            ),
        )

    @_never_raises(default=HealthReport("unhealthy", ("monitoring failed to assess health",)))
    def health(self, now: float) -> HealthReport:
        """Assess health at ``now`` against ``[monitoring.health]``."""
        return assess(self._health_inputs(now), self.options.health)

    @_never_raises(default={"error": "monitoring failed to build stats"})
    def stats(self, now: float) -> dict[str, object]:
        """The JSON document served at the dashboard's stats path (`engine.monitoring.stats`)."""
        return stats_document(self, now)

    def render_prometheus(self) -> tuple[bytes, str]:
        """Prometheus text exposition of this monitor's registry: ``(body, content_type)``."""
        self._refresh()
        try:
            self._cluster_state()  # refreshes engine_cluster_nodes
        except Exception:
            _log.exception("monitoring: reading the cluster state failed")
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

    async def run(self) -> None:
        """Run sink writers and the loop-lag probe until cancelled; then flush the sinks."""
        await tasks.run(self)

    async def aclose(self) -> None:
        """Flush and close every sink (idempotent)."""
        await tasks.aclose(self)
