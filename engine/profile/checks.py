"""Semantic checks JSON Schema cannot express, run on a schema-valid, default-filled profile.

Each `check_*` returns diagnostics (errors or warnings) and never raises, so all of them run
and the user sees everything in one pass. Environment-dependent checks (importing handlers,
reading TLS files) only run with `--check-env`.
"""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Callable
from typing import Any

from engine.cluster import compat
from engine.cluster.options import ClusterOptions
from engine.cluster.topology import Deployment
from engine.errors import Diagnostic
from engine.monitoring.dashboard import is_loopback
from engine.policies.origin import pattern_error
from engine.profile.load import Loaded

RESERVED_EVENTS = frozenset(
    {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
        "error",
        "join_room",
        "leave_room",
    }
)

Check = Callable[[Loaded, dict[str, Any]], list[Diagnostic]]


def check_ping(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    server = data["server"]
    interval, timeout = server["ping_interval_seconds"], server["ping_timeout_seconds"]
    if timeout > interval:
        return [
            loaded.diagnostic(
                ("server", "ping_timeout_seconds"),
                "ping timeout is longer than the ping interval, so a dead peer is noticed "
                "only after several missed pings",
                expected=f"<= ping_interval_seconds ({interval})",
                got=str(timeout),
            )
        ]
    return []


def check_namespaces(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    """Reserved event names (namespace names and room templates are schema patterns)."""
    out: list[Diagnostic] = []
    for name, spec in data["namespaces"].items():
        base = ("namespaces", name)
        events = spec.get("events")
        names = events if isinstance(events, list) else list(events or {})
        for index, event in enumerate(names):
            if event in RESERVED_EVENTS:
                where = (*base, "events", index if isinstance(events, list) else event)
                out.append(
                    loaded.diagnostic(
                        where,
                        "reserved event name",
                        got=repr(event),
                        hint="connect, disconnect, error and the built-in join_room/leave_room "
                        "cannot be declared",
                    )
                )
    return out


def check_server(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    server = data["server"]
    out: list[Diagnostic] = []
    for index, cidr in enumerate(server.get("trusted_proxies", [])):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            out.append(
                loaded.diagnostic(
                    ("server", "trusted_proxies", index),
                    "invalid network",
                    expected="an IP address or CIDR such as 10.0.0.0/8",
                    got=repr(cidr),
                )
            )
    for index, origin in enumerate(server.get("allowed_origins", [])):
        problem = pattern_error(origin)
        if problem:
            out.append(
                loaded.diagnostic(
                    ("server", "allowed_origins", index),
                    f"invalid origin: {problem}",
                    expected="'*', 'https://host[:port]' or 'https://*.example.com'",
                    got=repr(origin),
                )
            )
    has_cert, has_key = "tls_cert_file" in server, "tls_key_file" in server
    if has_cert != has_key:
        missing = "tls_key_file" if has_cert else "tls_cert_file"
        present = "tls_cert_file" if has_cert else "tls_key_file"
        out.append(loaded.diagnostic(("server", present), f"{present} needs {missing} as well"))
    if "tls_ca_file" in server and not has_cert:
        out.append(
            loaded.diagnostic(
                ("server", "tls_ca_file"), "tls_ca_file needs tls_cert_file and tls_key_file"
            )
        )
    return out


def check_risks(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    """Legal but risky settings: warnings, fatal under --strict."""
    out: list[Diagnostic] = []
    environment = data["engine"]["environment"]
    server = data["server"]
    if environment != "development" and "*" in server["allowed_origins"]:
        index = server["allowed_origins"].index("*")
        out.append(
            loaded.diagnostic(
                ("server", "allowed_origins", index),
                f"any origin may connect in a {environment} profile (cross-site WebSocket "
                "hijacking); list your sites' origins",
                severity="warning",
            )
        )
    if environment == "development" and server["host"] in ("0.0.0.0", "::"):
        out.append(
            loaded.diagnostic(
                ("server", "host"),
                "a development profile listens on every interface",
                severity="warning",
            )
        )
    if environment != "development":
        for name, spec in data["namespaces"].items():
            if "events" not in spec:
                out.append(
                    loaded.diagnostic(
                        ("namespaces", name),
                        "no events allow-list: clients may send any event name",
                        severity="warning",
                    )
                )
    return out


def check_environment(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    """Things only true on the machine that will run the profile (--check-env)."""
    out: list[Diagnostic] = []
    for name, spec in data["namespaces"].items():
        if "handler" in spec:
            problem = handler_problem(spec["handler"])
            if problem:
                out.append(loaded.diagnostic(("namespaces", name, "handler"), problem))
    for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        base = loaded.base_dir(("server", key))
        if key in data["server"] and not (base / data["server"][key]).is_file():
            out.append(
                loaded.diagnostic(
                    ("server", key),
                    "file not found",
                    got=repr(data["server"][key]),
                    hint=f"relative paths are resolved from {base}",
                )
            )
    return out


def handler_problem(target: str) -> str | None:
    """Why `package.module:Class` cannot serve as a namespace handler, or None."""
    import socketio

    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return f"cannot import module '{module_name}': {type(exc).__name__}: {exc}"
    cls = getattr(module, class_name, None)
    if cls is None:
        return f"module '{module_name}' has no attribute '{class_name}'"
    if not (isinstance(cls, type) and issubclass(cls, socketio.AsyncNamespace)):
        return f"'{target}' is not a socketio.AsyncNamespace subclass"
    return None


def check_admin_ui(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    admin = data["monitoring"]["admin_ui"]
    if not admin["enabled"]:
        return []
    out = []
    if "password" not in admin:
        out.append(
            loaded.diagnostic(
                ("monitoring", "admin_ui"), "the Admin UI is enabled without a password"
            )
        )
    if admin["namespace"] in data["namespaces"]:
        out.append(
            loaded.diagnostic(
                ("monitoring", "admin_ui", "namespace"),
                "the Admin UI namespace is also a declared namespace",
                got=repr(admin["namespace"]),
            )
        )
    return out


def check_cluster(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    """`[cluster]`, `[cluster.balancer]` and `[server] workers`: see engine.cluster.compat."""
    table = data["cluster"]
    found = compat.problems(
        ClusterOptions.from_profile(table), Deployment.from_profile(data["server"]), declared=table
    )
    return [
        loaded.diagnostic(
            p.path, p.message, severity=p.severity, expected=p.expected, got=p.got, hint=p.hint
        )
        for p in found
    ]


def dashboard_exposure(host: str, *, enabled: bool, has_token: bool) -> str | None:
    """Why serving the dashboard on `host` is unsafe, or None.

    Without a token the dashboard is open to local clients (the engine admits only loopback
    peers then), which is acceptable only while the engine listens on a loopback address.
    Checked when a profile is validated and again at run time for `--bind`.
    """
    if not enabled or has_token or is_loopback(host):
        return None
    return (
        f"the dashboard is enabled without a token on {host}, which is not a loopback "
        'address: set monitoring.dashboard.token (for example "${ENGINE_ADMIN_TOKEN}") or '
        "listen on 127.0.0.1"
    )


def check_dashboard(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    dashboard = data["monitoring"]["dashboard"]
    problem = dashboard_exposure(
        data["server"]["host"], enabled=dashboard["enabled"], has_token="token" in dashboard
    )
    return [loaded.diagnostic(("monitoring", "dashboard"), problem)] if problem else []


def check_lifecycle(loaded: Loaded, data: dict[str, Any]) -> list[Diagnostic]:
    """`[errors]` and `[maintenance]` combinations that would leak or lock everyone out."""
    out = []
    if data["errors"]["expose_exception_text"] and data["engine"]["environment"] != "development":
        out.append(
            loaded.diagnostic(
                ("errors", "expose_exception_text"),
                "exception texts may reach clients only in a development profile",
                expected="false",
                got=f"true with environment = {data['engine']['environment']!r}",
            )
        )
    maintenance = data["maintenance"]
    for name in maintenance["admit_namespaces"]:
        if name not in data["namespaces"]:
            out.append(
                loaded.diagnostic(
                    ("maintenance", "admit_namespaces"),
                    f"namespace {name!r} is not declared",
                    expected="one of " + ", ".join(repr(n) for n in data["namespaces"]),
                    got=repr(name),
                )
            )
    roles = data["auth"].get("roles", {})
    for role in maintenance["admit_roles"]:
        if roles and role not in roles:
            out.append(
                loaded.diagnostic(
                    ("maintenance", "admit_roles"),
                    f"role {role!r} is not declared in [auth.roles]",
                    severity="warning",
                )
            )
    return out


CHECKS: tuple[Check, ...] = (
    check_ping,
    check_namespaces,
    check_server,
    check_risks,
    check_admin_ui,
    check_cluster,
    check_dashboard,
    check_lifecycle,
)


def run(
    loaded: Loaded, data: dict[str, Any], *, check_env: bool = False, partial: bool = False
) -> list[Diagnostic]:
    """Every check's diagnostics.

    :param partial: `data` had schema errors and the invalid values were pruned: a check
        whose inputs are missing (KeyError) is skipped rather than reported.
    """
    out: list[Diagnostic] = []
    for check in (*CHECKS, check_environment) if check_env else CHECKS:
        try:
            out.extend(check(loaded, data))
        except (KeyError, TypeError):
            if not partial:
                raise
    return out
