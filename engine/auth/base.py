"""Values shared by every authenticator, and the credential extraction rules.

Authenticators are sans-I/O at decision time: :meth:`Authenticator.authenticate` takes the
handshake's :class:`Credentials` and the current time and returns an :class:`Identity` or an
:class:`AuthFailure`. Files (token tables, keys) are read once, by ``from_profile``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

from engine.auth import _options as opt
from engine.auth._options import AuthConfigError
from engine.registry import Registry

__all__ = [
    "ANONYMOUS",
    "AUTHENTICATORS",
    "DEFAULT_COOKIE_NAME",
    "DEFAULT_PAYLOAD_KEY",
    "DEFAULT_SOURCES",
    "SOURCES",
    "AuthConfigError",
    "AuthFailure",
    "Authenticator",
    "AuthenticatorFactory",
    "CommonOptions",
    "Credentials",
    "ExtractedCredential",
    "Identity",
    "Source",
    "Via",
    "extract_credential",
    "parse_bearer",
]

Source = Literal["auth", "header", "cookie"]
Via = Literal["none", "token", "jwt", "session"]

SOURCES: Final[tuple[Source, ...]] = ("auth", "header", "cookie")
DEFAULT_SOURCES: Final[tuple[Source, ...]] = ("auth", "header")
DEFAULT_PAYLOAD_KEY: Final = "token"
DEFAULT_COOKIE_NAME: Final = "access_token"

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
_EMPTY_STR: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client presented in its Socket.IO handshake.

    :param auth_payload: the CONNECT packet's ``auth`` object, if any.
    :param headers: HTTP request headers, names lower-cased.
    :param cookies: request cookies by name.
    :param remote_addr: the TCP peer address (see :mod:`engine.auth.client_ip`).
    """

    auth_payload: Mapping[str, object] | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY_STR)
    cookies: Mapping[str, str] = field(default_factory=lambda: _EMPTY_STR)
    remote_addr: str = ""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, as decided by an authenticator.

    :param user_id: the user id, or ``None`` for an anonymous connection.
    :param roles: role names; permissions come from ``[auth.roles]``.
    :param claims: the verified claims (JWT payload, session data, token entry).
    :param via: the authenticator type that produced this identity.
    :param cookie_authenticated: the credential came from a cookie, so the connection needs a
        CSRF check (:func:`engine.auth.csrf.check_csrf`).
    """

    user_id: str | None
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, object] = field(default_factory=lambda: _EMPTY, hash=False, compare=False)
    via: Via = "none"
    cookie_authenticated: bool = False

    @property
    def is_anonymous(self) -> bool:
        """``True`` when no user was authenticated."""
        return self.user_id is None


ANONYMOUS: Final = Identity(user_id=None)


def identity_from_claims(
    claims: Mapping[str, Any],
    user_key: str,
    roles_key: str,
    *,
    via: Via,
    cookie_authenticated: bool,
) -> Identity | None:
    """The identity verified claims describe, or None when they are not usable.

    The user id must be a non-empty string or an integer (not a boolean); roles a list of
    strings or one space-separated string (OAuth's `scope` style). Shared by every
    authenticator that reads identities out of claims (jwt, session).
    """
    user_id = claims.get(user_key)
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or user_id == "":
        return None
    roles_value = claims.get(roles_key, [])
    if isinstance(roles_value, str):
        roles = frozenset(roles_value.split())
    elif isinstance(roles_value, list | tuple) and all(isinstance(r, str) for r in roles_value):
        roles = frozenset(roles_value)
    else:
        return None
    return Identity(
        user_id=str(user_id),
        roles=roles,
        claims=MappingProxyType(dict(claims)),
        via=via,
        cookie_authenticated=cookie_authenticated,
    )


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """A refused authentication; ``message`` is safe to show the client.

    :param message: a short reason that never echoes the credential or says which check of a
        signature failed.
    :param code: the ``connect_error`` code.
    """

    message: str
    code: str = "unauthorized"

    def to_error(self) -> dict[str, object]:
        """Return the ``connect_error`` data envelope."""
        return {"code": self.code, "message": self.message}


MISSING_CREDENTIALS: Final = AuthFailure("authentication required")


class Authenticator(Protocol):
    """Turns handshake credentials into an identity, without I/O."""

    def authenticate(self, credentials: Credentials, now: float) -> Identity | AuthFailure:
        """Decide who the client is.

        :param credentials: what the client presented.
        :param now: the current Unix time in seconds.
        """
        ...


class AuthenticatorFactory(Protocol):
    """What an authenticator class registered in :data:`AUTHENTICATORS` provides."""

    @property
    def EXAMPLE(self) -> str:  # a class attribute on implementations
        """A working ``[auth]`` TOML snippet for this type (``${ENV}`` placeholders allowed)."""
        ...

    def from_profile(
        self, mapping: Mapping[str, object], *, base_dir: Path | None = None
    ) -> Authenticator:
        """Build from the ``[auth.<type>]`` sub-table merged over the ``[auth]`` common keys.

        :param mapping: the merged, schema-valid mapping.
        :param base_dir: directory that relative file paths are resolved against.
        """
        ...


AUTHENTICATORS: Final[Registry[AuthenticatorFactory]] = Registry("auth")


@dataclass(frozen=True, slots=True)
class CommonOptions:
    """The ``[auth]`` keys shared by every type.

    :param sources: where to look for a credential, in order.
    :param payload_key: the CONNECT ``auth`` object key holding the token.
    :param cookie_name: the cookie holding the token (``"cookie"`` source).
    :param allow_anonymous: connections without any credential get :data:`ANONYMOUS` instead
        of a refusal. Invalid credentials are always refused.
    """

    sources: tuple[Source, ...] = DEFAULT_SOURCES
    payload_key: str = DEFAULT_PAYLOAD_KEY
    cookie_name: str = DEFAULT_COOKIE_NAME
    allow_anonymous: bool = False

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> CommonOptions:
        """Read the common keys from ``mapping``, ignoring the others."""
        raw_sources = opt.str_list(mapping, "sources", "auth.sources", list(DEFAULT_SOURCES))
        sources: list[Source] = []
        for item in raw_sources:
            if item not in SOURCES:
                raise AuthConfigError(
                    f"auth.sources: unknown source {item!r}; expected one of: " + ", ".join(SOURCES)
                )
            if item in sources:
                raise AuthConfigError(f"auth.sources: {item!r} is listed twice")
            sources.append(item)
        if not sources:
            raise AuthConfigError("auth.sources: must list at least one source")
        return cls(
            sources=tuple(sources),
            payload_key=opt.nonempty_str(
                mapping, "payload_key", "auth.payload_key", DEFAULT_PAYLOAD_KEY
            ),
            cookie_name=opt.nonempty_str(
                mapping, "cookie_name", "auth.cookie_name", DEFAULT_COOKIE_NAME
            ),
            allow_anonymous=opt.boolean(
                mapping, "allow_anonymous", "auth.allow_anonymous", default=False
            ),
        )

    def missing(self) -> Identity | AuthFailure:
        """What to decide when the client presented no credential at all."""
        return ANONYMOUS if self.allow_anonymous else MISSING_CREDENTIALS


@dataclass(frozen=True, slots=True)
class ExtractedCredential:
    """A credential string and the source it came from."""

    value: str
    source: Source

    @property
    def from_cookie(self) -> bool:
        """``True`` if a browser would have sent it automatically (CSRF applies)."""
        return self.source == "cookie"


def parse_bearer(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header value, else ``None``.

    The scheme is case-insensitive; other schemes and empty tokens give ``None``.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def _from_source(
    credentials: Credentials, source: Source, payload_key: str, cookie_name: str
) -> str | None:
    if source == "auth":
        payload = credentials.auth_payload
        value = payload.get(payload_key) if payload is not None else None
        return value if isinstance(value, str) and value else None
    if source == "header":
        return parse_bearer(credentials.headers.get("authorization"))
    cookie = credentials.cookies.get(cookie_name)
    return cookie or None


def extract_credential(
    credentials: Credentials,
    sources: Sequence[Source] = DEFAULT_SOURCES,
    payload_key: str = DEFAULT_PAYLOAD_KEY,
    cookie_name: str = DEFAULT_COOKIE_NAME,
) -> ExtractedCredential | None:
    """Return the credential from the first source in ``sources`` that has one.

    A present but invalid credential does not fall through to later sources: the
    authenticator refuses it.

    :param credentials: the handshake credentials.
    :param sources: ``"auth"`` (CONNECT payload key ``payload_key``, a non-empty string),
        ``"header"`` (``Authorization: Bearer ...``), ``"cookie"`` (cookie ``cookie_name``).
    :param payload_key: key of the CONNECT ``auth`` object.
    :param cookie_name: name of the cookie.
    """
    for source in sources:
        value = _from_source(credentials, source, payload_key, cookie_name)
        if value is not None:
            return ExtractedCredential(value=value, source=source)
    return None
