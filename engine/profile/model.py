"""The validated profile as immutable typed objects: the only form the runtime reads.

Built once by `engine.profile.build` from a schema-valid, default-filled document. Secret
values are excluded from `repr` so they cannot reach a log line by accident.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jsonschema.protocols import Validator

from engine.auth import Authenticator, CommonOptions, CsrfOptions
from engine.cluster.options import ClusterOptions
from engine.monitoring.options import MonitoringOptions
from engine.policies.abuse import AbuseOptions
from engine.policies.access import NamespaceAccess, RolePermissions
from engine.policies.connections import ConnectionCaps
from engine.policies.payload import PayloadLimits
from engine.policies.rate_limit import TokenBucket
from engine.profile.diff import Leaf
from engine.progress.options import ProgressOptions
from engine.recovery.options import RecoveryOptions
from engine.rooms import RoomTemplate

Environment = Literal["development", "production", "maintenance"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class EngineInfo:
    name: str
    environment: Environment
    description: str


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str
    port: int
    path: str
    transports: tuple[str, ...]
    ping_interval_seconds: float
    ping_timeout_seconds: float
    connect_timeout_seconds: float
    max_payload_bytes: int
    allowed_origins: tuple[str, ...]
    compression: bool
    compression_threshold_bytes: int
    websocket_compression: bool
    shutdown_grace_seconds: float
    drain_seconds: float
    listen_backlog: int
    event_loop: Literal["uvloop", "asyncio"]
    gc_threshold_objects: int
    trusted_proxies: tuple[Network, ...]
    access_log: bool
    log_level: str
    workers: int = 1  # processes on this host; worker i also listens on port + i
    handler_mode: Literal["task", "inline"] = "task"
    websocket_server: Literal["engine", "hypercorn"] = "engine"
    gc_freeze_survivors: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_key_password: str | None = field(default=None, repr=False)

    @property
    def bind(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket and what to do with a client that exceeds it."""

    bucket: TokenBucket
    action: Literal["drop", "disconnect"]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One declared client event: who may send it, what it must look like, how often."""

    name: str
    description: str
    permission: str | None = None
    schema: Validator | None = None
    rate_limit: RateLimit | None = None
    # a fast yes for `schema` (True only for instances it accepts), None where it cannot say:
    # engine.policies.schema_fast; jsonschema decides whenever this does not say yes
    schema_check: Callable[[object], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class NamespaceSpec:
    """One declared namespace; `events` is None when any event name is accepted."""

    name: str
    description: str
    handler: str | None
    events: Mapping[str, EventSpec] | None
    auto_join: tuple[RoomTemplate, ...]
    client_join: tuple[RoomTemplate, ...]
    max_client_rooms: int
    access: NamespaceAccess
    require_auth: bool
    recovery: RecoveryOptions | None = None


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """`[auth]`: the authenticator (keys and token files already read) and the role map."""

    type: str
    common: CommonOptions
    authenticator: Authenticator = field(repr=False)
    roles: RolePermissions


@dataclass(frozen=True, slots=True)
class SecuritySpec:
    """`[security]`: the policies every connection and event goes through."""

    connects_per_ip: RateLimit | None
    events_per_connection: RateLimit | None
    events_per_user: RateLimit | None
    max_tracked_keys: int
    abuse: AbuseOptions | None
    ban_by: frozenset[str]
    payload: PayloadLimits
    csrf: CsrfOptions | None
    caps: ConnectionCaps


@dataclass(frozen=True, slots=True)
class MaintenanceOptions:
    """`[maintenance]`: who is still admitted while the service is under maintenance."""

    enabled: bool = False
    message: str = "The service is under maintenance. Please try again later."
    retry_after_seconds: float = 300.0
    admit_roles: frozenset[str] = frozenset()
    admit_namespaces: frozenset[str] = frozenset()
    existing: Literal["notify", "disconnect"] = "notify"
    grace_seconds: float = 30.0

    def admits(self, namespace: str, roles: frozenset[str]) -> bool:
        return (
            not self.enabled or namespace in self.admit_namespaces or bool(roles & self.admit_roles)
        )

    def notice(self) -> dict[str, object]:
        """The `maintenance` event clients receive (and the refusal's data)."""
        return {
            "message": self.message,
            "retry_after_seconds": self.retry_after_seconds,
            "disconnect_in_seconds": self.grace_seconds if self.existing == "disconnect" else None,
        }


@dataclass(frozen=True, slots=True)
class ErrorBudget:
    """More than `max_errors` refusals or handler errors in `window_seconds` disconnects."""

    max_errors: int
    window_seconds: float


@dataclass(frozen=True, slots=True)
class ErrorOptions:
    """`[errors]`."""

    expose_exception_text: bool = False
    budget: ErrorBudget | None = None


@dataclass(frozen=True, slots=True)
class AdminOptions:
    """`[admin]`: the admin API (reload); off without a token."""

    token: str | None = field(default=None, repr=False)
    path: str = "/engine/api/reload"


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """`[publish]`: the publish API (`POST /engine/api/publish`, `GET /engine/api/history`);
    off without a token. Its own token, not `[admin] token`: a worker that may publish must
    not be able to reload the profile."""

    token: str | None = field(default=None, repr=False)
    idempotency_seconds: float = 300.0
    max_body_bytes: int = 65536
    max_history_events: int = 1000


@dataclass(frozen=True, slots=True)
class Profile:
    engine: EngineInfo
    server: ServerOptions
    namespaces: Mapping[str, NamespaceSpec]
    auth: AuthSpec
    security: SecuritySpec
    monitoring: MonitoringOptions
    config_hash: str
    source: str
    maintenance: MaintenanceOptions = MaintenanceOptions()
    errors: ErrorOptions = ErrorOptions()
    admin: AdminOptions = AdminOptions()
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    progress: ProgressOptions = field(default_factory=ProgressOptions)
    publish: PublishOptions = field(default_factory=PublishOptions)
    path: Path | None = None
    # fingerprints of every resolved value (secrets only as hashes): what a reload diffs against
    snapshot: Mapping[tuple[str | int, ...], Leaf] = field(
        default_factory=dict, repr=False, compare=False
    )
