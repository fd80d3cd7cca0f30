"""The message broker of a cluster: python-socketio's ``AsyncRedisManager``, hardened.

`build_client_manager()` returns None for ``adapter = "memory"`` (python-socketio's default
in-memory manager) and a `RedisBroker` for ``adapter = "redis"``. The broker keeps the
library's message format and dispatch (so a plain ``socketio.AsyncRedisManager(url,
write_only=True)`` in another process can publish to the cluster), and replaces the parts
whose failure modes are known:

- A publish during an outage is logged and dropped by the library: the broker counts it
  (``engine_cluster_publish_failures_total``) and, while Redis is known down, drops at once
  instead of stalling the emitter on a connection attempt, until a probe gets through.
- The library's listener task can end for good (``pubsub listen() exited unexpectedly``, or a
  stray cancellation it swallows): a supervisor starts it again with backoff, counted in
  ``engine_cluster_listener_restarts_total`` and logged.
- A listener with a read timeout (``socket_timeout``) reconnects whenever the channel is idle:
  the listener's client gets ``socket_connect_timeout`` and ``health_check_interval`` instead,
  and a connection that dies silently is caught by the liveness probe (reconnect).
- The library shares one client between publishing and listening (a publish that reconnects
  replaces the listener's pubsub): the broker uses one client for each.

Liveness probe: every ``probe_interval_seconds`` each process publishes a small probe on
``<channel>:nodes`` through its publisher and must get it back through its listener within
``probe_timeout_seconds``. `broker_problems()` (pure) turns the state into health reasons:
Redis unreachable, listener disconnected, or probe late means ``degraded`` with the reason;
probes of other processes make the list of nodes seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from engine.cluster.options import ClusterOptions
from engine.monitoring import Monitor

try:
    from redis import asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError:  # pragma: no cover
    aioredis = None  # type: ignore[assignment]

__all__ = [
    "BrokerState",
    "IncompatibleLibrary",
    "RedisBroker",
    "broker_problems",
    "build_client_manager",
    "check_library",
    "probe_channel",
    "publisher_options",
    "redis_client",
]

log = logging.getLogger("engine.cluster")

LISTENER_BACKOFF_SECONDS = (0.1, 5.0)  # first retry, cap (doubling in between)
RESTART_BACKOFF_SECONDS = (0.1, 10.0)
DEFAULT_CONNECT_TIMEOUT_SECONDS = 2.0
DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS = 10
DEFAULT_PUBLISH_TIMEOUT_SECONDS = 5.0
NODES_FORGOTTEN_AFTER_PROBE_TIMEOUTS = 20


class IncompatibleLibrary(RuntimeError):
    """The installed python-socketio does not have the shape the broker relies on."""


def check_library() -> None:
    """Fail loudly if python-socketio's pub/sub manager changed shape.

    The broker overrides ``_publish``, ``_listen`` and ``_thread`` and calls the base
    ``_thread`` (the message dispatch), and starts the manager the way ``AsyncServer`` does
    (``manager_initialized`` + ``initialize()``).
    """
    problems = []
    for name, check in (
        ("_publish", inspect.iscoroutinefunction),
        ("_thread", inspect.iscoroutinefunction),
        ("_handle_emit", inspect.iscoroutinefunction),
        ("_listen", inspect.isasyncgenfunction),
        ("initialize", callable),
    ):
        member = getattr(socketio.AsyncRedisManager, name, None)
        if member is None or not check(member):
            problems.append(f"AsyncRedisManager.{name}")
    init = inspect.signature(socketio.AsyncRedisManager.__init__).parameters
    for parameter in ("url", "channel", "write_only", "redis_options"):
        if parameter not in init:
            problems.append(f"AsyncRedisManager(..., {parameter}=)")
    if "manager_initialized" not in inspect.getsource(socketio.AsyncServer._handle_eio_connect):
        problems.append("AsyncServer._handle_eio_connect initializing the manager")
    if problems:
        version = getattr(socketio, "__version__", "?")
        raise IncompatibleLibrary(
            f"python-socketio {version} changed what the engine's Redis broker relies on: "
            + ", ".join(problems)
        )


def probe_channel(channel: str) -> str:
    """The channel of the liveness probes of the cluster that uses `channel`."""
    return f"{channel}:nodes"


@dataclass(slots=True)
class BrokerState:
    """What the broker knows about Redis, on the monotonic clock.

    :param started: when the broker started.
    :param publish_error: the last publish's error, None once one succeeded after it.
    :param listener_error: why the listener is not subscribed, None while subscribed.
    :param listener_subscribed: whether the listener subscribed at least once.
    :param pending_since: when the oldest probe not yet echoed back was published.
    :param last_echo: when this process last received its own probe.
    :param nodes: node id -> when its last probe arrived (this node included).
    """

    started: float
    publish_error: str | None = None
    listener_error: str | None = None
    listener_subscribed: bool = False
    pending_since: float | None = None
    last_echo: float | None = None
    round_trip_seconds: float | None = None
    nodes: dict[str, float] = field(default_factory=dict)
    publish_failures: int = 0
    listener_restarts: int = 0
    listener_reconnects: int = 0


def broker_problems(state: BrokerState, now: float, timeout: float) -> tuple[str, ...]:
    """Why the broker is impaired at `now`, one reason each (pure)."""
    out: list[str] = []
    if state.publish_error is not None:
        out.append(f"cannot publish to Redis ({state.publish_error})")
    if state.listener_error is not None:
        out.append(f"listener not subscribed to Redis ({state.listener_error}); reconnecting")
    elif not state.listener_subscribed and now - state.started > timeout:
        out.append(f"listener not subscribed after {now - state.started:.1f}s")
    if state.pending_since is not None and now - state.pending_since > timeout:
        out.append(
            f"liveness probe late: no echo for {now - state.pending_since:.1f}s "
            f"(limit {timeout:g}s)"
        )
    return tuple(out)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def redis_client(url: str, channel: str, options: dict[str, Any]) -> Any:
    """A `redis.asyncio` client for `url` with `options`, Sentinel-aware as python-socketio
    (``redis+sentinel://``: the master of the URL's service, else of `channel`)."""
    if aioredis is None:  # pragma: no cover
        raise RuntimeError('adapter "redis" needs the redis package (engine[redis])')
    if url.startswith(("redis+sentinel://", "valkey+sentinel://")):
        from socketio.redis_manager import parse_redis_sentinel_url

        sentinels, service, connection = parse_redis_sentinel_url(url)
        sentinel = aioredis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            sentinels, **{**options, **connection}
        )
        return sentinel.master_for(service or channel)
    return aioredis.Redis.from_url(url, **options)


