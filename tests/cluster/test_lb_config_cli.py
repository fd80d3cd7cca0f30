"""`engine lb-config`: exit codes, secrets, and every strategy checked by the real binaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.cluster.lbconfig.strategies import HAPROXY, NGINX
from engine.cluster.options import STICKY, STRATEGIES
from tests.cluster.support import haproxy_check, nginx_check, profile_text

SECRET = "s3cret-redis-password"
NODES = [
    {"address": "10.0.0.11:8000", "name": "east"},
    {"address": "[fd00::12]:8000"},
    {"address": "node3.internal.invalid:8000"},
]


def write(tmp_path: Path, balancer: dict[str, Any] | None, **server: Any) -> Path:
    cluster: dict[str, Any] = {
        "adapter": "redis",
        "url": "redis://10.0.0.5:6379/0",
        "password": SECRET,
    }
    if balancer is not None:
        cluster["balancer"] = balancer
    path = tmp_path / "profile.toml"
    path.write_text(profile_text(cluster, server))
    return path


def lb_config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["lb-config", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_strategy_has_a_row_per_format() -> None:
    assert set(HAPROXY) == set(STRATEGIES) == set(NGINX)


def test_haproxy_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"strategy": "least_connections", "sticky": "cookie", "nodes": NODES})
    code, out, err = lb_config(capsys, str(path), "--format", "haproxy", "--listen", "[::]:8443")
    assert (code, err) == (0, "")
    lines = [line.strip() for line in out.splitlines()]
    for expected in (
        "bind [::]:8443",
        "balance leastconn",
        "option forwardfor",
        "option httpchk GET /readyz",
        "http-check expect status 200",
        "cookie engine_node insert indirect nocache httponly",
        "default-server check inter 2s fall 3 rise 2 init-addr last,libc,none",
        "timeout client 57s",
        "timeout server 57s",
        "timeout tunnel 57s",
        "server east 10.0.0.11:8000 cookie east",
        "server node2 [fd00::12]:8000 cookie node2",
        "server node3 node3.internal.invalid:8000 cookie node3",
    ):
        assert expected in lines, expected
    assert SECRET not in out
    assert "10.0.0.5:6379" not in out
    checked = haproxy_check(out, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_nginx_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [{"address": "10.0.0.11:8000"}, {"address": "10.0.0.12:8000"}]
    path = write(tmp_path, {"strategy": "consistent_hash", "sticky": "ip", "nodes": nodes})
    code, out, err = lb_config(capsys, str(path), "--format", "nginx", "--listen", "127.0.0.1:1")
    assert (code, err) == (0, "")
    lines = [line.strip() for line in out.splitlines()]
    for expected in (
        "listen 127.0.0.1:1;",
        "hash $remote_addr consistent;",
        "server 10.0.0.11:8000 max_fails=3 fail_timeout=6s;  # node1",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_read_timeout 57s;",
        "proxy_send_timeout 57s;",
    ):
        assert expected in lines, expected
    assert "no active health checks" in out
    assert SECRET not in out
    checked = nginx_check(out, tmp_path)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("balancer", "reason"),
    [
        ({"sticky": "cookie"}, 'nginx (open source) cannot do sticky = "cookie"'),
        (
            {"sticky": "ip", "strategy": "least_connections"},
            'nginx cannot combine sticky = "ip" with strategy = "least_connections"',
        ),
    ],
)
def test_nginx_refuses_what_it_cannot_express(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], balancer: dict[str, Any], reason: str
) -> None:
    path = write(tmp_path, {**balancer, "nodes": NODES[:2]})
    code, out, err = lb_config(capsys, str(path), "--format", "nginx")
    assert (code, out) == (2, "")
    assert err.startswith(f"engine lb-config: error: {reason}")
    code, out, _ = lb_config(capsys, str(path), "--format", "haproxy")
    assert code == 0


def test_invalid_profile_exits_78_with_the_validators_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, {"nodes": NODES[:2]})
    code, out, err = lb_config(capsys, str(path), "--format", "haproxy")
    assert (code, out) == (78, "")
    assert "cluster.balancer.sticky: long-polling across 2 processes" in err
    assert main(["validate", str(path)]) == 78
    assert err.strip() in capsys.readouterr().err


def test_no_balancer_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = lb_config(capsys, str(write(tmp_path, None)), "--format", "haproxy")
    assert (code, out) == (78, "")
    assert "cluster: engine lb-config needs a [cluster.balancer] table" in err


@pytest.mark.parametrize(
    "args",
    [["--format", "apache"], [], ["--format", "haproxy", "--listen", "nope"]],
)
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    path = write(tmp_path, {"sticky": "cookie", "nodes": NODES[:2]})
    code, out, _ = lb_config(capsys, str(path), *args)
    assert (code, out) == (2, "")


def test_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"sticky": "cookie", "nodes": NODES[:2]}, trusted_proxies=[])
    code, out, err = lb_config(capsys, str(path), "--format", "haproxy")
    assert code == 0
    assert "server.trusted_proxies: warning: a balancer is declared but no proxy is trusted" in err
    assert out.startswith("# Generated by `engine lb-config --format haproxy`")


def test_local_workers_are_addressed_on_their_own_ports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, {"sticky": "cookie"}, workers=3, port=9000, host="0.0.0.0")
    code, out, _ = lb_config(capsys, str(path), "--format", "haproxy")
    assert code == 0
    servers = [line.split()[1:3] for line in out.splitlines() if line.strip().startswith("server")]
    assert servers == [
        ["local_w1", "127.0.0.1:9001"],
        ["local_w2", "127.0.0.1:9002"],
        ["local_w3", "127.0.0.1:9003"],
    ]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("sticky", STICKY)
@pytest.mark.parametrize("fmt", ["haproxy", "nginx"])
def test_every_strategy_renders_a_config_the_binary_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str, sticky: str, fmt: str
) -> None:
    nodes: list[dict[str, Any]] = [{"address": "10.0.0.11:8000"}, {"address": "10.0.0.12:8001"}]
    if strategy == "weighted":
        nodes[0]["weight"] = 5
    transports = ["websocket", "polling"] if sticky != "none" else ["websocket"]
    path = write(
        tmp_path, {"strategy": strategy, "sticky": sticky, "nodes": nodes}, transports=transports
    )
    code, out, err = lb_config(capsys, str(path), "--format", fmt, "--listen", "127.0.0.1:8080")
    if fmt == "nginx" and (
        sticky == "cookie" or (sticky == "ip" and strategy not in ("ip_hash", "consistent_hash"))
    ):
        assert code == 2, err
        return
    assert code == 0, err
    checked = (haproxy_check if fmt == "haproxy" else nginx_check)(out, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    if strategy == "weighted":
        assert ("weight 5" if fmt == "haproxy" else "weight=5") in out
    else:
        assert "weight" not in out
