"""HAProxy (2.4+) configuration: HTTP mode, WebSocket upgrade, `/readyz` checks, stickiness."""

from __future__ import annotations

from engine.cluster.lbconfig import FORMATS, LbPlan, duration, header
from engine.cluster.lbconfig.strategies import HAPROXY

__all__ = ["render"]


@FORMATS.register("haproxy")
def render(lb: LbPlan) -> str:
    """A complete haproxy.cfg for the plan."""
    balancer = lb.balancer
    idle = duration(lb.idle_timeout_seconds)
    expression = HAPROXY[balancer.strategy]
    lines = [
        *header(lb, "haproxy"),
        "# Check it with: haproxy -c -f haproxy.cfg",
        "",
        "global",
        "    log stdout format raw local0 info",
        "    # what the engines behind admit in total; each needs ~2 file descriptors (ulimit -n)",
        f"    maxconn {lb.maxconn}",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    # the engine believes X-Forwarded-For only from server.trusted_proxies",
        "    option forwardfor",
        "    # a node that refuses a connection: retry, then send the client elsewhere",
        "    option redispatch",
        "    retries 3",
        f"    timeout connect {duration(balancer.connect_timeout_seconds)}",
        f"    timeout client {idle}",
        f"    timeout server {idle}",
        "    # WebSocket: HTTP mode handles the Upgrade natively; this is its idle timeout",
        f"    timeout tunnel {idle}",
        "    timeout http-request 10s",
        "    timeout queue 10s",
        "",
        "frontend engine",
        f"    bind {lb.listen}",
        "    default_backend engine_nodes",
        "",
        "backend engine_nodes",
        *(f"    {line}" for line in expression.lines),
        "    # a node is ready when GET /readyz answers 200; a draining node answers 503",
        "    # and stops receiving clients",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
    ]
    if balancer.sticky == "cookie":
        lines += [
            "    # long-polling: every request of a client goes to the node that served its",
            "    # handshake (python-engineio sets no cookie of its own)",
            f"    cookie {balancer.cookie_name} insert indirect nocache httponly",
        ]
    elif balancer.sticky == "ip":
        lines += [
            "    # long-polling: a client address keeps the node its first request went to",
            f"    stick-table type ipv6 size 1m expire {_stick_expiry(lb)}",
            "    stick on src",
        ]
    lines += [
        "    # init-addr: a node whose name does not resolve at start does not stop HAProxy",
        f"    default-server check inter {duration(balancer.check_interval_seconds)} "
        f"fall {balancer.check_fall} rise {balancer.check_rise} init-addr last,libc,none",
    ]
    for node in lb.targets:
        line = f"    server {node.name} {node.address}"
        if balancer.sticky == "cookie":
            line += f" cookie {node.name}"
        if expression.weights:
            line += f" weight {node.weight or 1}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _stick_expiry(lb: LbPlan) -> str:
    """Keep an address's node for a while after its last request (at least 30 minutes)."""
    return duration(max(1800.0, lb.idle_timeout_seconds * 4))
