"""`[namespaces."<ns>".recovery]`: connection state recovery, declared per namespace."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    """How long a disconnected session is kept and how much history a namespace keeps.

    :param max_disconnection_seconds: a session older than this is forgotten (and so is every
        event older than this: no session could still need it).
    :param skip_auth_on_recovery: a recovering client keeps its session's identity without
        authenticating again (the connect chain still runs: bans, access, caps).
    :param max_events: most events the namespace's history keeps.
    :param max_bytes: most payload bytes (JSON-encoded arguments) the history keeps.
    """

    max_disconnection_seconds: float = 120.0
    skip_auth_on_recovery: bool = False
    max_events: int = 10_000
    max_bytes: int = 10_000_000

    @classmethod
    def from_profile(cls, table: Mapping[str, Any]) -> RecoveryOptions:
        return cls(
            max_disconnection_seconds=float(table["max_disconnection_seconds"]),
            skip_auth_on_recovery=bool(table["skip_auth_on_recovery"]),
            max_events=int(table["max_events"]),
            max_bytes=int(table["max_bytes"]),
        )
