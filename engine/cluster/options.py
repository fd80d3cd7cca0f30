"""Typed options of the ``[cluster]`` and ``[cluster.balancer]`` profile tables.

Pure data: no Redis client, no sockets. The broker runtime, the worker supervisor and
``engine lb-config`` all read these objects; only ``engine.profile.build`` constructs them,
from a schema-valid, default-filled mapping. The Redis password is excluded from ``repr``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "Adapter",
    "BalancerNode",
    "BalancerOptions",
    "ClusterOptions",
    "OnStoreError",
    "Sticky",
    "Strategy",
    "idle_timeout_seconds",
    "split_host_port",
]

Adapter = Literal["memory", "redis"]
OnStoreError = Literal["local", "deny"]
Strategy = Literal["round_robin", "least_connections", "ip_hash", "consistent_hash", "weighted"]
Sticky = Literal["none", "cookie", "ip"]

STRATEGIES: tuple[Strategy, ...] = (
    "round_robin",
    "least_connections",
    "ip_hash",
    "consistent_hash",
    "weighted",
)
STICKY: tuple[Sticky, ...] = ("none", "cookie", "ip")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises ValueError naming the problem."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{address!r}: write an IPv6 address in brackets, [addr]:port")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{address!r}: port must be 1-65535")
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def idle_timeout_seconds(ping_interval_seconds: float, ping_timeout_seconds: float) -> int:
    """Longest silence the balancer must tolerate: one ping cycle plus a margin.

    Engine.IO sends a ping every interval and waits `timeout` for the pong, so a healthy
    connection (or a held long-polling request) may be quiet for interval + timeout. The
    margin is a quarter of that, at least 5 seconds.
    """
    cycle = ping_interval_seconds + ping_timeout_seconds
    return math.ceil(cycle + max(5.0, cycle / 4))


@dataclass(frozen=True, slots=True)
class BalancerNode:
    """One engine process the balancer sends clients to.

    :param address: ``host:port`` of the node.
    :param name: server name in the balancer config, also the sticky cookie's value.
    :param weight: share of new clients under ``strategy = "weighted"``; None when unset.
    """

    address: str
    name: str
    weight: int | None = None

    @property
    def host(self) -> str:
        return split_host_port(self.address)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.address)[1]

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any], index: int) -> BalancerNode:
        """Build from one entry of ``[cluster.balancer].nodes`` (``index`` is 0-based).

        The address is not checked here: `engine.cluster.compat` reports a bad one.
        """
        return cls(
            address=str(mapping["address"]),
            name=str(mapping.get("name") or f"node{index + 1}"),
            weight=mapping.get("weight"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerOptions:
    """``[cluster.balancer]``: how a reverse proxy in front of the engine spreads clients.

    :param strategy: how a new client picks a node.
    :param sticky: how later requests of one client find the same node again.
    :param nodes: the engine nodes; empty means this host (see ``targets``).
    :param listen: ``host:port`` the balancer listens on.
    :param cookie_name: the cookie ``sticky = "cookie"`` inserts.
    :param timeout_seconds: idle timeout of client, server and WebSocket tunnel; None derives
        it from the ping settings (``idle_timeout_seconds``).
    :param connect_timeout_seconds: time to open a connection to a node.
    :param check_interval_seconds: seconds between two ``GET /readyz`` of a node.
    :param check_fall: failed checks before a node stops receiving clients.
    :param check_rise: passed checks before it receives clients again.
    """

    strategy: Strategy = "round_robin"
    sticky: Sticky = "none"
    nodes: tuple[BalancerNode, ...] = ()
    listen: str = "0.0.0.0:80"
    cookie_name: str = "engine_node"
    timeout_seconds: float | None = None
    connect_timeout_seconds: float = 5.0
    check_interval_seconds: float = 2.0
    check_fall: int = 3
    check_rise: int = 2

    @property
    def weighted(self) -> bool:
        return any(node.weight is not None for node in self.nodes)

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> BalancerOptions:
        """Build from ``[cluster.balancer]`` (schema-valid, defaults filled)."""
        timeout = mapping.get("timeout_seconds")
        nodes = mapping.get("nodes", [])
        return cls(
            strategy=mapping.get("strategy", "round_robin"),
            sticky=mapping.get("sticky", "none"),
            nodes=tuple(BalancerNode.from_profile(node, i) for i, node in enumerate(nodes)),
            listen=str(mapping.get("listen", "0.0.0.0:80")),
            cookie_name=str(mapping.get("cookie_name", "engine_node")),
            timeout_seconds=float(timeout) if timeout is not None else None,
            connect_timeout_seconds=float(mapping.get("connect_timeout_seconds", 5.0)),
            check_interval_seconds=float(mapping.get("check_interval_seconds", 2.0)),
            check_fall=int(mapping.get("check_fall", 3)),
            check_rise=int(mapping.get("check_rise", 2)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterOptions:
    """``[cluster]``: the message broker that joins engine processes into one cluster.

    :param adapter: ``memory`` (one process) or ``redis`` (python-socketio's
        ``AsyncRedisManager``).
    :param url: Redis URL (``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://``);
        never carries the password.
    :param password: Redis password; secret, kept out of ``repr``.
    :param channel: pub/sub channel shared by the nodes of one cluster.
    :param redis_options: extra keyword arguments for ``Redis.from_url()`` / ``Sentinel()``.
    :param on_store_error: when Redis is unreachable, policies fall back to per-node state
        (``local``) or refuse (``deny``).
    :param node_id: this node's name in the cluster; None lets the runtime pick one.
    :param probe_interval_seconds: seconds between two liveness probes (``redis``).
    :param probe_timeout_seconds: a probe not back within this is a broker problem.
    :param balancer: ``[cluster.balancer]``, or None when not declared.
    """

    adapter: Adapter = "memory"
    url: str | None = None
    password: str | None = field(default=None, repr=False)
    channel: str = "socketio"
    redis_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    on_store_error: OnStoreError = "local"
    node_id: str | None = None
    probe_interval_seconds: float = 1.0
    probe_timeout_seconds: float = 3.0
    balancer: BalancerOptions | None = None

    @property
    def sentinels(self) -> tuple[tuple[str, int], ...]:
        """The Sentinel addresses of a ``redis+sentinel://`` URL, else empty."""
        if self.url is None or not self.url.startswith("redis+sentinel://"):
            return ()
        netloc = urlsplit(self.url).netloc.rpartition("@")[2]
        return tuple(split_host_port(part) for part in netloc.split(",") if part)

    def connection_options(self) -> dict[str, Any]:
        """Keyword arguments for the Redis client: ``redis_options`` plus the password."""
        options = dict(self.redis_options)
        if self.password is not None:
            options["password"] = self.password
        return options

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> ClusterOptions:
        """Build from ``[cluster]`` (schema-valid, defaults filled)."""
        balancer = mapping.get("balancer")
        return cls(
            adapter=mapping.get("adapter", "memory"),
            url=mapping.get("url"),
            password=mapping.get("password"),
            channel=str(mapping.get("channel", "socketio")),
            redis_options=MappingProxyType(dict(mapping.get("redis_options", {}))),
            on_store_error=mapping.get("on_store_error", "local"),
            node_id=mapping.get("node_id"),
            probe_interval_seconds=float(mapping.get("probe_interval_seconds", 1.0)),
            probe_timeout_seconds=float(mapping.get("probe_timeout_seconds", 3.0)),
            balancer=BalancerOptions.from_profile(balancer) if balancer is not None else None,
        )
