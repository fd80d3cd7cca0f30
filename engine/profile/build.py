"""Resolved document -> frozen `Profile`. The last place that reads a raw profile dict."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.profile.model import (
    EngineInfo,
    EventSpec,
    NamespaceSpec,
    Profile,
    ServerOptions,
)
from engine.profile.validate import Resolved, resolve
from engine.rooms import RoomTemplate


def build(resolved: Resolved) -> Profile:
    data = resolved.data
    return Profile(
        engine=EngineInfo(**data["engine"]),
        server=_server(resolved),
        namespaces=MappingProxyType(
            {name: _namespace(name, spec) for name, spec in data["namespaces"].items()}
        ),
        config_hash=resolved.config_hash,
        source=resolved.loaded.display,
    )


def load_profile(path: Path, environ: Mapping[str, str] | None = None) -> Profile:
    """Load, validate and build; raises `ProfileError` with every diagnostic."""
    return build(resolve(path, os.environ if environ is None else environ))


def _server(resolved: Resolved) -> ServerOptions:
    raw = dict(resolved.data["server"])
    for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        if key in raw:
            raw[key] = resolved.loaded.base_dir(("server", key)) / raw[key]
    raw["transports"] = tuple(raw["transports"])
    raw["allowed_origins"] = tuple(raw["allowed_origins"])
    raw["trusted_proxies"] = tuple(
        ipaddress.ip_network(cidr, strict=False) for cidr in raw["trusted_proxies"]
    )
    for key in (
        "ping_interval_seconds",
        "ping_timeout_seconds",
        "connect_timeout_seconds",
        "shutdown_grace_seconds",
    ):
        raw[key] = float(raw[key])
    return ServerOptions(**raw)


def _namespace(name: str, spec: Mapping[str, Any]) -> NamespaceSpec:
    events = spec.get("events")
    declared: Mapping[str, EventSpec] | None = None
    if isinstance(events, list):
        declared = MappingProxyType({e: EventSpec(e, "") for e in events})
    elif isinstance(events, dict):
        declared = MappingProxyType(
            {e: EventSpec(e, opts.get("description", "")) for e, opts in events.items()}
        )
    return NamespaceSpec(
        name=name,
        description=spec["description"],
        handler=spec.get("handler"),
        events=declared,
        auto_join=tuple(RoomTemplate.parse(t) for t in spec["auto_join"]),
        client_join=tuple(RoomTemplate.parse(t, wildcard=True) for t in spec["client_join"]),
        max_client_rooms=spec["max_client_rooms"],
    )
