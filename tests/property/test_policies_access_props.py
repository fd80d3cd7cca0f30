"""decide_connect / decide_event against a straightforward reference."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.policies.access import (
    EventAccess,
    Identity,
    NamespaceAccess,
    RolePermissions,
    decide_connect,
    decide_event,
)
from engine.policies.decision import Allow, Deny

ROLES = ["admin", "mod", "user", "guest", "ghost"]  # "ghost" is never defined in roles maps
PERMS = ["chat.read", "chat.write", "room.admin", "ban"]
EVENTS = ["message", "typing", "kick", "join_room", "leave_room", "unknown"]

role_maps = st.dictionaries(
    st.sampled_from(ROLES[:-1]), st.frozensets(st.sampled_from(PERMS)), max_size=4
).map(lambda m: RolePermissions(MappingProxyType(m)))
identities = st.builds(
    Identity,
    user_id=st.one_of(st.none(), st.sampled_from(["1", "2"])),
    roles=st.frozensets(st.sampled_from(ROLES)),
)
namespaces = st.builds(
    NamespaceAccess,
    require_roles=st.frozensets(st.sampled_from(ROLES), max_size=2),
    require_permissions=st.frozensets(st.sampled_from(PERMS), max_size=2),
    events=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(EVENTS[:3]),
            st.builds(EventAccess, permission=st.one_of(st.none(), st.sampled_from(PERMS))),
        ).map(MappingProxyType),
    ),
)


def ref_connect(ns: NamespaceAccess, roles: RolePermissions, who: Identity) -> str | None:
    """Returns the denial code, or None for allow."""
    needs_something = len(ns.require_roles) > 0 or len(ns.require_permissions) > 0
    if not needs_something:
        return None
    if who.user_id is None:
        return "unauthorized"
    if ns.require_roles and not any(r in who.roles for r in ns.require_roles):
        return "forbidden"
    granted: set[str] = set()
    for role in who.roles:
        if role in roles.roles:
            granted.update(roles.roles[role])
    if any(p not in granted for p in ns.require_permissions):
        return "forbidden"
    return None


def ref_event(ns: NamespaceAccess, roles: RolePermissions, who: Identity, name: str) -> str | None:
    if name in ("join_room", "leave_room"):
        return None
    code = ref_connect(ns, roles, who)
    if code is not None:
        return code
    if ns.events is None:
        return None
    if name not in ns.events:
        return "unknown_event"
    needed = ns.events[name].permission
    if needed is None:
        return None
    if who.user_id is None:
        return "unauthorized"
    has = any(needed in roles.roles.get(r, frozenset()) for r in who.roles)
    return None if has else "forbidden"


def code_of(decision: Allow | Deny) -> str | None:
    return decision.code if isinstance(decision, Deny) else None


@settings(max_examples=500)
@given(namespaces, role_maps, identities, st.sampled_from(EVENTS))
def test_decisions_match_reference(
    ns: NamespaceAccess, roles: RolePermissions, who: Identity, name: str
) -> None:
    assert code_of(decide_connect(ns, roles, who)) == ref_connect(ns, roles, who)
    got = code_of(decide_event(ns, roles, who, name))
    event(f"event -> {got}")
    assert got == ref_event(ns, roles, who, name)