def publisher_options(redis_options: Mapping[str, Any]) -> dict[str, Any]:
    """Options of a publishing client: `redis_options` (with the password) plus bounded
    connect and publish timeouts and one immediate retry (a stale pooled socket)."""
    options = dict(redis_options)
    options.setdefault("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)
    options.setdefault("socket_timeout", DEFAULT_PUBLISH_TIMEOUT_SECONDS)
    options["retry"] = Retry(NoBackoff(), 1)
    return options


class ListenerStale(Exception):
    """Own probes stopped coming back although they were published: reconnect."""


class RedisBroker(socketio.AsyncRedisManager):  # type: ignore[misc]
    """``AsyncRedisManager`` with counted publish failures, a supervised listener and a probe.

    :param cluster: the ``[cluster]`` options (url, password, channel, redis_options, probe).
    :param monitor: receives the counters and reads `problems()` / `describe()`.
    :param node_id: this process's name in the cluster.
    :param clock: monotonic clock.
    """

    name = "engine-redis"

    def __init__(
        self,
        cluster: ClusterOptions,
        monitor: Monitor,
        node_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if aioredis is None:  # pragma: no cover
            raise RuntimeError('adapter "redis" needs the redis package (engine[redis])')
        assert cluster.url is not None
        super().__init__(
            url=cluster.url,
            channel=cluster.channel,
            redis_options=cluster.connection_options(),
            logger=log,
        )
        self.cluster = cluster
        self.monitor = monitor
        self.node_id = node_id
        self.clock = clock
        self.state = BrokerState(started=clock())
        self.probe_channel = probe_channel(cluster.channel)
        self._publisher: Any = None
        self._probe_task: asyncio.Task[None] | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._closing = False
        self._seq = 0
        self._sent: dict[int, float] = {}

    # -- Redis clients -------------------------------------------------------------------------

    def _client(self, options: dict[str, Any]) -> Any:
        """A Redis client for the URL (Sentinel-aware) with `options`."""
        return redis_client(self.redis_url, self.channel, options)

    def publisher_options(self) -> dict[str, Any]:
        return publisher_options(self.redis_options)

    def listener_options(self) -> dict[str, Any]:
        options = dict(self.redis_options)
        options.pop("socket_timeout", None)  # an idle subscription is not a dead one
        options.setdefault("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)
        options.setdefault("health_check_interval", DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS)
        options["retry"] = Retry(NoBackoff(), 0)  # reconnecting is the listener loop's job
        return options

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe and start probing now, not at the first client (call in the event loop)."""
        if not self.server.manager_initialized:
            self.server.manager_initialized = True
            self.initialize()

    def initialize(self) -> None:
        self._publisher = self._client(self.publisher_options())
        super().initialize()  # starts self._thread (the supervisor) as a background task
        self._probe_task = asyncio.ensure_future(self._probe_loop())

    async def aclose(self) -> None:
        """Stop listening and probing, close the Redis clients."""
        self._closing = True
        tasks = [t for t in (getattr(self, "thread", None), self._probe_task) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()

    # -- publishing ----------------------------------------------------------------------------

    async def _publish(self, data: Any) -> None:
        """Publish one message for the other nodes; a failure drops it, counted."""
        if self.state.publish_error is not None:
            # Redis is known down: drop at once rather than stall every emitter on a
            # connection attempt; the probe loop finds out when it is back.
            self._dropped(None)
            return
        try:
            await self._publisher.publish(self.channel, self.json.dumps(data))
        except Exception as exc:
            self._dropped(exc)
        else:
            self._publish_ok()

    def _dropped(self, exc: BaseException | None) -> None:
        self.state.publish_failures += 1
        self.monitor.cluster_publish_failed()
        if exc is not None and self.state.publish_error is None:
            self.state.publish_error = _describe(exc)
            log.warning(
                "cluster broker: cannot publish to Redis (%s); messages for other nodes are "
                "dropped until it is back",
                self.state.publish_error,
            )

    def _publish_ok(self) -> None:
        if self.state.publish_error is not None:
            log.warning(
                "cluster broker: publishing to Redis again (%d messages dropped so far)",
                self.state.publish_failures,
            )
            self.state.publish_error = None

    # -- listening -----------------------------------------------------------------------------

    async def _thread(self) -> None:
        """Supervisor: run the library's listener/dispatch loop, start it again if it ends."""
        delay, cap = RESTART_BACKOFF_SECONDS
        while not self._closing:
            self._listener_task = asyncio.ensure_future(AsyncPubSubManager._thread(self))
            started = self.clock()
            await asyncio.wait({self._listener_task})
            if self._closing:
                break
            task = self._listener_task
            outcome = (
                "cancelled"
                if task.cancelled()
                else _describe(task.exception())  # type: ignore[arg-type]
                if task.exception() is not None
                else "returned"
            )
            self.state.listener_restarts += 1
            self.state.listener_error = f"listener task ended ({outcome}); restarting"
            self.state.listener_subscribed = False
            self.monitor.cluster_listener_restarted()
            log.error("cluster broker: the listener task ended (%s); restarting it", outcome)
            if self.clock() - started > cap:
                delay = RESTART_BACKOFF_SECONDS[0]
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)

    @property
    def listener_task(self) -> asyncio.Task[None] | None:
        """The current listener task (the supervisor starts a new one if it ends)."""
        return self._listener_task

    async def _listen(self) -> AsyncIterator[bytes]:
        """Messages of the channel, forever: reconnects with backoff, handles probes."""
        delay, cap = LISTENER_BACKOFF_SECONDS
        channel = self.channel.encode()
        probes = self.probe_channel.encode()
        window = self.cluster.probe_interval_seconds
        subscribed_before = False
        while True:
            client = pubsub = None
            try:
                client = self._client(self.listener_options())
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel, self.probe_channel)
                if subscribed_before:
                    self.state.listener_reconnects += 1
                    self.monitor.cluster_listener_reconnected()
                    log.warning("cluster broker: listener subscribed to Redis again")
                subscribed_before = True
                self.state.listener_subscribed = True
                self.state.listener_error = None
                self.state.pending_since = None  # probes published before now may be lost
                delay = LISTENER_BACKOFF_SECONDS[0]
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=window
                    )
                    self._check_stale()
                    if message is None or message.get("type") != "message":
                        continue
                    if message["channel"] == probes:
                        self._on_probe(message["data"])
                    elif message["channel"] == channel:
                        yield message["data"]
            except Exception as exc:
                if self.state.listener_error is None:
                    log.warning(
                        "cluster broker: listener lost Redis (%s); reconnecting", _describe(exc)
                    )
                self.state.listener_error = _describe(exc)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)

    def _check_stale(self) -> None:
        pending = self.state.pending_since
        if pending is not None and self.clock() - pending > self.cluster.probe_timeout_seconds:
            raise ListenerStale("own probes published but not received")

    # -- liveness probe --------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while not self._closing:
            await self._probe_once()
            await asyncio.sleep(self.cluster.probe_interval_seconds)

    async def _probe_once(self) -> None:
        self._seq += 1
        now = self.clock()
        body = json.dumps(
            {"node": self.node_id, "host": self.host_id, "seq": self._seq, "pid": os.getpid()}
        )
        try:
            await self._publisher.publish(self.probe_channel, body)
        except Exception as exc:
            if self.state.publish_error is None:
                log.warning("cluster broker: Redis unreachable (%s)", _describe(exc))
            self.state.publish_error = _describe(exc)
            return
        self._publish_ok()
        self._sent[self._seq] = now
        if len(self._sent) > 64:
            self._sent.pop(min(self._sent))
        if self.state.pending_since is None:
            self.state.pending_since = now

    def _on_probe(self, data: bytes) -> None:
        try:
            probe = json.loads(data)
            node = str(probe["node"])
        except (ValueError, KeyError, TypeError):
            return
        now = self.clock()
        self.state.nodes[node] = now
        if probe.get("host") == self.host_id:
            sent = self._sent.get(probe.get("seq", -1))
            if sent is not None:
                self.state.round_trip_seconds = now - sent
            if self.state.pending_since is not None and self.state.last_echo is None:
                log.info("cluster broker: node %s joined the cluster", self.node_id)
            self.state.pending_since = None
            self.state.last_echo = now
        forget = NODES_FORGOTTEN_AFTER_PROBE_TIMEOUTS * self.cluster.probe_timeout_seconds
        for name, seen in list(self.state.nodes.items()):
            if now - seen > forget:
                del self.state.nodes[name]

    # -- what the monitor reads ------------------------------------------------------------------

    def problems(self) -> tuple[str, ...]:
        return broker_problems(self.state, self.clock(), self.cluster.probe_timeout_seconds)

    def describe(self) -> dict[str, object]:
        now = self.clock()
        state = self.state
        timeout = self.cluster.probe_timeout_seconds
        nodes = [
            {
                "id": name,
                "self": name == self.node_id,
                "alive": now - seen <= timeout,
                "last_seen_seconds_ago": round(now - seen, 3),
            }
            for name, seen in sorted(state.nodes.items())
        ]
        if not any(n["self"] for n in nodes):
            nodes.insert(0, {"id": self.node_id, "self": True, "alive": False})
        return {
            "adapter": "redis",
            "channel": self.channel,
            "nodes": nodes,
            "problems": list(self.problems()),
            "probe_round_trip_seconds": state.round_trip_seconds,
            "publish_failures": state.publish_failures,
            "listener_restarts": state.listener_restarts,
            "listener_reconnects": state.listener_reconnects,
        }


def build_client_manager(
    cluster: ClusterOptions, monitor: Monitor, node_id: str
) -> RedisBroker | None:
    """The ``client_manager`` of ``socketio.AsyncServer`` for `cluster`; None for memory.

    Also tells the monitor this process's node id and, for Redis, attaches the broker so its
    problems count in health and its state shows in the stats.
    """
    monitor.set_node(node_id)
    if cluster.adapter == "memory":
        return None
    check_library()
    broker = RedisBroker(cluster, monitor, node_id)
    monitor.attach_cluster(broker)
    return broker
