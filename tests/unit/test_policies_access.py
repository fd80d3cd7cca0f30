"""Concrete role/permission decisions."""

from __future__ import annotations

from engine.policies.access import (
    EventAccess,
    Identity,
    NamespaceAccess,
    RolePermissions,
    decide_connect,
    decide_event,
)
from engine.policies.decision import ALLOW, Deny

ROLES = RolePermissions.from_profile(
    {"admin": {"permissions": ["chat.write", "ban"]}, "member": {"permissions": ["chat.write"]}}
)
CHAT = NamespaceAccess.from_profile(
    {
        "require_roles": ["member", "admin"],
        "events": {
            "message": {"permission": "chat.write"},
            "kick": {"permission": "ban"},
            "ping": {},
        },
        "max_connections_per_user": 2,
    }
)
ANON = Identity(user_id=None)
MEMBER = Identity("1", frozenset({"member"}))
ADMIN = Identity("2", frozenset({"admin"}))
NOBODY = Identity("3", frozenset({"stranger"}))


def test_connect() -> None:
    assert decide_connect(CHAT, ROLES, ANON) == Deny("unauthorized", "authentication required")
    assert decide_connect(CHAT, ROLES, NOBODY).code == "forbidden"  # type: ignore[union-attr]
    assert decide_connect(CHAT, ROLES, MEMBER) == ALLOW
    assert decide_connect(NamespaceAccess(), ROLES, ANON) == ALLOW


def test_required_permissions_need_all() -> None:
    ns = NamespaceAccess(require_permissions=frozenset({"chat.write", "ban"}))
    assert decide_connect(ns, ROLES, ADMIN) == ALLOW
    assert decide_connect(ns, ROLES, MEMBER) == Deny(
        "forbidden", "a required permission is missing"
    )
    both = Identity("4", frozenset({"member", "ghost"}))
    assert isinstance(decide_connect(ns, ROLES, both), Deny)


def test_events() -> None:
    assert decide_event(CHAT, ROLES, MEMBER, "message") == ALLOW
    assert decide_event(CHAT, ROLES, MEMBER, "ping") == ALLOW
    kick = decide_event(CHAT, ROLES, MEMBER, "kick")
    assert isinstance(kick, Deny)
    assert kick.code == "forbidden"
    assert decide_event(CHAT, ROLES, ADMIN, "kick") == ALLOW
    other = decide_event(CHAT, ROLES, ADMIN, "other")
    assert isinstance(other, Deny)
    assert other.code == "unknown_event"
    assert decide_event(CHAT, ROLES, ANON, "message").code == "unauthorized"  # type: ignore[union-attr]


def test_builtin_room_events_always_pass_here() -> None:
    assert decide_event(CHAT, ROLES, ANON, "join_room") == ALLOW
    assert decide_event(CHAT, ROLES, NOBODY, "leave_room") == ALLOW


def test_events_absent_means_any_event_and_list_form_means_no_permission() -> None:
    open_ns = NamespaceAccess.from_profile({})
    assert open_ns.events is None
    assert decide_event(open_ns, ROLES, ANON, "anything") == ALLOW
    listed = NamespaceAccess.from_profile({"events": ["a", "b"]})
    assert listed.events == {"a": EventAccess(), "b": EventAccess()}
    assert decide_event(listed, ROLES, ANON, "a") == ALLOW
    assert decide_event(listed, ROLES, ANON, "c").code == "unknown_event"  # type: ignore[union-attr]


def test_from_profile_fields() -> None:
    assert CHAT.require_roles == frozenset({"member", "admin"})
    assert CHAT.max_connections_per_user == 2
    assert ROLES.permissions_for(["admin", "member", "unknown"]) == frozenset({"chat.write", "ban"})
