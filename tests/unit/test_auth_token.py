"""engine.auth.token: static tokens, constant-time lookup."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.auth import (
    ANONYMOUS,
    AuthConfigError,
    AuthFailure,
    Credentials,
    Identity,
    TokenAuthenticator,
    build_authenticator,
)
from engine.auth.token import constant_time_lookup, token_digest

TOKENS_TOML = """
"alice-token" = { user_id = "alice", roles = ["admin", "chat"] }
"bob-token" = { user_id = "bob" }
"""


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(TOKENS_TOML, encoding="utf-8")
    return path


def _bearer(token: str) -> Credentials:
    return Credentials(headers={"authorization": f"Bearer {token}"})


def test_file_and_inline_tokens_match(tokens_file: Path) -> None:
    authenticator = TokenAuthenticator.from_profile(
        {
            "tokens_file": str(tokens_file),
            "tokens": [{"token": "svc-token", "user_id": "svc", "roles": ["ops"]}],
        }
    )
    assert authenticator.authenticate(_bearer("alice-token"), 0.0) == Identity(
        user_id="alice", roles=frozenset({"admin", "chat"}), via="token"
    )
    assert authenticator.authenticate(_bearer("bob-token"), 0.0) == Identity(
        user_id="bob", via="token"
    )
    who = authenticator.authenticate(Credentials(auth_payload={"token": "svc-token"}), 0.0)
    assert who == Identity(user_id="svc", roles=frozenset({"ops"}), via="token")


def test_no_match_is_refused_without_echoing_the_token(tokens_file: Path) -> None:
    authenticator = TokenAuthenticator.from_profile({"tokens_file": str(tokens_file)})
    result = authenticator.authenticate(_bearer("alice-token-x"), 0.0)
    assert result == AuthFailure("invalid token")
    assert isinstance(result, AuthFailure)
    assert "alice" not in result.message


def test_missing_credentials_refused_or_anonymous(tokens_file: Path) -> None:
    strict = TokenAuthenticator.from_profile({"tokens_file": str(tokens_file)})
    assert strict.authenticate(Credentials(), 0.0) == AuthFailure("authentication required")
    lenient = TokenAuthenticator.from_profile(
        {"tokens_file": str(tokens_file), "allow_anonymous": True}
    )
    assert lenient.authenticate(Credentials(), 0.0) is ANONYMOUS
    # An invalid token is never downgraded to anonymous.
    assert lenient.authenticate(_bearer("nope"), 0.0) == AuthFailure("invalid token")


def test_cookie_source_marks_identity_cookie_authenticated(tokens_file: Path) -> None:
    authenticator = build_authenticator(
        {
            "type": "token",
            "sources": ["cookie"],
            "cookie_name": "api",
            "token": {"tokens_file": "tokens.toml"},
        },
        base_dir=tokens_file.parent,
    )
    who = authenticator.authenticate(Credentials(cookies={"api": "bob-token"}), 0.0)
    assert isinstance(who, Identity)
    assert who.cookie_authenticated
    assert who.user_id == "bob"


def test_json_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"t1": {"user_id": "u1", "roles": ["r"]}}), encoding="utf-8")
    authenticator = TokenAuthenticator.from_profile({"tokens_file": str(path)})
    assert authenticator.authenticate(_bearer("t1"), 0.0) == Identity(
        user_id="u1", roles=frozenset({"r"}), via="token"
    )


def _counting_compare(calls: list[tuple[bytes, bytes]]) -> Callable[[bytes, bytes], bool]:
    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    return compare


@pytest.mark.parametrize("target", ["t0", "t4", "t9", "absent"])
def test_lookup_compares_against_every_entry(target: str) -> None:
    digests = [token_digest(f"t{i}") for i in range(10)]
    calls: list[tuple[bytes, bytes]] = []
    index = constant_time_lookup(token_digest(target), digests, _counting_compare(calls))
    assert len(calls) == len(digests)
    assert [b for _, b in calls] == digests
    assert index == (None if target == "absent" else int(target[1:]))


def test_only_digests_are_kept(tokens_file: Path) -> None:
    authenticator = TokenAuthenticator.from_profile({"tokens_file": str(tokens_file)})
    text = repr(authenticator.options)
    assert "alice-token" not in text
    assert "alice" in text


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, "no tokens configured"),
        ({"tokens": [{"token": "", "user_id": "u"}]}, r"tokens\[0\]: token must be"),
        ({"tokens": [{"token": "t", "user_id": ""}]}, "user_id must be a non-empty string"),
        ({"tokens": [{"token": "t", "user_id": "u", "roles": "admin"}]}, "roles must be"),
        ({"tokens": [{"token": "t", "user_id": "u", "role": []}]}, "unknown key 'role'"),
        (
            {"tokens": [{"token": "t", "user_id": "a"}, {"token": "t", "user_id": "b"}]},
            "configured more than once",
        ),
        ({"tokens_file": "/nonexistent/tokens.toml"}, "cannot read"),
    ],
)
def test_config_errors(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(AuthConfigError, match=message) as info:
        TokenAuthenticator.from_profile(mapping)
    assert "'t'" not in str(info.value)


def test_malformed_file_error_does_not_echo_contents(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('"super-secret" = { user_id = ', encoding="utf-8")
    with pytest.raises(AuthConfigError, match="is not valid TOML") as info:
        TokenAuthenticator.from_profile({"tokens_file": str(path)})
    assert "super-secret" not in str(info.value)
    path.write_text('"super-secret" = 3', encoding="utf-8")
    with pytest.raises(AuthConfigError, match="entry #1: expected a table") as info:
        TokenAuthenticator.from_profile({"tokens_file": str(path)})
    assert "super-secret" not in str(info.value)
