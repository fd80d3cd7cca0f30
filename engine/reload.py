"""Hot reload: validate a new profile, classify the diff, swap the runtime or refuse.

A change is *live* when the running engine reads it from the current runtime at decision
time (policies, limits, namespace rules and events, auth keys, maintenance, errors, log
level, ...). It is *restart-required* when it was consumed once at start: the listener and
the transport (bind, path, transports, ping, TLS, compression), workers, the cluster adapter,
monitoring sinks (built once, with their own threads and files), a namespace's handler class.
One restart-required change refuses the whole reload; so does an invalid profile. Either way
the old runtime keeps serving and nothing has changed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.errors import ProfileError
from engine.namespaces import import_handler
from engine.profile.build import load_profile
from engine.profile.diff import Change, changes
from engine.profile.locate import KeyPath
from engine.profile.model import Profile
from engine.runtime import Runtime

log = logging.getLogger("engine.reload")

Outcome = Literal["applied", "unchanged", "refused", "invalid"]

# Prefixes of keys a running engine cannot take without a restart.
RESTART_REQUIRED: tuple[KeyPath, ...] = (
    ("server", "host"),
    ("server", "port"),
    ("server", "path"),
    ("server", "transports"),
    ("server", "ping_interval_seconds"),
    ("server", "ping_timeout_seconds"),
    ("server", "max_payload_bytes"),
    ("server", "allowed_origins"),
    ("server", "compression"),
    ("server", "compression_threshold_bytes"),
    ("server", "websocket_compression"),
    ("server", "listen_backlog"),
    ("server", "event_loop"),
    ("server", "gc_threshold_objects"),
    ("server", "gc_freeze_survivors"),
    ("server", "handler_mode"),
    ("server", "websocket_server"),
    ("server", "access_log"),
    ("server", "workers"),
    ("server", "tls_cert_file"),
    ("server", "tls_key_file"),
    ("server", "tls_ca_file"),
    ("server", "tls_key_password"),
    ("cluster",),
    ("monitoring",),
    ("admin", "path"),
)


def restart_required(path: KeyPath, kept: Collection[str] | None = None) -> bool:
    """Whether a change at `path` needs a restart; `kept`: namespaces served before and after.

    A kept namespace's handler class was imported once, so changing it needs a restart; the
    handler of a namespace a reload adds or removes comes and goes with it (live).
    """
    if any(path[: len(prefix)] == prefix for prefix in RESTART_REQUIRED):
        return True
    return (
        len(path) >= 3
        and path[0] == "namespaces"
        and path[2] == "handler"
        and (kept is None or path[1] in kept)
    )


@dataclass(frozen=True, slots=True)
class ReloadReport:
    outcome: Outcome
    old_hash: str
    new_hash: str | None = None
    live: tuple[Change, ...] = ()
    restart: tuple[Change, ...] = ()
    errors: tuple[str, ...] = ()
    namespaces_added: tuple[str, ...] = ()
    namespaces_removed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome in ("applied", "unchanged")

    def as_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "old_config_hash": self.old_hash,
            "new_config_hash": self.new_hash,
            "live": [c.render() for c in self.live],
            "restart_required": [c.render() for c in self.restart],
            "errors": list(self.errors),
            "namespaces_added": list(self.namespaces_added),
            "namespaces_removed": list(self.namespaces_removed),
        }

    def render(self) -> str:
        lines = [f"reload {self.outcome}: {self.old_hash} -> {self.new_hash or '-'}"]
        lines += [f"  error: {e}" for e in self.errors]
        if self.restart:
            lines.append("  restart required (the running profile is unchanged):")
            lines += [f"    {c.render()}" for c in self.restart]
        if self.live:
            lines.append("  live:" if self.outcome == "applied" else "  live (not applied):")
            lines += [f"    {c.render()}" for c in self.live]
        return "\n".join(lines)


@dataclass(slots=True)
class Plan:
    """A validated, classified reload not yet applied."""

    report: ReloadReport
    runtime: Runtime | None = None
    added: dict[str, Profile] = field(default_factory=dict)


def plan(current: Profile, path: Path, environ: Mapping[str, str] | None = None) -> Plan:
    """Load `path` and decide whether it can replace `current` live. No side effects."""
    old_hash = current.config_hash
    try:
        new = load_profile(path, os.environ if environ is None else environ)
    except ProfileError as exc:
        lines = tuple(d.render() for d in exc.diagnostics)
        return Plan(ReloadReport("invalid", old_hash, errors=lines))
    found = changes(current.snapshot, new.snapshot)
    kept = set(current.namespaces) & set(new.namespaces)
    live = tuple(c for c in found if not restart_required(c.path, kept))
    restart = tuple(c for c in found if restart_required(c.path, kept))
    added = tuple(n for n in new.namespaces if n not in current.namespaces)
    removed = tuple(n for n in current.namespaces if n not in new.namespaces)
    errors = []
    for name in added:  # a handler that cannot be imported must not be found after the swap
        handler = new.namespaces[name].handler
        if handler:
            try:
                import_handler(handler)
            except Exception as exc:
                errors.append(f"namespaces.{name}.handler: cannot import {handler!r}: {exc}")
    if errors:
        return Plan(
            ReloadReport("invalid", old_hash, new.config_hash, live, restart, tuple(errors))
        )
    report = ReloadReport(
        "refused" if restart else ("applied" if found else "unchanged"),
        old_hash,
        new.config_hash,
        live,
        restart,
        namespaces_added=added,
        namespaces_removed=removed,
    )
    if restart or not found:
        return Plan(report)
    return Plan(report, Runtime.build(new))
