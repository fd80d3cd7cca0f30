"""engine.auth.base: credentials, identity, extraction order, building from [auth]."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

import pytest

from engine.auth import (
    ANONYMOUS,
    AUTHENTICATORS,
    AuthConfigError,
    AuthFailure,
    CommonOptions,
    Credentials,
    Identity,
    NoneAuthenticator,
    TokenAuthenticator,
    build_authenticator,
    extract_credential,
    merged_options,
)
from engine.auth.base import parse_bearer

EXAMPLE_ENV = {
    "${SERVICE_TOKEN}": "service-token-value",
    "${JWT_SECRET}": "j" * 32,
    "${FLASK_SECRET_KEY}": "flask-secret",
}


def _everything(**overrides: Any) -> Credentials:
    fields: dict[str, Any] = {
        "auth_payload": {"token": "from-auth"},
        "headers": {"authorization": "Bearer from-header"},
        "cookies": {"access_token": "from-cookie"},
        "remote_addr": "127.0.0.1",
    }
    fields.update(overrides)
    return Credentials(**fields)


@pytest.mark.parametrize(
    ("sources", "value", "source"),
    [
        (("auth", "header", "cookie"), "from-auth", "auth"),
        (("header", "auth", "cookie"), "from-header", "header"),
        (("cookie", "auth"), "from-cookie", "cookie"),
        (("cookie",), "from-cookie", "cookie"),
    ],
)
def test_first_source_in_order_wins(sources: Any, value: str, source: str) -> None:
    found = extract_credential(_everything(), sources)
    assert found is not None
    assert (found.value, found.source) == (value, source)
    assert found.from_cookie is (source == "cookie")


def test_absent_or_unusable_sources_are_skipped() -> None:
    credentials = _everything(
        auth_payload={"token": ""},
        headers={"authorization": "Basic dXNlcjpwdw=="},
    )
    found = extract_credential(credentials, ("auth", "header", "cookie"))
    assert found is not None
    assert found.source == "cookie"


def test_non_string_payload_token_is_ignored() -> None:
    credentials = _everything(auth_payload={"token": 123})
    found = extract_credential(credentials, ("auth", "header"))
    assert found is not None
    assert found.source == "header"


def test_configurable_payload_key_and_cookie_name() -> None:
    credentials = Credentials(auth_payload={"jwt": "a"}, cookies={"sid": "b"})
    assert extract_credential(credentials, ("auth",), payload_key="jwt") is not None
    assert extract_credential(credentials, ("auth",)) is None
    found = extract_credential(credentials, ("cookie",), cookie_name="sid")
    assert found is not None
    assert found.value == "b"


def test_nothing_found() -> None:
    assert extract_credential(Credentials(), ("auth", "header", "cookie")) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic abc", None),
        ("abc", None),
        (None, None),
    ],
)
def test_parse_bearer(header: str | None, token: str | None) -> None:
    assert parse_bearer(header) == token


def test_identity_defaults_and_anonymous() -> None:
    assert ANONYMOUS.is_anonymous
    assert ANONYMOUS.via == "none"
    assert not ANONYMOUS.cookie_authenticated
    assert dict(ANONYMOUS.claims) == {}
    who = Identity(user_id="u", roles=frozenset({"a"}), via="token")
    assert not who.is_anonymous
    assert hash(who) == hash(Identity(user_id="u", roles=frozenset({"a"}), via="token"))


def test_failure_envelope() -> None:
    assert AuthFailure("invalid token").to_error() == {
        "code": "unauthorized",
        "message": "invalid token",
    }


def test_common_options_defaults_and_errors() -> None:
    common = CommonOptions.from_profile({})
    assert common == CommonOptions()
    assert common.sources == ("auth", "header")
    assert common.missing() == AuthFailure("authentication required")
    assert CommonOptions(allow_anonymous=True).missing() is ANONYMOUS
    with pytest.raises(AuthConfigError, match="unknown source 'query'"):
        CommonOptions.from_profile({"sources": ["query"]})
    with pytest.raises(AuthConfigError, match="listed twice"):
        CommonOptions.from_profile({"sources": ["auth", "auth"]})
    with pytest.raises(AuthConfigError, match="at least one source"):
        CommonOptions.from_profile({"sources": []})
    with pytest.raises(AuthConfigError, match=r"auth\.payload_key: must not be empty"):
        CommonOptions.from_profile({"payload_key": ""})


def test_none_authenticator_ignores_credentials() -> None:
    authenticator = build_authenticator({})
    assert isinstance(authenticator, NoneAuthenticator)
    assert authenticator.authenticate(_everything(), 0.0) is ANONYMOUS


def test_merged_options_sub_table_wins_over_common_keys() -> None:
    kind, merged = merged_options(
        {
            "type": "session",
            "cookie_name": "access_token",
            "sources": ["auth"],
            "roles": {"admin": {"permissions": ["*"]}},
            "session": {"cookie_name": "session", "secret_key": "k"},
            "jwt": {"secret": "unused"},
        }
    )
    assert kind == "session"
    assert merged == {"cookie_name": "session", "sources": ["auth"], "secret_key": "k"}


def test_build_reports_unknown_type() -> None:
    with pytest.raises(LookupError, match="did you mean 'token'"):
        build_authenticator({"type": "tokens"})


def _example_auth(example: str) -> Mapping[str, object]:
    for placeholder, value in EXAMPLE_ENV.items():
        example = example.replace(placeholder, value)
    table = tomllib.loads(example)["auth"]
    assert isinstance(table, dict)
    return table


@pytest.mark.parametrize("kind", AUTHENTICATORS.names())
def test_every_example_builds(kind: str) -> None:
    factory = AUTHENTICATORS.get(kind)
    auth = _example_auth(factory.EXAMPLE)
    assert auth["type"] == kind
    authenticator = build_authenticator(auth)
    assert type(authenticator) is AUTHENTICATORS.get(kind)  # type: ignore[comparison-overlap]


def test_token_example_authenticates() -> None:
    auth = _example_auth(TokenAuthenticator.EXAMPLE)
    authenticator = build_authenticator(auth)
    who = authenticator.authenticate(
        Credentials(headers={"authorization": "Bearer service-token-value"}), 0.0
    )
    assert who == Identity(user_id="service", roles=frozenset({"admin"}), via="token")
