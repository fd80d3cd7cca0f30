"""``type = "session"``: a Flask app's signed session cookie.

Verification matches Flask's ``SecureCookieSessionInterface``: an itsdangerous
``URLSafeTimedSerializer`` with salt ``cookie-session``, ``hmac`` key derivation and SHA-1,
over Flask's tagged JSON (decoded here without importing Flask). The zlib-compressed form
(a leading ``.``) is handled by itsdangerous. The cookie age is checked against ``now``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar, Final

from itsdangerous import BadData, URLSafeTimedSerializer

from engine.auth import _options as opt
from engine.auth.base import (
    ANONYMOUS,
    AUTHENTICATORS,
    AuthConfigError,
    AuthFailure,
    Credentials,
    Identity,
    identity_from_claims,
)

__all__ = ["SessionAuthenticator", "SessionOptions", "TaggedJSON"]

FLASK_SALT: Final = "cookie-session"
#: Flask's default ``PERMANENT_SESSION_LIFETIME`` (31 days), which it applies to every cookie.
DEFAULT_MAX_AGE_SECONDS: Final = 31 * 24 * 3600
#: Clock skew tolerated between the Flask app that signs and this server.
DEFAULT_LEEWAY_SECONDS: Final = 60

INVALID_SESSION: Final = AuthFailure("invalid session")
EXPIRED_SESSION: Final = AuthFailure("session expired")


def _parse_http_date(value: str) -> datetime:
    return parsedate_to_datetime(value)


class TaggedJSON:
    """Reads (and writes plain) Flask ``TaggedJSONSerializer`` payloads.

    Tags: `` di`` (dict with a tag-like key), `` t`` (tuple), `` b`` (bytes), `` m`` (Markup,
    decoded as ``str``), `` u`` (UUID), `` d`` (HTTP date).
    """

    _TAGS: ClassVar[Mapping[str, Any]] = {
        " t": tuple,
        " b": base64.b64decode,
        " m": str,
        " u": uuid.UUID,
        " d": _parse_http_date,
    }

    @classmethod
    def _untag(cls, value: object) -> object:
        if isinstance(value, list):
            return [cls._untag(item) for item in value]
        if not isinstance(value, dict):
            return value
        items = {k: cls._untag(v) for k, v in value.items()}
        if len(items) != 1:
            return items
        ((key, inner),) = items.items()
        if key == " di" and isinstance(inner, dict) and len(inner) == 1:
            ((tagged_key, tagged_value),) = inner.items()
            return {str(tagged_key)[:-2]: tagged_value}
        convert = cls._TAGS.get(key)
        if convert is None:
            return items
        return convert(inner)

    @classmethod
    def loads(cls, value: str | bytes) -> Any:
        """Parse tagged JSON."""
        return cls._untag(json.loads(value))

    @staticmethod
    def dumps(value: Any) -> str:
        """Write compact JSON (untagged); only used by itsdangerous' text-mode probe."""
        return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """``[auth.session]`` options.

    :param secret_key: the Flask app's ``SECRET_KEY``; never shown in reprs.
    :param secret_key_fallbacks: Flask's ``SECRET_KEY_FALLBACKS`` (old keys still accepted).
    :param cookie_name: Flask's ``SESSION_COOKIE_NAME``.
    :param user_id_key: session key holding the user id (Flask-Login: ``_user_id``).
    :param roles_key: session key holding the roles (a list, or a space-separated string).
    :param max_age_seconds: oldest accepted signature (Flask's ``PERMANENT_SESSION_LIFETIME``).
    :param leeway_seconds: clock skew tolerated between the Flask app and this server, on
        both ends of the age check.
    :param allow_anonymous: a missing cookie, or a session without a user, is anonymous.
    """

    secret_key: str = field(repr=False)
    secret_key_fallbacks: tuple[str, ...] = field(default=(), repr=False)
    cookie_name: str = "session"
    user_id_key: str = "_user_id"
    roles_key: str = "roles"
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    leeway_seconds: float = DEFAULT_LEEWAY_SECONDS
    allow_anonymous: bool = False

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> SessionOptions:
        """Build from the ``[auth.session]`` sub-table merged over ``[auth]``."""
        secret_key = opt.optional_str(mapping, "secret_key", "auth.session.secret_key")
        if not secret_key:
            raise AuthConfigError("auth.session.secret_key: required")
        return cls(
            secret_key=secret_key,
            secret_key_fallbacks=tuple(
                opt.str_list(
                    mapping, "secret_key_fallbacks", "auth.session.secret_key_fallbacks", []
                )
            ),
            cookie_name=opt.nonempty_str(
                mapping, "cookie_name", "auth.session.cookie_name", "session"
            ),
            user_id_key=opt.nonempty_str(
                mapping, "user_id_key", "auth.session.user_id_key", "_user_id"
            ),
            roles_key=opt.nonempty_str(mapping, "roles_key", "auth.session.roles_key", "roles"),
            max_age_seconds=opt.number(
                mapping,
                "max_age_seconds",
                "auth.session.max_age_seconds",
                DEFAULT_MAX_AGE_SECONDS,
                minimum=1,
            ),
            leeway_seconds=opt.number(
                mapping,
                "leeway_seconds",
                "auth.session.leeway_seconds",
                DEFAULT_LEEWAY_SECONDS,
            ),
            allow_anonymous=opt.boolean(
                mapping, "allow_anonymous", "auth.allow_anonymous", default=False
            ),
        )


@AUTHENTICATORS.register("session")
class SessionAuthenticator:
    """Verifies a Flask session cookie; the identity is cookie-authenticated."""

    EXAMPLE: ClassVar[str] = (
        "[auth]\n"
        'type = "session"\n'
        "\n"
        "[auth.session]\n"
        'secret_key = "${FLASK_SECRET_KEY}"\n'
        'cookie_name = "session"\n'
        'user_id_key = "_user_id"\n'
    )

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        # itsdangerous signs with the last key and verifies with all of them, newest first.
        keys = [*options.secret_key_fallbacks, options.secret_key]
        self._serializer = URLSafeTimedSerializer(
            keys,
            salt=FLASK_SALT,
            serializer=TaggedJSON,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
        )

    @classmethod
    def from_profile(
        cls, mapping: Mapping[str, object], *, base_dir: Path | None = None
    ) -> SessionAuthenticator:
        """Build from the ``[auth.session]`` sub-table merged over ``[auth]``."""
        del base_dir
        return cls(SessionOptions.from_profile(mapping))

    def _missing(self) -> Identity | AuthFailure:
        return ANONYMOUS if self.options.allow_anonymous else AuthFailure("login required")

    def authenticate(self, credentials: Credentials, now: float) -> Identity | AuthFailure:
        """Verify the session cookie and read the user id and roles from it."""
        options = self.options
        cookie = credentials.cookies.get(options.cookie_name)
        if not cookie:
            return self._missing()
        try:
            data, signed_at = self._serializer.loads(cookie, return_timestamp=True)
        except BadData:  # bad signature, malformed timestamp or undecodable payload
            return INVALID_SESSION
        if not isinstance(data, dict) or not isinstance(signed_at, datetime):
            return INVALID_SESSION
        age = int(now) - int(signed_at.timestamp())
        leeway = options.leeway_seconds
        if age > options.max_age_seconds + leeway or age < -leeway:
            return EXPIRED_SESSION
        user_id = data.get(options.user_id_key)
        if user_id is None:
            return self._missing()
        identity = identity_from_claims(
            data, options.user_id_key, options.roles_key, via="session", cookie_authenticated=True
        )
        return INVALID_SESSION if identity is None else identity
