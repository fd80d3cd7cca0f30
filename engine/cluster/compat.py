"""What can work: the rules a ``[cluster]`` / ``[cluster.balancer]`` / ``[server] workers``
combination must satisfy, each with its reason. Pure: no I/O, no profile loading.

`problems()` returns every problem at once; `engine.profile.checks.check_cluster` turns them
into located diagnostics. Errors are combinations that cannot work; warnings are legal but
probably not what was meant (fatal under ``--strict``).

| rule | verdict |
|---|---|
| ``adapter = "redis"`` without ``url`` | error |
| ``url`` not ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` | error |
| a password inside ``url`` or ``redis_options`` (use the secret ``password``) | error |
| ``probe_timeout_seconds`` <= ``probe_interval_seconds`` | error |
| node weights with a strategy other than ``weighted`` | error |
| a balancer in front of one process (one node, ``workers = 1``) | error |
| several processes, polling on, and no affinity (``sticky`` or an IP-hash strategy) | error |
| ``workers > 1`` with ``port = 0`` or worker ports above 65535 | error |
| balancer ``timeout_seconds`` <= ping interval + ping timeout | error |
| duplicate node addresses or names | error |
| ``adapter = "memory"`` with several processes (rooms and broadcasts stay per process) | warning |
| Redis keys set with ``adapter = "memory"`` (ignored) | warning |
| ``strategy = "weighted"`` without any weight | warning |
| the balancer's address not in ``server.trusted_proxies`` | warning |
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from engine.cluster.options import (
    REDIS_SCHEMES,
    ClusterOptions,
    split_host_port,
)
from engine.cluster.topology import Deployment, per_worker, process_count, worker_ports

__all__ = ["AFFINE_STRATEGIES", "Problem", "affinity", "problems"]

Path = tuple[str | int, ...]

# Strategies that already send one client address to one node: affinity without `sticky`.
AFFINE_STRATEGIES = frozenset({"ip_hash", "consistent_hash"})
REDIS_ONLY_KEYS = ("url", "password", "redis_options")


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken or risky combination, located at a profile key path."""

    path: Path
    message: str
    severity: Literal["error", "warning"] = "error"
    expected: str | None = None
    got: str | None = None
    hint: str | None = None


def affinity(cluster: ClusterOptions) -> bool:
    """Whether the balancer sends every request of one client to the same target."""
    balancer = cluster.balancer
    if balancer is None:
        return False
    return balancer.sticky != "none" or balancer.strategy in AFFINE_STRATEGIES


