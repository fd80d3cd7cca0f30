"""Resolved document -> frozen `Profile`. The last place that reads a raw profile dict."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import jsonschema

from engine.auth import AuthConfigError, CommonOptions, CsrfOptions, build_authenticator
from engine.cluster.options import ClusterOptions
from engine.errors import Diagnostic, ProfileError
from engine.monitoring.options import MonitoringOptions
from engine.policies.abuse import AbuseOptions
from engine.policies.access import NamespaceAccess, RolePermissions
from engine.policies.connections import ConnectionCaps
from engine.policies.payload import PayloadLimits
from engine.policies.rate_limit import TokenBucket
from engine.policies.schema_fast import compile_check
from engine.profile.diff import snapshot
from engine.profile.locate import KeyPath
from engine.profile.model import (
    AdminOptions,
    AuthSpec,
    EngineInfo,
    ErrorBudget,
    ErrorOptions,
    EventSpec,
    MaintenanceOptions,
    NamespaceSpec,
    Profile,
    PublishOptions,
    RateLimit,
    SecuritySpec,
    ServerOptions,
)
from engine.profile.validate import InvalidProfile, Resolved, resolve
from engine.progress.options import ProgressOptions
from engine.recovery.options import RecoveryOptions
from engine.registry import UnknownType
from engine.rooms import RoomTemplate

T = TypeVar("T")


def build(resolved: Resolved, *, incomplete: bool = False) -> Profile:
    """Build every component once; a component that cannot be built is a `ProfileError`.

    :param incomplete: `resolved` is what is left of an invalid profile (`InvalidProfile.partial`):
        build what can be built to find its problems too, skip components whose inputs failed
        the schema, then raise `ProfileError` (possibly empty) since no `Profile` can result.
    """
    data = resolved.data
    problems: list[Diagnostic] = []

    def attempt(path: KeyPath, make: Callable[[], T]) -> T | None:
        if resolved.affected(path):
            return None
        try:
            return make()
        except (AuthConfigError, UnknownType, ValueError, OSError, re.error) as exc:
            problems.append(_diagnostic(resolved, path, exc))
        except (KeyError, TypeError):
            if not incomplete:
                raise
        return None

    namespaces = {
        name: attempt(("namespaces", name), partial(_namespace, resolved, name, spec))
        for name, spec in data["namespaces"].items()
    }
    auth = attempt(("auth",), lambda: _auth(resolved))
    security = attempt(("security",), lambda: _security(data["security"]))
    monitoring = attempt(
        ("monitoring",), lambda: MonitoringOptions.from_profile(data["monitoring"])
    )
    cluster = attempt(("cluster",), lambda: ClusterOptions.from_profile(data["cluster"]))
    if problems or incomplete:
        raise ProfileError(problems)
    assert cluster is not None
    assert auth is not None
    assert security is not None
    assert monitoring is not None
    return Profile(
        engine=EngineInfo(**data["engine"]),
        server=_server(resolved),
        namespaces=MappingProxyType({k: v for k, v in namespaces.items() if v is not None}),
        auth=auth,
        security=security,
        monitoring=monitoring,
        config_hash=resolved.config_hash,
        source=resolved.loaded.display,
        maintenance=_maintenance(data["maintenance"]),
        errors=_errors(data["errors"]),
        admin=AdminOptions(token=data["admin"].get("token"), path=data["admin"]["path"]),
        path=resolved.loaded.sources[0].path if resolved.loaded.sources else None,
        cluster=cluster,
        progress=ProgressOptions.from_profile(data["progress"]),
        publish=_publish(data["publish"]),
        snapshot=MappingProxyType(snapshot(data)),
    )


def _publish(table: Mapping[str, Any]) -> PublishOptions:
    return PublishOptions(
        token=table.get("token"),
        idempotency_seconds=float(table["idempotency_seconds"]),
        max_body_bytes=int(table["max_body_bytes"]),
        max_history_events=int(table["max_history_events"]),
    )


def _maintenance(table: Mapping[str, Any]) -> MaintenanceOptions:
    return MaintenanceOptions(
        enabled=table["enabled"],
        message=table["message"],
        retry_after_seconds=float(table["retry_after_seconds"]),
        admit_roles=frozenset(table["admit_roles"]),
        admit_namespaces=frozenset(table["admit_namespaces"]),
        existing=table["existing"],
        grace_seconds=float(table["grace_seconds"]),
    )


def _errors(table: Mapping[str, Any]) -> ErrorOptions:
    budget = table.get("budget")
    return ErrorOptions(
        expose_exception_text=table["expose_exception_text"],
        budget=(
            ErrorBudget(int(budget["max_errors"]), float(budget["window_seconds"]))
            if budget is not None
            else None
        ),
    )


def _diagnostic(resolved: Resolved, path: KeyPath, exc: Exception) -> Diagnostic:
    """Component errors read `auth.jwt.secret: message`; locate the named path if there is one."""
    text = str(exc.args[0]) if exc.args else str(exc)
    head, sep, rest = text.partition(": ")
    if sep and head.replace("_", "").replace(".", "").replace('"', "").replace("/", "").isalnum():
        named = tuple(part for part in head.split(".") if part)
        if named and named[0] == path[0]:
            return resolved.loaded.diagnostic(named, rest)
    return resolved.loaded.diagnostic(path, text)


def _rate_limit(table: Mapping[str, Any] | None) -> RateLimit | None:
    if table is None:
        return None
    return RateLimit(TokenBucket.from_profile(table), table.get("action", "drop"))


def _auth(resolved: Resolved) -> AuthSpec:
    table = resolved.data["auth"]
    return AuthSpec(
        type=table["type"],
        common=CommonOptions.from_profile(table),
        authenticator=build_authenticator(table, base_dir=resolved.loaded.base_dir(("auth",))),
        roles=RolePermissions.from_profile(table.get("roles", {})),
    )


def _security(table: Mapping[str, Any]) -> SecuritySpec:
    limits = table["rate_limits"]
    abuse = table.get("abuse")
    connections = table["connections"]
    return SecuritySpec(
        connects_per_ip=_rate_limit(limits.get("connects_per_ip")),
        events_per_connection=_rate_limit(limits.get("events_per_connection")),
        events_per_user=_rate_limit(limits.get("events_per_user")),
        max_tracked_keys=limits["max_tracked_keys"],
        abuse=AbuseOptions.from_profile(abuse) if abuse is not None else None,
        ban_by=frozenset(abuse["ban_by"]) if abuse is not None else frozenset(),
        payload=PayloadLimits.from_profile(table["payload"]),
        csrf=CsrfOptions.from_profile(table["csrf"]) if "csrf" in table else None,
        caps=ConnectionCaps(
            max_per_ip=connections.get("max_per_ip"), max_total=connections.get("max_total")
        ),
    )


def diagnose(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    check_env: bool = False,
    require_env: bool = True,
) -> tuple[Profile | None, list[Diagnostic]]:
    """Load, validate and build; the profile (None if invalid) and every diagnostic at once.

    Schema errors, semantic checks and component builds are reported together: each later
    stage runs on what the earlier ones left valid.
    """
    try:
        resolved = resolve(path, environ, check_env=check_env, require_env=require_env)
    except InvalidProfile as exc:
        found = list(exc.diagnostics)
        if exc.partial is not None:
            try:
                build(exc.partial, incomplete=True)
            except ProfileError as more:
                known = {d.path for d in found}
                found += [d for d in more.diagnostics if d.path not in known]
        return None, found
    try:
        return build(resolved), list(resolved.warnings)
    except ProfileError as exc:
        return None, [*exc.diagnostics, *resolved.warnings]


def load_profile(path: Path, environ: Mapping[str, str] | None = None) -> Profile:
    """Load, validate and build; raises `ProfileError` with every diagnostic."""
    profile, found = diagnose(path, os.environ if environ is None else environ)
    if profile is None:
        raise ProfileError([d for d in found if d.severity == "error"])
    return profile


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
        "drain_seconds",
    ):
        raw[key] = float(raw[key])
    return ServerOptions(**raw)


def _event(resolved: Resolved, namespace: str, name: str, opts: Mapping[str, Any]) -> EventSpec:
    schema: Any = opts.get("schema")
    if "schema_file" in opts:
        where = resolved.loaded.base_dir(("namespaces", namespace, "events", name, "schema_file"))
        path = where / opts["schema_file"]
        try:
            schema = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"namespaces.{namespace}.events.{name}.schema_file: not JSON ({exc})"
            ) from None
    validator = None
    if schema is not None:
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(
                f"namespaces.{namespace}.events.{name}.schema: not a valid JSON Schema: "
                f"{exc.message}"
            ) from None
        validator = jsonschema.Draft7Validator(schema)
    return EventSpec(
        name=name,
        description=opts.get("description", ""),
        permission=opts.get("permission"),
        schema=validator,
        rate_limit=_rate_limit(opts.get("rate_limit")),
        schema_check=compile_check(schema) if schema is not None else None,
    )


def _namespace(resolved: Resolved, name: str, spec: Mapping[str, Any]) -> NamespaceSpec:
    events = spec.get("events")
    declared: Mapping[str, EventSpec] | None = None
    if isinstance(events, list):
        declared = MappingProxyType({e: EventSpec(e, "") for e in events})
    elif isinstance(events, dict):
        declared = MappingProxyType(
            {e: _event(resolved, name, e, opts) for e, opts in events.items()}
        )
    return NamespaceSpec(
        name=name,
        description=spec["description"],
        handler=spec.get("handler"),
        events=declared,
        auto_join=tuple(RoomTemplate.parse(t) for t in spec["auto_join"]),
        client_join=tuple(RoomTemplate.parse(t, wildcard=True) for t in spec["client_join"]),
        max_client_rooms=spec["max_client_rooms"],
        access=NamespaceAccess.from_profile(spec),
        require_auth=spec["require_auth"],
        recovery=RecoveryOptions.from_profile(spec["recovery"]) if "recovery" in spec else None,
    )
