"""`Runtime`: everything that decides, built once from a validated profile.

The engine holds exactly one current runtime (`RuntimeRef`); a reload builds a new one and
swaps the reference in one assignment, so every decision is taken under one profile, never
half of the old and half of the new. Policy *state* is not here: it lives in the engine's
`StateStore` and outlives runtimes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.chain import Chain, build_chain
from engine.profile.model import (
    AuthSpec,
    ErrorOptions,
    MaintenanceOptions,
    NamespaceSpec,
    Profile,
    SecuritySpec,
    ServerOptions,
)


@dataclass(frozen=True, slots=True)
class Runtime:
    profile: Profile
    chain: Chain

    @classmethod
    def build(cls, profile: Profile) -> Runtime:
        return cls(profile, build_chain(profile))

    @property
    def namespaces(self) -> Mapping[str, NamespaceSpec]:
        return self.profile.namespaces

    @property
    def server(self) -> ServerOptions:
        return self.profile.server

    @property
    def auth(self) -> AuthSpec:
        return self.profile.auth

    @property
    def security(self) -> SecuritySpec:
        return self.profile.security

    @property
    def maintenance(self) -> MaintenanceOptions:
        return self.profile.maintenance

    @property
    def errors(self) -> ErrorOptions:
        return self.profile.errors

    @property
    def config_hash(self) -> str:
        return self.profile.config_hash


class RuntimeRef:
    """The one reference to the current runtime; `swap` is the only way to change it."""

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def swap(self, runtime: Runtime) -> Runtime:
        old, self.runtime = self.runtime, runtime
        return old
