"""Hypothesis: on random [cluster] / [cluster.balancer] / [server] combinations the validator's
verdict equals a reference table of what can work, and every accepted balancer renders a
configuration that `haproxy -c` accepts."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.cli.validate import check_file
from engine.cluster.lbconfig import plan, render
from engine.cluster.options import STICKY, STRATEGIES
from engine.profile.build import build
from engine.profile.validate import resolve
from tests.cluster.support import binary, haproxy_check, profile_text

TRANSPORTS = (["websocket"], ["polling", "websocket"], ["polling"])


@dataclass(frozen=True)
class Combo:
    adapter: str
    url: bool
    balancer: bool
    strategy: str
    sticky: str
    nodes: int
    weights: bool
    workers: int
    transports: tuple[str, ...]
    timeout: str  # "unset" | "short" | "long"


@st.composite
def combos(draw: st.DrawFn) -> Combo:
    """A cluster setup drawn from every key the rules read."""
    balancer = draw(st.booleans())
    nodes = draw(st.integers(0, 3)) if balancer else 0
    return Combo(
        adapter=draw(st.sampled_from(["memory", "redis"])),
        url=draw(st.booleans()),
        balancer=balancer,
        strategy=draw(st.sampled_from(STRATEGIES)),
        sticky=draw(st.sampled_from(STICKY)),
        nodes=nodes,
        weights=nodes > 0 and draw(st.booleans()),
        workers=draw(st.integers(1, 3)),
        transports=tuple(draw(st.sampled_from(TRANSPORTS))),
        timeout=draw(st.sampled_from(["unset", "short", "long"])) if balancer else "unset",
    )


def can_work(c: Combo) -> bool:
    """The reference table, written independently of engine.cluster.compat."""
    if c.adapter == "redis" and not c.url:
        return False
    if c.weights and c.strategy != "weighted":
        return False
    processes = max(c.nodes, 1) * c.workers
    if c.balancer and processes == 1:
        return False
    affine = c.balancer and (c.sticky != "none" or c.strategy in ("ip_hash", "consistent_hash"))
    if processes > 1 and "polling" in c.transports and not affine:
        return False
    return c.timeout != "short"


def document(c: Combo) -> tuple[dict[str, Any], dict[str, Any]]:
    cluster: dict[str, Any] = {"adapter": c.adapter}
    if c.url:
        cluster["url"] = "redis://127.0.0.1:6379/0"
    if c.balancer:
        nodes: list[dict[str, Any]] = [
            {"address": f"10.0.0.{10 + i}:8000", **({"weight": i + 1} if c.weights else {})}
            for i in range(c.nodes)
        ]
        balancer: dict[str, Any] = {"strategy": c.strategy, "sticky": c.sticky, "nodes": nodes}
        if c.timeout != "unset":
            balancer["timeout_seconds"] = {"short": 30, "long": 60}[c.timeout]
        cluster["balancer"] = balancer
    server = {"workers": c.workers, "transports": list(c.transports)}
    return cluster, server


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(combos())
def test_verdict_matches_the_reference_and_accepted_configs_pass_haproxy(c: Combo) -> None:
    binary("haproxy")
    cluster, server = document(c)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.toml"
        path.write_text(profile_text(cluster, server))
        found = check_file(path, check_env=False, environ={})
        accepted = not any(d.severity == "error" for d in found)
        assert accepted == can_work(c), [d.render() for d in found]
        event("accepted" if accepted else "rejected")
        if not (accepted and c.balancer):
            return
        config = render("haproxy", plan(build(resolve(path, {}))))
        checked = haproxy_check(config, Path(tmp))
        event("rendered and checked")
        assert checked.returncode == 0, checked.stdout + checked.stderr