def problems(
    cluster: ClusterOptions, deployment: Deployment, *, declared: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Every problem of the combination; `declared` is the raw ``[cluster]`` table, used
    only to tell keys the user wrote from defaults."""
    raw = declared or {}
    out = _broker(cluster, raw)
    out += _balancer_shape(cluster)
    if any(p.path[-1] in ("address", "listen") and p.severity == "error" for p in out):
        return out  # the rules below read node and listen addresses
    out += _processes(cluster, deployment)
    out += _timeouts(cluster, deployment)
    out += _proxies(cluster, deployment)
    return out


def _broker(cluster: ClusterOptions, raw: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if cluster.adapter == "memory":
        for key in REDIS_ONLY_KEYS:
            if key in raw:
                out.append(
                    Problem(
                        ("cluster", key),
                        'only used by adapter = "redis"; ignored with the memory adapter',
                        "warning",
                    )
                )
        return out
    if cluster.url is None:
        out.append(
            Problem(
                ("cluster",),
                'adapter = "redis" needs the Redis url',
                hint='add url = "redis://host:6379/0" (or "${REDIS_URL}")',
            )
        )
    else:
        parts = urlsplit(cluster.url)
        if parts.scheme not in REDIS_SCHEMES:
            out.append(
                Problem(
                    ("cluster", "url"),
                    "not a Redis URL python-socketio can use",
                    expected="a URL starting with " + ", ".join(f"{s}://" for s in REDIS_SCHEMES),
                    got=repr(parts.scheme + "://" if parts.scheme else "no scheme"),
                )
            )
        elif "@" in parts.netloc and ":" in parts.netloc.rpartition("@")[0]:
            out.append(
                Problem(
                    ("cluster", "url"),
                    "the URL contains a password, which would be shown by engine show and in logs",
                    hint="move it to cluster.password (a secret; ${VAR} works there too)",
                )
            )
        elif parts.scheme == "redis+sentinel":
            hosts = parts.netloc.rpartition("@")[2].split(",")
            for host in hosts:
                try:
                    split_host_port(host)
                except ValueError:
                    out.append(
                        Problem(
                            ("cluster", "url"),
                            "a Sentinel URL lists host:port pairs separated by commas",
                            expected="redis+sentinel://host1:26379,host2:26379/0/service_name",
                        )
                    )
                    break
    if cluster.probe_timeout_seconds <= cluster.probe_interval_seconds:
        out.append(
            Problem(
                ("cluster", "probe_timeout_seconds"),
                "every probe would be late: the timeout must exceed the interval between probes",
                expected=f"> probe_interval_seconds ({cluster.probe_interval_seconds:g})",
                got=f"{cluster.probe_timeout_seconds:g}",
            )
        )
    if "password" in cluster.redis_options:
        out.append(
            Problem(
                ("cluster", "redis_options", "password"),
                "a password in redis_options would be shown by engine show and in logs",
                hint="use cluster.password (a secret)",
            )
        )
    return out


def _balancer_shape(cluster: ClusterOptions) -> list[Problem]:
    balancer = cluster.balancer
    if balancer is None:
        return []
    out: list[Problem] = []
    base: Path = ("cluster", "balancer")
    seen_addresses: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for index, node in enumerate(balancer.nodes):
        try:
            host, port = split_host_port(node.address)
        except ValueError as exc:
            out.append(
                Problem(
                    (*base, "nodes", index, "address"),
                    f"invalid node address: {exc}",
                    expected="host:port or [ipv6]:port",
                )
            )
            continue
        key = f"{host.lower()}:{port}"
        if key in seen_addresses:
            out.append(
                Problem(
                    (*base, "nodes", index, "address"),
                    f"duplicate node address (also nodes[{seen_addresses[key]}])",
                    got=repr(node.address),
                )
            )
        seen_addresses.setdefault(key, index)
        if node.name in seen_names:
            out.append(
                Problem(
                    (*base, "nodes", index, "name"),
                    f"duplicate node name (also nodes[{seen_names[node.name]}])",
                    got=repr(node.name),
                )
            )
        seen_names.setdefault(node.name, index)
    try:
        split_host_port(balancer.listen)
    except ValueError as exc:
        out.append(Problem((*base, "listen"), f"invalid listen address: {exc}"))
    if balancer.strategy != "weighted":
        for index, node in enumerate(balancer.nodes):
            if node.weight is not None:
                out.append(
                    Problem(
                        (*base, "nodes", index, "weight"),
                        f"strategy {balancer.strategy!r} ignores node weights: every node "
                        "gets an equal share",
                        hint='use strategy = "weighted" or remove the weights',
                    )
                )
                break
    elif not balancer.weighted:
        out.append(
            Problem(
                (*base, "strategy"),
                'strategy "weighted" without any node weight is round_robin',
                "warning",
                hint="give nodes a weight",
            )
        )
    return out


def _processes(cluster: ClusterOptions, deployment: Deployment) -> list[Problem]:
    out: list[Problem] = []
    balancer = cluster.balancer
    processes = process_count(cluster, deployment)
    if deployment.workers > 1:
        if deployment.port == 0:
            out.append(
                Problem(
                    ("server", "port"),
                    "several workers need a fixed port to share (0 picks a different free "
                    "port in each process)",
                    expected="a port 1-65535",
                    got="0",
                )
            )
        elif per_worker(deployment):
            ports = [deployment.port]
            if balancer is not None:
                ports += [n.port for n in balancer.nodes]
            top = max(max(worker_ports(p, deployment.workers)) for p in ports)
            if top > 65535:
                out.append(
                    Problem(
                        ("server", "workers"),
                        "worker i also listens on port + i so a balancer can keep a polling "
                        "client on one worker; those ports run past 65535",
                        got=str(top),
                    )
                )
    if balancer is not None and processes == 1:
        out.append(
            Problem(
                ("cluster", "balancer"),
                "a balancer in front of a single process balances nothing",
                hint="declare at least two nodes, or [server] workers > 1",
            )
        )
    if processes > 1 and deployment.polling and not affinity(cluster):
        if balancer is None:
            where: Path = ("server", "workers")
            reason = (
                f"{processes} processes share the port, and the kernel picks one per TCP "
                "connection, so the requests of one long-polling client reach different "
                "processes, which do not know its session"
            )
        else:
            where = ("cluster", "balancer", "sticky")
            reason = (
                f"long-polling across {processes} processes needs every request of a client "
                f"on the same process, and strategy {balancer.strategy!r} with sticky = "
                "'none' spreads them"
            )
        out.append(
            Problem(
                where,
                reason,
                hint='set [cluster.balancer] sticky = "cookie" or "ip" (or strategy = '
                '"ip_hash"), or make the transports websocket-only: transports = ["websocket"]',
            )
        )
    if processes > 1 and cluster.adapter == "memory":
        out.append(
            Problem(
                ("cluster", "adapter"),
                f'{processes} processes with adapter = "memory": emits, rooms and broadcasts '
                "reach only the clients of the emitting process",
                "warning",
                hint='use adapter = "redis"',
            )
        )
    return out


def _timeouts(cluster: ClusterOptions, deployment: Deployment) -> list[Problem]:
    balancer = cluster.balancer
    if balancer is None or balancer.timeout_seconds is None:
        return []
    cycle = deployment.ping_interval_seconds + deployment.ping_timeout_seconds
    if balancer.timeout_seconds > cycle:
        return []
    return [
        Problem(
            ("cluster", "balancer", "timeout_seconds"),
            "the balancer would close healthy idle connections: a connection may be silent "
            "for a ping interval plus a ping timeout",
            expected=f"> server.ping_interval_seconds + server.ping_timeout_seconds ({cycle:g})",
            got=f"{balancer.timeout_seconds:g}",
            hint="or leave it unset to derive it from the ping settings",
        )
    ]


def balancer_sources(cluster: ClusterOptions, deployment: Deployment) -> tuple[str, ...]:
    """Addresses the engine may see the balancer connect from, as far as the profile tells:
    the listen address when it is a concrete IP, and loopback when a target is local."""
    balancer = cluster.balancer
    if balancer is None:
        return ()
    found: list[str] = []
    try:
        listen_ip = ipaddress.ip_address(split_host_port(balancer.listen)[0])
    except ValueError:
        listen_ip = None
    if listen_ip is not None and not listen_ip.is_unspecified:
        found.append(str(listen_ip))
    nodes = balancer.nodes or ()
    hosts = [n.host for n in nodes] or [split_host_port(deployment.local_address)[0]]
    for node_host in hosts:
        if node_host == "localhost":
            node_host = "127.0.0.1"
        try:
            ip = ipaddress.ip_address(node_host)
        except ValueError:
            continue
        if ip.is_loopback and str(ip) not in found:
            found.append(str(ip))
    return tuple(found)


def _proxies(cluster: ClusterOptions, deployment: Deployment) -> list[Problem]:
    if cluster.balancer is None:
        return []
    hint = (
        "the engine believes X-Forwarded-For only from server.trusted_proxies; without the "
        "balancer there, every client seems to come from the balancer, and per-IP limits "
        "and bans hit all of them at once"
    )
    if not deployment.trusted_proxies:
        return [
            Problem(
                ("server", "trusted_proxies"),
                "a balancer is declared but no proxy is trusted",
                "warning",
                hint=hint,
            )
        ]
    missing = [
        source
        for source in balancer_sources(cluster, deployment)
        if not any(ipaddress.ip_address(source) in net for net in deployment.trusted_proxies)
    ]
    if not missing:
        return []
    return [
        Problem(
            ("server", "trusted_proxies"),
            f"the balancer's address {', '.join(missing)} is not a trusted proxy",
            "warning",
            hint=hint,
        )
    ]
