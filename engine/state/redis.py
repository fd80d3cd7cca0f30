"""Cluster-wide policy state in Redis: every operation is one Lua script, run atomically.

The scripts (`engine/state/lua/*.lua`) transcribe the pure policies (`engine.policies`) line by
line and take the time from Redis (`TIME`), so the nodes' clocks do not matter; with
`caller_clock=True` they use the `now` the caller passes instead (tests drive time that way).

Keys, under a prefix (default ``engine:<cluster channel>:``) so several engines can share a
Redis:

| key | type | what |
|---|---|---|
| ``b:<bucket key>`` | hash ``t``, ``u`` | token bucket; expires when full again |
| ``s:<subject>`` | hash ``s n u r`` | strikes, bans, ban end, reason; expires at ``forget_at`` |
| ``bans`` | sorted set subject -> ban end | running bans, for dashboards |
| ``c:<count key>`` | hash node -> count | connection counts, one field per node |
| ``nodes`` | sorted set node -> heartbeat expiry | live nodes |
| ``n:<node>`` | set | the count hashes a node holds a field in (for the sweep) |

A connection count is a *lease*: it counts only while its node's heartbeat is in the future.
Each node refreshes its heartbeat every third of `lease_ttl_seconds` (one O(1) call whatever
the number of connections) and sweeps dead nodes' fields; a node that dies leaves counts that
stop counting within `lease_ttl_seconds`. The node keeps its own counts in memory, and rewrites
them (`restore.lua`) whenever its heartbeat was found expired or a call's outcome is unknown.

Requires a standalone or Sentinel Redis (two scripts derive key names), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from engine.cluster.options import ClusterOptions
from engine.policies.abuse import (
    ALLOWED,
    AbuseOptions,
    Banned,
    Verdict,
    canonical_subject,
)
from engine.policies.rate_limit import TOLERANCE, Admission, BucketState, TokenBucket
from engine.state.memory import MemoryStateStore

try:
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript
    from redis.retry import Retry
except ImportError:  # pragma: no cover - the `redis` extra is not installed
    Redis = None  # type: ignore[assignment,misc]

__all__ = ["LEASE_TTL_SECONDS", "SCRIPTS", "RedisStateStore", "redis_client"]

log = logging.getLogger("engine.state")

LEASE_TTL_SECONDS = 15.0
SOCKET_TIMEOUT_SECONDS = 0.5
EPOCH = 1_700_000_000  # the scripts' time origin (_common.lua)
MAX_BANS_LISTED = 100
MAX_SWEEP = 16
SCRIPTS = ("take", "strike", "banned", "bans", "acquire", "release", "refresh", "restore", "retire")


def _lua(name: str) -> str:
    return (resources.files("engine.state") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def script_source(name: str) -> str:
    """The full text of script `name`: the shared helpers, then the script."""
    return _lua("_common") + "\n" + _lua(name)


def _arg(value: float) -> str:
    """A float as Lua reads it back exactly (repr is the shortest round-tripping form)."""
    return repr(float(value))


def _float(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_client(cluster: ClusterOptions, timeout: float = SOCKET_TIMEOUT_SECONDS) -> Redis:
    """A request/response client for the store: short timeouts, one immediate retry.

    redis-py's default retries with exponential backoff would hold a request for seconds while
    Redis is down; the fallback store answers instead.
    """
    if Redis is None:  # pragma: no cover
        raise RuntimeError('the Redis package is not installed: pip install "engine[redis]"')
    assert cluster.url is not None
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
        **cluster.connection_options(),
    }
    if cluster.url.startswith("redis+sentinel://"):
        from socketio.redis_manager import parse_redis_sentinel_url

        sentinels, service, extra = parse_redis_sentinel_url(cluster.url)
        options.update(extra)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinels, sentinel_kwargs={"socket_timeout": timeout}, **options
        )
        # the same default service as python-socketio's manager (and the broker): the channel
        client: Redis = sentinel.master_for(service or cluster.channel, redis_class=Redis)
        return client
    plain: Redis = Redis.from_url(cluster.url, **options)
    return plain


def node_name(cluster: ClusterOptions) -> str:
    """This process's lease owner: the configured node id (or host:pid) plus a random tag, so a
    restarted process never adopts the counts of its previous life."""
    from engine.cluster.workers import node_identity

    return f"{node_identity(cluster)}:{secrets.token_hex(4)}"


class RedisStateStore:
    """The `StateStore` on Redis, shared by every node of a cluster.

    :param client: a `redis.asyncio.Redis` (see `redis_client`).
    :param prefix: prefix of every key.
    :param node: this process's lease owner (see `node_name`).
    :param lease_ttl_seconds: how long a connection count outlives its node's last heartbeat.
    :param caller_clock: use the `now` arguments instead of Redis's clock (tests).
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "engine:socketio:",
        node: str | None = None,
        lease_ttl_seconds: float = LEASE_TTL_SECONDS,
        caller_clock: bool = False,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.node = node or node_name(ClusterOptions())
        self.lease_ttl_seconds = lease_ttl_seconds
        self.caller_clock = caller_clock
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPTS
        }
        self._nodes = f"{prefix}nodes"
        self._owned = f"{prefix}n:{self.node}"
        self._ban_index = f"{prefix}bans"
        self._held: dict[str, int] = {}  # count hash -> this node's count: the truth
        self._dirty = True  # Redis may disagree with _held: restore before trusting it
        self._refresher: asyncio.Task[None] | None = None
        self._bans: list[tuple[str, float, int, str]] = []  # subject, until, served, reason
        self._offset = 0.0  # server time minus time.monotonic(), from the latest reply
        self.refresh_failures = 0
        self._beat: asyncio.Event | None = None
        # per-connection state stays on this node (engine.state.store.StateStore.local)
        self.local = MemoryStateStore()

    @classmethod
    def from_options(
        cls, cluster: ClusterOptions, *, lease_ttl_seconds: float = LEASE_TTL_SECONDS
    ) -> RedisStateStore:
        return cls(
            redis_client(cluster),
            prefix=f"engine:{cluster.channel}:",
            node=node_name(cluster),
            lease_ttl_seconds=lease_ttl_seconds,
        )

    def _now(self, now: float | None) -> str:
        if self.caller_clock:
            if now is None:
                raise ValueError("caller_clock=True needs an explicit now")
            return _arg(now)
        return ""

    def _expire(self) -> str:
        # Key expiry runs on Redis's clock; with a caller clock the keys are kept (a full
        # bucket and a forgettable record decide exactly like no key, so keeping is safe).
        return "0" if self.caller_clock else "1"

    def _seen(self, server_now: Any) -> None:
        self._offset = _float(server_now) - time.monotonic()

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        return await self._scripts[name](keys=list(keys), args=list(args))

    # -- token buckets -----------------------------------------------------------------------

    async def take(self, key: str, bucket: TokenBucket, now: float) -> Admission:
        allowed, retry, _, _ = await self._run(
            "take",
            [f"{self.prefix}b:{key}"],
            [
                self._now(now),
                _arg(bucket.rate_per_second),
                str(bucket.burst),
                "1",
                _arg(TOLERANCE),
                self._expire(),
            ],
        )
        return Admission(bool(allowed), 0.0 if allowed else _float(retry))

    async def read_bucket(self, key: str) -> BucketState | None:
        """The stored bucket of `key` (tests, diagnostics)."""
        tokens, updated = await self.client.hmget(  # type: ignore[misc]
            f"{self.prefix}b:{key}", ["t", "u"]
        )
        if tokens is None:
            return None
        return BucketState(_float(tokens), _float(updated))

    # -- strikes and bans --------------------------------------------------------------------

    def _record_key(self, subject: str) -> str:
        return f"{self.prefix}s:{canonical_subject(subject)}"

    async def strike(self, subject: str, options: AbuseOptions, now: float, kind: str) -> Verdict:
        subject = canonical_subject(subject)
        reply = await self._run(
            "strike",
            [self._record_key(subject), self._ban_index],
            [
                self._now(now),
                subject,
                str(options.strikes),
                _arg(options.window_seconds),
                _arg(options.forgive_after_seconds),
                kind,
                self._expire(),
                *(_arg(d) for d in options.ladder_seconds),
            ],
        )
        self._seen(reply[1])
        if _text(reply[0]) != "banned":
            return ALLOWED
        ban = Banned(_float(reply[2]), _float(reply[3]), _text(reply[4]))
        entry = (subject, ban.until, int(reply[5]), ban.reason)
        self._bans = [b for b in self._bans if b[0] != subject] + [entry]
        return ban

    async def banned(self, subjects: Sequence[str], now: float) -> Banned | None:
        if not subjects:
            return None
        reply = await self._run("banned", [self._record_key(s) for s in subjects], [self._now(now)])
        if int(reply[0]) == 0:
            return None
        return Banned(_float(reply[1]), _float(reply[2]), _text(reply[3]))

    async def record(self, subject: str) -> dict[str, str]:
        """The stored record of `subject` (tests, diagnostics)."""
        raw = await self.client.hgetall(self._record_key(subject))  # type: ignore[misc]
        return {_text(k): _text(v) for k, v in raw.items()}

    def active_bans(self, now: float) -> list[tuple[str, Banned, int]]:
        """Running bans as of the latest refresh (cluster-wide) plus bans this node issued since.

        `now` is the caller's clock; with Redis's clock the server time is estimated from the
        latest reply."""
        at = now if self.caller_clock else time.monotonic() + self._offset
        return [
            (subject, Banned(until, until - at, reason), served)
            for subject, until, served, reason in self._bans
            if until > at
        ]

    async def load_bans(self, now: float | None = None) -> list[tuple[str, Banned, int]]:
        """Fetch the cluster's running bans (up to 100) into the `active_bans` snapshot."""
        reply = await self._run(
            "bans",
            [self._ban_index],
            [self._now(now), f"{self.prefix}s:", str(MAX_BANS_LISTED)],
        )
        self._seen(reply[0])
        rows = reply[1:]
        self._bans = [
            (_text(rows[i]), _float(rows[i + 1]), int(rows[i + 2]), _text(rows[i + 3]))
            for i in range(0, len(rows), 4)
        ]
        return self.active_bans(_float(reply[0]))

    # -- connection counts (leases) ----------------------------------------------------------

    def _count_key(self, key: str) -> str:
        return f"{self.prefix}c:{key}"

    async def acquire(
        self, slots: Sequence[tuple[str, int | None]], *, now: float | None = None
    ) -> int | None:
        if self._dirty:
            await self.restore(now=now)
        keys = [self._count_key(key) for key, _ in slots]
        caps = ["" if cap is None else str(cap) for _, cap in slots]
        args = [self._now(now), self.node, *caps]
        try:
            result = int(await self._run("acquire", [self._nodes, self._owned, *keys], args))
            if result == -1:  # our heartbeat expired: re-register with our counts, then retry
                await self.restore(now=now)
                result = int(await self._run("acquire", [self._nodes, self._owned, *keys], args))
        except BaseException:
            self._dirty = True  # the script may have run: restore before the next decision
            raise
        if result >= 0:
            return result
        if result == -1:  # pragma: no cover - the heartbeat was renewed a moment ago
            raise RuntimeError("state store: could not register this node's leases")
        held = self._held
        for key in keys:
            held[key] = held.get(key, 0) + 1
        return None

    async def release(self, keys: Sequence[str], *, now: float | None = None) -> None:
        mine = self._forget(keys)
        if not mine:
            return
        try:
            await self._run("release", [self._owned, *mine], [self.node])
        except BaseException:
            self._dirty = True
            raise

    def forget(self, keys: Sequence[str]) -> None:
        """Release without telling Redis now (it is unreachable): the next heartbeat restores
        this node's counts, which no longer include this connection."""
        if self._forget(keys):
            self._dirty = True

    def _forget(self, keys: Sequence[str]) -> list[str]:
        held = self._held
        mine = []
        for key in map(self._count_key, keys):
            count = held.get(key, 0)
            if count <= 0:
                continue  # not ours (or already released): ignored, as the protocol says
            mine.append(key)
            if count == 1:
                del held[key]
            else:
                held[key] = count - 1
        return mine

    def count(self, key: str) -> int:
        """This node's own count of `key` (the cluster-wide total is `total`)."""
        return self._held.get(self._count_key(key), 0)

    async def total(self, key: str, *, now: float | None = None) -> int:
        """Cluster-wide count of `key`: live nodes' fields only (tests, diagnostics)."""
        at = now if self.caller_clock else None
        server = await self.server_time() if at is None else at
        fields = await self.client.hgetall(self._count_key(key))  # type: ignore[misc]
        total = 0
        for owner, count in fields.items():
            expiry = await self.client.zscore(self._nodes, owner)
            if expiry is not None and expiry > server:
                total += int(count)
        return total

    async def server_time(self) -> float:
        """Redis's clock in the scripts' time scale."""
        seconds, micros = await self.client.time()
        return float((seconds - EPOCH) + micros / 1_000_000)

    async def restore(self, *, now: float | None = None) -> None:
        """Register this node: heartbeat plus its exact counts (see `restore.lua`)."""
        keys = list(self._held)
        args = [self._now(now), self.node, _arg(self.lease_ttl_seconds)]
        args += [str(self._held[k]) for k in keys]
        self._seen(await self._run("restore", [self._nodes, self._owned, *keys], args))
        self._dirty = False

    async def refresh(self, *, now: float | None = None) -> None:
        """One heartbeat (restoring when it had lapsed or state is unsure), a sweep of dead
        nodes, and a fresh `active_bans` snapshot."""
        if self._dirty:
            await self.restore(now=now)
        else:
            refreshed, server_now = await self._run(
                "refresh",
                [self._nodes],
                [
                    self._now(now),
                    self.node,
                    _arg(self.lease_ttl_seconds),
                    self.prefix,
                    str(MAX_SWEEP),
                ],
            )
            self._seen(server_now)
            if not int(refreshed):
                await self.restore(now=now)
        await self.load_bans(now)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this node and start the heartbeat task (Redis may be down: it retries)."""
        if self._refresher is not None:
            return
        with contextlib.suppress(Exception):
            await self.refresh()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        interval = self.lease_ttl_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
                if self._beat is not None:
                    self._beat.set()
                    self._beat = None
            except Exception as exc:
                self.refresh_failures += 1
                self._dirty = True
                log.warning("state store: lease refresh failed: %s: %s", type(exc).__name__, exc)

    async def next_heartbeat(self) -> None:
        """Wait until the background task's next successful heartbeat (tests, diagnostics)."""
        if self._beat is None:
            self._beat = asyncio.Event()
        await self._beat.wait()

    async def stop_refresher(self) -> None:
        """Stop the heartbeat without releasing anything (what a crash looks like to peers)."""
        task, self._refresher = self._refresher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self, *, retire: bool = True) -> None:
        """Stop the heartbeat; with `retire`, drop this node's counts now instead of after
        the lease expires; close the client."""
        await self.stop_refresher()
        if retire:
            try:
                await self._run("retire", [self._nodes, self._owned], [self.node])
                self._held.clear()
            except Exception as exc:
                log.warning("state store: could not retire leases: %s", exc)
        await self.client.aclose()

    @property
    def degraded(self) -> str | None:
        return None
