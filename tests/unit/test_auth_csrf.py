"""engine.auth.csrf: double-submit check."""

from __future__ import annotations

import pytest

from engine.auth import Credentials, CsrfOptions, check_csrf
from engine.auth.csrf import CSRF_MISMATCH, CSRF_MISSING


def _creds(payload: object = "missing", cookie: str | None = None) -> Credentials:
    auth = None if payload == "missing" else {"csrf_token": payload}
    cookies = {} if cookie is None else {"csrf_token": cookie}
    return Credentials(auth_payload=auth, cookies=cookies)


def test_matching_tokens_pass() -> None:
    assert check_csrf(_creds("abc123", "abc123")) is None
    assert check_csrf(_creds("ünïcode", "ünïcode")) is None


@pytest.mark.parametrize(
    ("payload", "cookie", "expected"),
    [
        ("missing", "abc", CSRF_MISSING),
        ("abc", None, CSRF_MISSING),
        ("", "", CSRF_MISSING),
        ("abc", "", CSRF_MISSING),
        ("", "abc", CSRF_MISSING),
        (None, "abc", CSRF_MISSING),
        (123, "123", CSRF_MISSING),
        ("abc", "abd", CSRF_MISMATCH),
        ("abc", "abc ", CSRF_MISMATCH),
        ("ünïcode", "unicode", CSRF_MISMATCH),
    ],
)
def test_refusals(payload: object, cookie: str | None, expected: object) -> None:
    assert check_csrf(_creds(payload, cookie)) == expected


def test_refusal_messages_are_safe() -> None:
    assert CSRF_MISSING.to_error() == {"code": "unauthorized", "message": "missing CSRF token"}
    assert "abd" not in CSRF_MISMATCH.message


def test_custom_names() -> None:
    options = CsrfOptions.from_profile({"payload_key": "xsrf", "cookie_name": "XSRF-TOKEN"})
    creds = Credentials(auth_payload={"xsrf": "t"}, cookies={"XSRF-TOKEN": "t"})
    assert check_csrf(creds, options) is None
    assert check_csrf(creds) == CSRF_MISSING
    assert CsrfOptions.from_profile({}) == CsrfOptions()
