"""How each `[cluster.balancer]` strategy and stickiness is written in each balancer's
language: one table, read by the format modules. A format that cannot express a combination
raises `Unsupported`, whose message says why and what to do instead.

Strategies (HAProxy / nginx open source):

- round_robin: ``balance roundrobin`` / nginx's default round robin
- least_connections: ``balance leastconn`` / ``least_conn``
- ip_hash: ``balance source`` + ``hash-type map-based`` / ``ip_hash``
- consistent_hash: ``balance source`` + ``hash-type consistent`` /
  ``hash $remote_addr consistent``
- weighted: ``balance roundrobin`` + ``weight N`` per server / round robin + ``weight=N``

Stickiness (HAProxy / nginx open source):

- cookie: ``cookie NAME insert indirect nocache httponly`` + ``cookie <node>`` per server /
  not expressible (``sticky cookie`` is nginx Plus)
- ip: ``stick-table type ipv6`` + ``stick on src``, the strategy still picks the first node /
  only as the strategy itself: ``ip_hash`` or ``consistent_hash``
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.cluster.options import Sticky, Strategy

__all__ = ["HAPROXY", "NGINX", "Expression", "Unsupported"]


class Unsupported(Exception):
    """A format cannot express what the profile declares; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Expression:
    """The lines a format writes for one strategy (``lines``) and whether servers carry their
    weight (``weights``)."""

    lines: tuple[str, ...]
    weights: bool = False


HAPROXY: dict[Strategy, Expression] = {
    "round_robin": Expression(("balance roundrobin",)),
    "least_connections": Expression(("balance leastconn",)),
    "ip_hash": Expression(("balance source", "hash-type map-based")),
    "consistent_hash": Expression(("balance source", "hash-type consistent")),
    "weighted": Expression(("balance roundrobin",), weights=True),
}

NGINX: dict[Strategy, Expression] = {
    "round_robin": Expression(()),
    "least_connections": Expression(("least_conn;",)),
    "ip_hash": Expression(("ip_hash;",)),
    "consistent_hash": Expression(("hash $remote_addr consistent;",)),
    "weighted": Expression((), weights=True),
}

# nginx strategies that already keep one client address on one node.
NGINX_IP_AFFINE: frozenset[Strategy] = frozenset({"ip_hash", "consistent_hash"})


def nginx_strategy(strategy: Strategy, sticky: Sticky) -> Expression:
    """The nginx upstream lines for a strategy and stickiness, or `Unsupported`."""
    if sticky == "cookie":
        raise Unsupported(
            'nginx (open source) cannot do sticky = "cookie": cookie stickiness is nginx Plus '
            '(`sticky cookie`); use --format haproxy, or sticky = "ip" with strategy = '
            '"ip_hash" or "consistent_hash"'
        )
    if sticky == "ip" and strategy not in NGINX_IP_AFFINE:
        raise Unsupported(
            f'nginx cannot combine sticky = "ip" with strategy = "{strategy}": an nginx '
            "upstream has one balancing method, and IP stickiness is that method; use "
            'strategy = "ip_hash" or "consistent_hash", or --format haproxy'
        )
    return NGINX[strategy]
