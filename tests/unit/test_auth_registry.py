"""engine.registry: generic type registry with did-you-mean errors."""

from __future__ import annotations

import pytest

from engine.auth import AUTHENTICATORS
from engine.registry import Registry, UnknownType


def test_register_and_get_returns_the_item_unchanged() -> None:
    registry: Registry[int] = Registry("demo")
    decorate = registry.register("one")
    assert decorate(1) == 1
    assert registry.get("one") == 1
    assert "one" in registry
    assert list(registry) == ["one"]
    assert len(registry) == 1


def test_duplicate_registration_is_refused() -> None:
    registry: Registry[str] = Registry("demo")
    registry.register("a")("x")
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.register("a")("y")


def test_unknown_type_lists_choices_and_suggests_nearest() -> None:
    with pytest.raises(UnknownType) as info:
        AUTHENTICATORS.get("jwtt")
    assert str(info.value) == (
        "unknown auth type 'jwtt'; expected one of: jwt, none, session, token (did you mean 'jwt'?)"
    )
    assert info.value.suggestion == "jwt"
    assert info.value.choices == ("jwt", "none", "session", "token")


def test_unknown_type_without_close_match_has_no_suggestion() -> None:
    with pytest.raises(UnknownType) as info:
        AUTHENTICATORS.get("kerberos")
    assert info.value.suggestion is None
    assert "did you mean" not in str(info.value)


def test_empty_registry_message() -> None:
    registry: Registry[int] = Registry("sink")
    with pytest.raises(UnknownType, match=r"expected one of: \(none registered\)"):
        registry.get("x")
