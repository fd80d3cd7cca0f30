"""Authenticators: pure decisions from handshake credentials to an identity.

``build_authenticator(profile["auth"])`` returns the configured :class:`Authenticator`;
``authenticate(credentials, now)`` then returns an :class:`Identity` or an
:class:`AuthFailure` whose message is safe to show the client. No I/O happens at decision time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from engine.auth import jwt as _jwt
from engine.auth import none as _none
from engine.auth import session as _session
from engine.auth import token as _token
from engine.auth.base import (
    ANONYMOUS,
    AUTHENTICATORS,
    AuthConfigError,
    Authenticator,
    AuthenticatorFactory,
    AuthFailure,
    CommonOptions,
    Credentials,
    ExtractedCredential,
    Identity,
    extract_credential,
)
from engine.auth.csrf import CsrfOptions, check_csrf
from engine.auth.jwt import JwtAuthenticator, JwtOptions
from engine.auth.none import NoneAuthenticator, NoneOptions
from engine.auth.session import SessionAuthenticator, SessionOptions
from engine.auth.token import TokenAuthenticator, TokenOptions

__all__ = [
    "ANONYMOUS",
    "AUTHENTICATORS",
    "AuthConfigError",
    "AuthFailure",
    "Authenticator",
    "AuthenticatorFactory",
    "CommonOptions",
    "Credentials",
    "CsrfOptions",
    "ExtractedCredential",
    "Identity",
    "JwtAuthenticator",
    "JwtOptions",
    "NoneAuthenticator",
    "NoneOptions",
    "SessionAuthenticator",
    "SessionOptions",
    "TokenAuthenticator",
    "TokenOptions",
    "build_authenticator",
    "check_csrf",
    "extract_credential",
    "merged_options",
]

del _jwt, _none, _session, _token  # imported for their registrations

#: ``[auth]`` keys that are not options of any one type.
_NOT_OPTIONS = frozenset({"type", "roles", *AUTHENTICATORS.names()})


def merged_options(auth: Mapping[str, object]) -> tuple[str, dict[str, object]]:
    """Return the ``type`` and the ``[auth.<type>]`` sub-table merged over the common keys.

    Sub-table keys win (``[auth.session] cookie_name`` is the session cookie, while
    ``[auth] cookie_name`` names the token cookie of the ``cookie`` source).

    :param auth: the schema-valid ``[auth]`` table.
    :raises AuthConfigError: if the sub-table is not a table.
    """
    kind = auth.get("type", "none")
    if not isinstance(kind, str):
        raise AuthConfigError("auth.type: expected a string")
    merged: dict[str, object] = {k: v for k, v in auth.items() if k not in _NOT_OPTIONS}
    sub = auth.get(kind, {})
    if not isinstance(sub, Mapping):
        raise AuthConfigError(f"auth.{kind}: expected a table")
    merged.update(sub)
    return kind, merged


def build_authenticator(
    auth: Mapping[str, object], *, base_dir: Path | None = None
) -> Authenticator:
    """Build the authenticator the ``[auth]`` table selects (reads key/token files once).

    :param auth: the schema-valid ``[auth]`` table (absent means ``type = "none"``).
    :param base_dir: directory that relative file paths are resolved against (the profile's).
    :raises engine.registry.UnknownType: unknown ``auth.type``.
    :raises AuthConfigError: a setting that cannot be built.
    """
    kind, merged = merged_options(auth)
    return AUTHENTICATORS.get(kind).from_profile(merged, base_dir=base_dir)
