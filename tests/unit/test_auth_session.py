"""engine.auth.session: cookies produced by a real Flask app, verified without Flask."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from http.cookies import SimpleCookie

import flask
import pytest
from flask.json.tag import TaggedJSONSerializer
from markupsafe import Markup

from engine.auth import (
    ANONYMOUS,
    AuthConfigError,
    AuthFailure,
    Credentials,
    Identity,
    SessionAuthenticator,
    build_authenticator,
)
from engine.auth.session import TaggedJSON

SECRET_KEY = "flask-secret-key-for-tests"


def _app(secret_key: str = SECRET_KEY, **config: object) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=secret_key, **config)

    @app.post("/login/<user_id>")
    def login(user_id: str) -> str:
        flask.session["_user_id"] = user_id
        flask.session["_fresh"] = True
        flask.session["roles"] = ["admin", "chat"]
        return "ok"

    @app.post("/big/<user_id>")
    def big(user_id: str) -> str:
        flask.session["_user_id"] = user_id
        flask.session["notes"] = ["same text again"] * 200
        return "ok"

    @app.post("/tagged")
    def tagged() -> str:
        flask.session["_user_id"] = 42
        flask.session["t"] = (1, 2)
        flask.session["b"] = b"\x00\xff"
        flask.session["u"] = uuid.UUID(int=7)
        flask.session["d"] = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        flask.session["k"] = {" t": "looks like a tag"}
        flask.session["m"] = Markup("<b>hi</b>")
        return "ok"

    @app.post("/anonymous")
    def anonymous() -> str:
        flask.session["cart"] = [1, 2]
        return "ok"

    return app


def _cookie(app: flask.Flask, path: str) -> str:
    """Drive the app and return the session cookie value from its Set-Cookie header."""
    response = app.test_client().post(path)
    assert response.status_code == 200
    headers = response.headers.getlist("Set-Cookie")
    assert len(headers) == 1
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers[0])
    return jar["session"].value


@pytest.fixture
def authenticator() -> SessionAuthenticator:
    return SessionAuthenticator.from_profile({"secret_key": SECRET_KEY})


def _creds(value: str, name: str = "session") -> Credentials:
    return Credentials(cookies={name: value})


def test_flask_login_cookie_is_accepted(authenticator: SessionAuthenticator) -> None:
    cookie = _cookie(_app(), "/login/alice")
    who = authenticator.authenticate(_creds(cookie), time.time())
    assert who == Identity(
        user_id="alice",
        roles=frozenset({"admin", "chat"}),
        via="session",
        cookie_authenticated=True,
    )
    assert isinstance(who, Identity)
    assert who.claims["_fresh"] is True


def test_compressed_cookie_is_accepted(authenticator: SessionAuthenticator) -> None:
    cookie = _cookie(_app(), "/big/bob")
    assert cookie.startswith(".")
    who = authenticator.authenticate(_creds(cookie), time.time())
    assert isinstance(who, Identity)
    assert who.user_id == "bob"
    assert who.claims["notes"] == ["same text again"] * 200


def test_tagged_values_decode_like_flask(authenticator: SessionAuthenticator) -> None:
    cookie = _cookie(_app(), "/tagged")
    who = authenticator.authenticate(_creds(cookie), time.time())
    assert isinstance(who, Identity)
    assert who.user_id == "42"
    assert who.claims["t"] == (1, 2)
    assert who.claims["b"] == b"\x00\xff"
    assert who.claims["u"] == uuid.UUID(int=7)
    assert who.claims["d"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert who.claims["k"] == {" t": "looks like a tag"}
    assert who.claims["m"] == "<b>hi</b>"


@pytest.mark.parametrize(
    "value",
    [
        {"a": (1, [2, (3,)]), "b": b"xy", "c": {" di": 1}, "d": [{" u": "nope"}]},
        {"x": {" t": [1]}, "y": {"nested": {" b": "x"}}},
        {"u": uuid.uuid4(), "when": dt.datetime(2020, 2, 29, tzinfo=dt.UTC)},
    ],
)
def test_tagged_json_matches_flask_serializer(value: dict[str, object]) -> None:
    flask_serializer = TaggedJSONSerializer()
    text = flask_serializer.dumps(value)
    assert TaggedJSON.loads(text) == flask_serializer.loads(text)


def test_tampered_cookie_is_refused(authenticator: SessionAuthenticator) -> None:
    cookie = _cookie(_app(), "/login/alice")
    payload, timestamp, signature = cookie.rsplit(".", 2)
    forged = _cookie(_app(secret_key="attacker-key"), "/login/admin")
    forged_payload = forged.rsplit(".", 2)[0]
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for value in (
        f"{forged_payload}.{timestamp}.{signature}",
        f"{flipped}.{timestamp}.{signature}",
        f"{payload}.{timestamp}.{signature[:-2]}",
        forged,
        "garbage",
        "a.b.c",
    ):
        assert authenticator.authenticate(_creds(value), time.time()) == AuthFailure(
            "invalid session"
        ), value


def test_age_is_checked_against_now(authenticator: SessionAuthenticator) -> None:
    cookie = _cookie(_app(), "/login/alice")
    signed = time.time()
    max_age = authenticator.options.max_age_seconds
    leeway = authenticator.options.leeway_seconds
    assert isinstance(authenticator.authenticate(_creds(cookie), signed + max_age), Identity)
    expired = signed + max_age + leeway + 5
    assert authenticator.authenticate(_creds(cookie), expired) == AuthFailure("session expired")
    from_the_future = signed - leeway - 5
    assert authenticator.authenticate(_creds(cookie), from_the_future) == AuthFailure(
        "session expired"
    )


def test_short_max_age() -> None:
    authenticator = SessionAuthenticator.from_profile(
        {"secret_key": SECRET_KEY, "max_age_seconds": 60, "leeway_seconds": 0}
    )
    cookie = _cookie(_app(), "/login/alice")
    now = time.time()
    assert isinstance(authenticator.authenticate(_creds(cookie), now + 30), Identity)
    assert authenticator.authenticate(_creds(cookie), now + 120) == AuthFailure("session expired")


def test_session_without_user_and_missing_cookie() -> None:
    strict = SessionAuthenticator.from_profile({"secret_key": SECRET_KEY})
    cookie = _cookie(_app(), "/anonymous")
    assert strict.authenticate(_creds(cookie), time.time()) == AuthFailure("login required")
    assert strict.authenticate(Credentials(), time.time()) == AuthFailure("login required")
    lenient = SessionAuthenticator.from_profile({"secret_key": SECRET_KEY, "allow_anonymous": True})
    assert lenient.authenticate(_creds(cookie), time.time()) is ANONYMOUS
    assert lenient.authenticate(Credentials(), time.time()) is ANONYMOUS


def test_key_rotation_with_fallbacks() -> None:
    old_cookie = _cookie(_app(secret_key="old-key"), "/login/alice")
    rotated = SessionAuthenticator.from_profile(
        {"secret_key": "new-key", "secret_key_fallbacks": ["old-key"]}
    )
    assert isinstance(rotated.authenticate(_creds(old_cookie), time.time()), Identity)
    new_cookie = _cookie(_app(secret_key="new-key", SECRET_KEY_FALLBACKS=["old-key"]), "/login/bob")
    who = rotated.authenticate(_creds(new_cookie), time.time())
    assert isinstance(who, Identity)
    assert who.user_id == "bob"
    not_rotated = SessionAuthenticator.from_profile({"secret_key": "new-key"})
    assert not_rotated.authenticate(_creds(old_cookie), time.time()) == AuthFailure(
        "invalid session"
    )


def test_custom_cookie_and_keys_via_build() -> None:
    app = _app(SESSION_COOKIE_NAME="sid")
    response = app.test_client().post("/login/carol")
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["Set-Cookie"])
    authenticator = build_authenticator(
        {
            "type": "session",
            "cookie_name": "access_token",  # the token cookie; the sub-table wins
            "session": {"secret_key": SECRET_KEY, "cookie_name": "sid", "roles_key": "none"},
        }
    )
    who = authenticator.authenticate(_creds(jar["sid"].value, "sid"), time.time())
    assert who == Identity(user_id="carol", via="session", cookie_authenticated=True)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, r"auth\.session\.secret_key: required"),
        ({"secret_key": ""}, r"auth\.session\.secret_key: required"),
        ({"secret_key": "k", "max_age_seconds": 0}, "max_age_seconds: expected a number >= 1"),
        ({"secret_key": "k", "cookie_name": 3}, "cookie_name: expected a string"),
    ],
)
def test_config_errors(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(AuthConfigError, match=message):
        SessionAuthenticator.from_profile(mapping)


def test_secret_not_in_repr() -> None:
    authenticator = SessionAuthenticator.from_profile(
        {"secret_key": SECRET_KEY, "secret_key_fallbacks": ["older-secret"]}
    )
    text = repr(authenticator.options)
    assert SECRET_KEY not in text
    assert "older-secret" not in text
