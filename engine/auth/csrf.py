"""Double-submit CSRF check for cookie-authenticated connections.

A browser sends cookies to any site's WebSocket handshake, so a connection authenticated by a
cookie must also prove it can *read* the CSRF cookie: the CONNECT ``auth`` object carries the
same value as the cookie. Pure: no I/O, constant-time comparison.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from engine.auth import _options as opt
from engine.auth.base import AuthFailure, Credentials

__all__ = ["CSRF_MISMATCH", "CSRF_MISSING", "CsrfOptions", "check_csrf"]

CSRF_MISSING: Final = AuthFailure("missing CSRF token")
CSRF_MISMATCH: Final = AuthFailure("CSRF token mismatch")


@dataclass(frozen=True, slots=True)
class CsrfOptions:
    """Where the two halves of the double-submit token live.

    :param payload_key: key of the CONNECT ``auth`` object.
    :param cookie_name: name of the cookie.
    """

    payload_key: str = "csrf_token"
    cookie_name: str = "csrf_token"

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> CsrfOptions:
        """Build from the ``[security.csrf]`` table (keys ``payload_key``, ``cookie_name``)."""
        return cls(
            payload_key=opt.nonempty_str(
                mapping, "payload_key", "security.csrf.payload_key", "csrf_token"
            ),
            cookie_name=opt.nonempty_str(
                mapping, "cookie_name", "security.csrf.cookie_name", "csrf_token"
            ),
        )


def check_csrf(
    credentials: Credentials, options: CsrfOptions = CsrfOptions()
) -> AuthFailure | None:
    """Return ``None`` if the payload token equals the cookie token, else the refusal.

    Either half missing, empty or not a string is refused.

    :param credentials: the handshake credentials.
    :param options: where to read the two halves.
    """
    payload = credentials.auth_payload
    submitted = payload.get(options.payload_key) if payload is not None else None
    cookie = credentials.cookies.get(options.cookie_name)
    if not isinstance(submitted, str) or not submitted or not cookie:
        return CSRF_MISSING
    if not hmac.compare_digest(submitted.encode("utf-8"), cookie.encode("utf-8")):
        return CSRF_MISMATCH
    return None
