"""The validator's cluster rules, through the real pipeline: each verdict and its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.cli.validate import check_file
from engine.cluster import compat
from engine.cluster.options import BalancerNode, BalancerOptions, ClusterOptions
from engine.cluster.topology import Deployment, targets
from engine.errors import Diagnostic
from tests.cluster.support import profile_text

REDIS = {"adapter": "redis", "url": "redis://127.0.0.1:6379/0"}
TWO = [{"address": "10.0.0.11:8000"}, {"address": "10.0.0.12:8000"}]


def diagnose(
    tmp_path: Path, cluster: dict[str, Any] | None, server: dict[str, Any] | None = None
) -> list[Diagnostic]:
    path = tmp_path / "profile.toml"
    path.write_text(profile_text(cluster, server))
    return check_file(path, check_env=False, environ={})


def errors(found: list[Diagnostic]) -> list[tuple[str, str]]:
    return [(d.path, d.message) for d in found if d.severity == "error"]


def warnings(found: list[Diagnostic]) -> list[tuple[str, str]]:
    return [(d.path, d.message) for d in found if d.severity == "warning"]


def test_no_cluster_table_is_one_memory_process(tmp_path: Path) -> None:
    assert diagnose(tmp_path, None) == []


def test_redis_needs_a_url(tmp_path: Path) -> None:
    found = diagnose(tmp_path, {"adapter": "redis"})
    assert errors(found) == [("cluster", 'adapter = "redis" needs the Redis url')]


@pytest.mark.parametrize(
    "url",
    [
        "redis://10.0.0.5:6379/0",
        "rediss://redis.example.com:6380/1",
        "unix:///run/redis.sock",
        "redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/0/engine",
    ],
)
def test_redis_urls_the_library_takes(tmp_path: Path, url: str) -> None:
    assert errors(diagnose(tmp_path, {"adapter": "redis", "url": url})) == []


def test_other_schemes_are_refused_with_the_choices(tmp_path: Path) -> None:
    (diag,) = diagnose(tmp_path, {"adapter": "redis", "url": "http://10.0.0.5:6379"})
    assert diag.path == "cluster.url"
    assert diag.expected is not None
    assert "redis+sentinel://" in diag.expected
    assert diag.got == "'http://'"


def test_a_password_in_the_url_is_refused_and_not_repeated(tmp_path: Path) -> None:
    found = diagnose(tmp_path, {"adapter": "redis", "url": "redis://:hunter2@10.0.0.5:6379/0"})
    assert [d.path for d in found] == ["cluster.url"]
    assert "cluster.password" in (found[0].hint or "")
    assert "hunter2" not in found[0].render()


def test_a_password_in_redis_options_is_refused_and_not_repeated(tmp_path: Path) -> None:
    found = diagnose(tmp_path, {**REDIS, "redis_options": {"password": "hunter2"}})
    assert [d.path for d in found] == ["cluster.redis_options.password"]
    assert "hunter2" not in found[0].render()


def test_weights_need_the_weighted_strategy(tmp_path: Path) -> None:
    nodes = [{"address": "10.0.0.11:8000", "weight": 3}, {"address": "10.0.0.12:8000"}]
    balancer = {"strategy": "least_connections", "sticky": "cookie", "nodes": nodes}
    found = diagnose(tmp_path, {**REDIS, "balancer": balancer})
    assert errors(found) == [
        (
            "cluster.balancer.nodes[0].weight",
            "strategy 'least_connections' ignores node weights: every node gets an equal share",
        )
    ]
    balancer["strategy"] = "weighted"
    assert errors(diagnose(tmp_path, {**REDIS, "balancer": balancer})) == []


def test_weighted_without_weights_is_a_warning(tmp_path: Path) -> None:
    balancer = {"strategy": "weighted", "sticky": "cookie", "nodes": TWO}
    found = diagnose(tmp_path, {**REDIS, "balancer": balancer})
    assert warnings(found) == [
        ("cluster.balancer.strategy", 'strategy "weighted" without any node weight is round_robin')
    ]


def test_a_balancer_in_front_of_one_process_is_refused(tmp_path: Path) -> None:
    balancer = {"nodes": [{"address": "10.0.0.11:8000"}]}
    found = diagnose(tmp_path, {**REDIS, "balancer": balancer})
    assert errors(found) == [
        ("cluster.balancer", "a balancer in front of a single process balances nothing")
    ]
    websocket = {"workers": 2, "transports": ["websocket"]}
    assert errors(diagnose(tmp_path, {**REDIS, "balancer": balancer}, websocket)) == []


def test_polling_across_nodes_needs_affinity(tmp_path: Path) -> None:
    found = diagnose(tmp_path, {**REDIS, "balancer": {"nodes": TWO}})
    ((path, message),) = errors(found)
    assert path == "cluster.balancer.sticky"
    assert message.startswith("long-polling across 2 processes needs every request")
    for affine in ({"sticky": "cookie"}, {"sticky": "ip"}, {"strategy": "ip_hash"}):
        balancer = {"nodes": TWO, **affine}
        assert errors(diagnose(tmp_path, {**REDIS, "balancer": balancer})) == [], affine
    websocket_only = {"transports": ["websocket"]}
    assert errors(diagnose(tmp_path, {**REDIS, "balancer": {"nodes": TWO}}, websocket_only)) == []


def test_workers_with_polling_and_no_balancer_say_why(tmp_path: Path) -> None:
    found = diagnose(tmp_path, REDIS, {"workers": 4})
    ((path, message),) = errors(found)
    assert path == "server.workers"
    assert "the kernel picks one per TCP connection" in message
    hint = next(d.hint for d in found if d.severity == "error")
    assert hint is not None
    assert 'transports = ["websocket"]' in hint
    assert diagnose(tmp_path, REDIS, {"workers": 4, "transports": ["websocket"]}) == []


def test_workers_need_a_fixed_port_below_the_top(tmp_path: Path) -> None:
    server = {"workers": 2, "transports": ["websocket"], "port": 0}
    assert errors(diagnose(tmp_path, REDIS, server)) == [
        (
            "server.port",
            "several workers need a fixed port to share (0 picks a different free port in "
            "each process)",
        )
    ]
    balancer = {"sticky": "cookie"}
    found = diagnose(tmp_path, {**REDIS, "balancer": balancer}, {"workers": 4, "port": 65533})
    assert [p for p, _ in errors(found)] == ["server.workers"]


def test_balancer_timeout_must_outlast_a_ping_cycle(tmp_path: Path) -> None:
    balancer = {"sticky": "cookie", "nodes": TWO, "timeout_seconds": 45}
    found = diagnose(tmp_path, {**REDIS, "balancer": balancer})
    (diag,) = [d for d in found if d.severity == "error"]
    assert diag.path == "cluster.balancer.timeout_seconds"
    assert diag.expected == ("> server.ping_interval_seconds + server.ping_timeout_seconds (45)")
    balancer["timeout_seconds"] = 46
    assert errors(diagnose(tmp_path, {**REDIS, "balancer": balancer})) == []


def test_node_addresses_are_checked_not_crashed_on(tmp_path: Path) -> None:
    nodes = [
        {"address": "10.0.0.11:8000", "name": "a"},
        {"address": "10.0.0.11:8000", "name": "b"},
        {"address": "10.0.0.13:99999"},
    ]
    found = diagnose(tmp_path, {**REDIS, "balancer": {"sticky": "ip", "nodes": nodes}})
    assert [p for p, _ in errors(found)] == [
        "cluster.balancer.nodes[1].address",
        "cluster.balancer.nodes[2].address",
    ]


def test_schema_refuses_a_malformed_address(tmp_path: Path) -> None:
    found = diagnose(tmp_path, {"balancer": {"nodes": [{"address": "10.0.0.11"}]}})
    assert [(d.path, d.message) for d in found] == [
        ("cluster.balancer.nodes[0].address", "invalid format")
    ]


def test_memory_adapter_across_processes_warns(tmp_path: Path) -> None:
    found = diagnose(tmp_path, {"balancer": {"strategy": "ip_hash", "nodes": TWO}})
    assert errors(found) == []
    assert [p for p, _ in warnings(found)] == ["cluster.adapter"]


def test_redis_keys_with_the_memory_adapter_are_ignored_with_a_warning(tmp_path: Path) -> None:
    found = diagnose(tmp_path, {"url": "redis://10.0.0.5"})
    assert warnings(found) == [
        ("cluster.url", 'only used by adapter = "redis"; ignored with the memory adapter')
    ]


def test_balancer_not_a_trusted_proxy_warns(tmp_path: Path) -> None:
    cluster = {**REDIS, "balancer": {"sticky": "cookie", "nodes": TWO, "listen": "192.0.2.1:80"}}
    found = diagnose(tmp_path, cluster)
    assert warnings(found) == [
        ("server.trusted_proxies", "the balancer's address 192.0.2.1 is not a trusted proxy")
    ]
    (diag,) = diagnose(tmp_path, cluster, {"trusted_proxies": []})
    assert diag.message == "a balancer is declared but no proxy is trusted"
    assert "X-Forwarded-For" in (diag.hint or "")


def test_targets_expand_to_worker_ports_only_when_polling_needs_it() -> None:
    balancer = BalancerOptions(
        sticky="cookie", nodes=(BalancerNode("10.0.0.11:8000", "a"), BalancerNode("h:9000", "b"))
    )
    cluster = ClusterOptions(adapter="redis", url="redis://x", balancer=balancer)
    polling = Deployment(workers=2)
    assert [(t.name, t.address) for t in targets(cluster, polling)] == [
        ("a_w1", "10.0.0.11:8001"),
        ("a_w2", "10.0.0.11:8002"),
        ("b_w1", "h:9001"),
        ("b_w2", "h:9002"),
    ]
    websocket = Deployment(workers=2, transports=("websocket",))
    assert [t.address for t in targets(cluster, websocket)] == ["10.0.0.11:8000", "h:9000"]
    local = ClusterOptions(balancer=BalancerOptions(sticky="ip"))
    assert [t.address for t in targets(local, Deployment(host="0.0.0.0", workers=2))] == [
        "127.0.0.1:8001",
        "127.0.0.1:8002",
    ]
    assert compat.problems(local, Deployment(host="0.0.0.0", workers=2)) == [
        compat.Problem(
            ("cluster", "adapter"),
            '2 processes with adapter = "memory": emits, rooms and broadcasts reach only the '
            "clients of the emitting process",
            "warning",
            hint='use adapter = "redis"',
        ),
        compat.Problem(
            ("server", "trusted_proxies"),
            "a balancer is declared but no proxy is trusted",
            "warning",
            hint=compat.problems(local, Deployment(host="0.0.0.0", workers=2))[1].hint,
        ),
    ]
