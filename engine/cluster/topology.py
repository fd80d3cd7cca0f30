"""Which processes a balancer sends clients to: nodes, and the workers on each node.

Rule (documented in the README): ``[server] workers = N`` starts N processes that share the
node's port with SO_REUSEPORT, and worker ``i`` (1..N) also listens on its own port
``port + i``. The kernel spreads *TCP connections* over the shared port, so it cannot keep
the requests of one long-polling client on one worker; a balancer that must (polling on and
more than one worker) therefore targets the worker ports, and everything else the shared port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.cluster.options import BalancerNode, ClusterOptions, join_host_port

__all__ = ["Deployment", "targets", "worker_ports"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """The ``[server]`` settings the cluster rules depend on."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    transports: tuple[str, ...] = ("polling", "websocket")
    ping_interval_seconds: float = 25.0
    ping_timeout_seconds: float = 20.0
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def polling(self) -> bool:
        return "polling" in self.transports

    @property
    def local_address(self) -> str:
        """This node as seen from a balancer on the same host."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return join_host_port(host, self.port)

    @classmethod
    def from_profile(cls, server: Mapping[str, Any]) -> Deployment:
        """Build from a default-filled ``[server]`` table; invalid proxy CIDRs are skipped."""
        networks: list[Network] = []
        for cidr in server.get("trusted_proxies", []):
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                continue  # reported by check_server
        return cls(
            host=str(server.get("host", "127.0.0.1")),
            port=int(server.get("port", 8000)),
            workers=int(server.get("workers", 1)),
            transports=tuple(server.get("transports", ("polling", "websocket"))),
            ping_interval_seconds=float(server.get("ping_interval_seconds", 25)),
            ping_timeout_seconds=float(server.get("ping_timeout_seconds", 20)),
            trusted_proxies=tuple(networks),
        )


def worker_ports(port: int, workers: int) -> tuple[int, ...]:
    """The private ports of workers 1..N of a node whose shared port is `port`."""
    return tuple(port + i for i in range(1, workers + 1))


def per_worker(deployment: Deployment) -> bool:
    """Whether the balancer must address each worker (polling with several workers)."""
    return deployment.workers > 1 and deployment.polling


def targets(cluster: ClusterOptions, deployment: Deployment) -> tuple[BalancerNode, ...]:
    """The servers of the balancer's backend, in order.

    Declared nodes, or this host when none are declared; each expanded into its worker ports
    when the balancer must address workers (`per_worker`). Addresses must be valid.
    """
    balancer = cluster.balancer
    declared = balancer.nodes if balancer is not None else ()
    nodes = declared or (BalancerNode(address=deployment.local_address, name="local"),)
    if not per_worker(deployment):
        return nodes
    out: list[BalancerNode] = []
    for node in nodes:
        for index, port in enumerate(worker_ports(node.port, deployment.workers), start=1):
            out.append(
                BalancerNode(
                    address=join_host_port(node.host, port),
                    name=f"{node.name}_w{index}",
                    weight=node.weight,
                )
            )
    return tuple(out)


def process_count(cluster: ClusterOptions, deployment: Deployment) -> int:
    """How many engine processes the profile describes (nodes x workers)."""
    balancer = cluster.balancer
    nodes = len(balancer.nodes) if balancer is not None and balancer.nodes else 1
    return nodes * deployment.workers
