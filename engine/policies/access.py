"""Role and permission checks for namespaces and events.

Semantics, chosen so a profile reads the way it is enforced:

- a role grants the union of its permissions; unknown roles grant nothing;
- ``require_roles`` is satisfied by ANY listed role, ``require_permissions`` needs ALL;
- an anonymous identity (``user_id is None``) facing any requirement gets ``unauthorized``
  (log in), an authenticated one lacking it gets ``forbidden`` (logging in again won't help);
- an event allow-list of ``None`` admits every event; otherwise unlisted events are
  ``unknown_event``;
- ``join_room``/``leave_room`` always pass here: room rules are decided by the rooms policy.
  (``join_task``/``leave_task``/``cancel_task`` pass in the chain's access policy where
  ``[progress]`` serves them; elsewhere they are ordinary event names.)

Every event decision re-applies the namespace requirements, so an identity whose roles shrink
mid-connection (token refresh) cannot keep using the namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.policies.decision import ALLOW, Decision, Deny

__all__ = [
    "BUILTIN_EVENTS",
    "EventAccess",
    "Identity",
    "NamespaceAccess",
    "RolePermissions",
    "decide_connect",
    "decide_event",
]

BUILTIN_EVENTS: frozenset[str] = frozenset({"join_room", "leave_room"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MAX_ROLE_SETS = 1024


@dataclass(frozen=True, slots=True)
class RolePermissions:
    """Role name -> permissions it grants (``[auth.roles.<role>] permissions = [...]``)."""

    roles: Mapping[str, frozenset[str]]
    # role set -> the union of its permissions: every event asks, with one of a few role sets
    _granted: dict[frozenset[str], frozenset[str]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> RolePermissions:
        """Build from the validated ``auth.roles`` table."""
        return cls(
            MappingProxyType(
                {role: frozenset(table.get("permissions", ())) for role, table in mapping.items()}
            )
        )

    def permissions_for(self, roles: Iterable[str]) -> frozenset[str]:
        """Union of the permissions of ``roles``."""
        if isinstance(roles, frozenset):
            found = self._granted.get(roles)
            if found is None:
                if len(self._granted) >= _MAX_ROLE_SETS:
                    self._granted.clear()  # role sets come from tokens: keep the memo bounded
                found = self._granted[roles] = self._union(roles)
            return found
        return self._union(roles)

    def _union(self, roles: Iterable[str]) -> frozenset[str]:
        granted: set[str] = set()
        for role in roles:
            granted |= self.roles.get(role, frozenset())
        return frozenset(granted)


@dataclass(frozen=True, slots=True)
class EventAccess:
    """Options of one allow-listed event; ``permission=None`` means no permission needed."""

    permission: str | None = None


@dataclass(frozen=True, slots=True)
class NamespaceAccess:
    """Access rules of one namespace (``[namespaces."<ns>"]``)."""

    require_roles: frozenset[str] = frozenset()
    require_permissions: frozenset[str] = frozenset()
    events: Mapping[str, EventAccess] | None = None
    max_connections_per_user: int | None = None

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> NamespaceAccess:
        """Build from one validated namespace table.

        ``events`` may be absent (any event), a list of names, or a table name -> options.
        """
        raw_events = mapping.get("events")
        events: Mapping[str, EventAccess] | None
        if raw_events is None:
            events = None
        elif isinstance(raw_events, Mapping):
            events = MappingProxyType(
                {
                    name: EventAccess(permission=(opts or _EMPTY).get("permission"))
                    for name, opts in raw_events.items()
                }
            )
        else:
            events = MappingProxyType({name: EventAccess() for name in raw_events})
        limit = mapping.get("max_connections_per_user")
        return cls(
            require_roles=frozenset(mapping.get("require_roles", ())),
            require_permissions=frozenset(mapping.get("require_permissions", ())),
            events=events,
            max_connections_per_user=None if limit is None else int(limit),
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, as established by the authenticator."""

    user_id: str | None
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


_UNAUTHORIZED = Deny("unauthorized", "authentication required")


def decide_connect(
    access: NamespaceAccess, roles_map: RolePermissions, identity: Identity
) -> Decision:
    """May ``identity`` connect to the namespace governed by ``access``?"""
    if not access.require_roles and not access.require_permissions:
        return ALLOW
    if identity.anonymous:
        return _UNAUTHORIZED
    if access.require_roles and identity.roles.isdisjoint(access.require_roles):
        return Deny("forbidden", "a required role is missing")
    if access.require_permissions and not (
        access.require_permissions <= roles_map.permissions_for(identity.roles)
    ):
        return Deny("forbidden", "a required permission is missing")
    return ALLOW


def decide_event(
    access: NamespaceAccess, roles_map: RolePermissions, identity: Identity, event: str
) -> Decision:
    """May ``identity`` emit ``event`` in the namespace governed by ``access``?"""
    if event in BUILTIN_EVENTS:
        return ALLOW
    connect = decide_connect(access, roles_map, identity)
    if isinstance(connect, Deny):
        return connect
    if access.events is None:
        return ALLOW
    rule = access.events.get(event)
    if rule is None:
        return Deny("unknown_event", f"event {event[:64]!r} is not accepted in this namespace")
    if rule.permission is None:
        return ALLOW
    if identity.anonymous:
        return _UNAUTHORIZED
    if rule.permission not in roles_map.permissions_for(identity.roles):
        return Deny("forbidden", f"event {event[:64]!r} requires a permission you lack")
    return ALLOW
