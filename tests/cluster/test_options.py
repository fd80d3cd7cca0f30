"""ClusterOptions from a profile: defaults, env interpolation, secrets, the schema fragment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import engine.cluster
from engine.cli import main
from engine.cluster.options import ClusterOptions, idle_timeout_seconds, split_host_port
from engine.profile.build import build
from engine.profile.schema import profile_schema
from engine.profile.validate import resolve
from tests.cluster.support import profile_text

FRAGMENT = Path(engine.cluster.__file__).parent / "schema_fragment.json"
SECRET = "s3cret-redis-password"


def _nodes(node: dict[str, Any], path: str = "cluster") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}.<key>")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")


def test_fragment_is_strict_described_and_wired_into_the_profile_schema() -> None:
    fragment = json.loads(FRAGMENT.read_text())
    jsonschema.Draft7Validator.check_schema(fragment)
    for path, node in _nodes(fragment):
        assert node.get("description"), f"{path}: no description"
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
        if "default" in node:
            jsonschema.validate(node["default"], node)
    secrets = {path for path, node in _nodes(fragment) if node.get("writeOnly")}
    assert secrets == {"cluster.password"}
    wired = dict(profile_schema()["properties"]["cluster"])
    assert wired.pop("default") == {}
    assert wired == fragment
    workers = profile_schema()["properties"]["server"]["properties"]["workers"]
    assert (workers["type"], workers["minimum"], workers["default"]) == ("integer", 1, 1)


def _profile(tmp_path: Path, cluster: dict[str, Any] | None, environ: dict[str, str]) -> Any:
    path = tmp_path / "profile.toml"
    path.write_text(profile_text(cluster))
    return build(resolve(path, environ))


def test_defaults_without_a_cluster_table(tmp_path: Path) -> None:
    profile = _profile(tmp_path, None, {})
    assert profile.cluster == ClusterOptions()
    assert profile.cluster.balancer is None
    assert profile.server.workers == 1


def test_url_and_password_come_from_the_environment(tmp_path: Path) -> None:
    cluster = {
        "adapter": "redis",
        "url": "${REDIS_URL}",
        "password": "${REDIS_PASSWORD}",
        "channel": "engine-prod",
        "redis_options": {"socket_timeout": 5, "username": "engine"},
        "on_store_error": "deny",
        "node_id": "${NODE_ID:-node-1}",
    }
    environ = {"REDIS_URL": "redis://10.0.0.5:6379/2", "REDIS_PASSWORD": SECRET}
    options = _profile(tmp_path, cluster, environ).cluster
    assert options.url == "redis://10.0.0.5:6379/2"
    assert options.password == SECRET
    assert (options.channel, options.on_store_error, options.node_id) == (
        "engine-prod",
        "deny",
        "node-1",
    )
    assert options.connection_options() == {
        "socket_timeout": 5,
        "username": "engine",
        "password": SECRET,
    }
    assert SECRET not in repr(options)


def test_sentinel_addresses_come_from_the_url() -> None:
    options = ClusterOptions(
        adapter="redis", url="redis+sentinel://10.0.0.5:26379,[fd00::6]:26379/0/engine"
    )
    assert options.sentinels == (("10.0.0.5", 26379), ("fd00::6", 26379))
    assert ClusterOptions(adapter="redis", url="redis://h:6379").sentinels == ()


def test_show_diff_and_errors_never_print_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    path = tmp_path / "profile.toml"
    path.write_text(
        profile_text({"adapter": "redis", "url": "redis://h:1/0", "password": "${REDIS_PASSWORD}"})
    )
    assert main(["show", str(path), "--origin"]) == 0
    assert main(["diff", str(path), str(path)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(profile_text({"adapter": "redis", "url": "redis://:${REDIS_PASSWORD}@h:1/0"}))
    assert main(["validate", str(bad)]) == 78
    out, err = capsys.readouterr()
    assert "cluster.password = " in out
    assert "cluster.url: the URL contains a password" in err
    assert SECRET not in out + err


@pytest.mark.parametrize(
    ("interval", "timeout", "idle"), [(25, 20, 57), (5, 5, 15), (60, 60, 150), (0.5, 0.2, 6)]
)
def test_idle_timeout_outlasts_a_ping_cycle(interval: float, timeout: float, idle: int) -> None:
    assert idle_timeout_seconds(interval, timeout) == idle
    assert idle > interval + timeout


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("10.0.0.1:80", ("10.0.0.1", 80)), ("[::1]:8000", ("::1", 8000)), ("h:1", ("h", 1))],
)
def test_split_host_port(text: str, parsed: tuple[str, int]) -> None:
    assert split_host_port(text) == parsed


@pytest.mark.parametrize("text", ["10.0.0.1", ":80", "::1:80", "h:0", "h:65536", "h:x"])
def test_split_host_port_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"port|host:port|IPv6"):
        split_host_port(text)
