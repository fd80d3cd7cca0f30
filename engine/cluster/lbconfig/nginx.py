"""nginx (open source, 1.18+) configuration: a complete nginx.conf with an upstream, the
WebSocket upgrade `map`, timeouts and passive health checks."""

from __future__ import annotations

from engine.cluster.lbconfig import FORMATS, LbPlan, duration, header
from engine.cluster.lbconfig.strategies import nginx_strategy

__all__ = ["render"]


@FORMATS.register("nginx")
def render(lb: LbPlan) -> str:
    """A complete nginx.conf for the plan; raises `Unsupported` for cookie stickiness, and for
    IP stickiness with a strategy that is not itself an IP hash."""
    balancer = lb.balancer
    expression = nginx_strategy(balancer.strategy, balancer.sticky)
    idle = duration(lb.idle_timeout_seconds)
    lines = [
        *header(lb, "nginx"),
        "# Check it with: nginx -t -c $PWD/nginx.conf",
        "# Health: open-source nginx has no active health checks, so GET /readyz is not",
        "# polled and a draining node keeps receiving clients until it refuses them; a node",
        f"# whose requests fail {balancer.check_fall} times is left out for "
        f"{lb.fail_timeout_seconds}s (max_fails, fail_timeout).",
        "# Node host names are resolved once, when nginx starts: one that does not resolve",
        "# stops nginx (HAProxy starts anyway).",
        "",
        "worker_processes auto;",
        "",
        "events {",
        "    worker_connections 4096;",
        "}",
        "",
        "http {",
        "    # WebSocket: pass Upgrade on; plain requests keep upstream connections alive",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        ''      '';",
        "    }",
        "",
        "    upstream engine_nodes {",
        *(f"        {line}" for line in expression.lines),
    ]
    for node in lb.targets:
        line = f"        server {node.address}"
        if expression.weights:
            line += f" weight={node.weight or 1}"
        line += f" max_fails={balancer.check_fall} fail_timeout={lb.fail_timeout_seconds}s;"
        lines.append(line + f"  # {node.name}")
    lines += [
        "        keepalive 32;",
        "    }",
        "",
        "    server {",
        f"        listen {lb.listen};",
        "",
        "        location / {",
        "            proxy_pass http://engine_nodes;",
        "            proxy_http_version 1.1;",
        "            proxy_set_header Upgrade $http_upgrade;",
        "            proxy_set_header Connection $connection_upgrade;",
        "            proxy_set_header Host $host;",
        "            # the engine believes X-Forwarded-For only from server.trusted_proxies",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        f"            proxy_connect_timeout {duration(balancer.connect_timeout_seconds)};",
        f"            proxy_read_timeout {idle};",
        f"            proxy_send_timeout {idle};",
        "            # long-polling responses go out as soon as the engine writes them",
        "            proxy_buffering off;",
        "            proxy_next_upstream error timeout http_502 http_503;",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"
