"""The dashboard page, its login page, and the admin check guarding both and the stats endpoint."""

from __future__ import annotations

import functools
import hmac
import html
import ipaddress
import json
from collections.abc import Mapping
from importlib import resources

from engine.monitoring.sinks.prometheus import bearer_ok

__all__ = [
    "ADMIN_COOKIE",
    "admin_cookie",
    "check_admin",
    "dashboard_html",
    "is_loopback",
    "login_html",
]

ADMIN_COOKIE = "engine_admin_token"


@functools.cache
def _template(name: str) -> str:
    return resources.files("engine.monitoring").joinpath(name).read_text(encoding="utf-8")


def _js_string(value: str) -> str:
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


def dashboard_html(stats_path: str, login_path: str = "login") -> bytes:
    """The self-contained dashboard page, polling ``stats_path``.

    :param stats_path: URL path of the stats JSON (``[monitoring.dashboard] stats_path``).
    :param login_path: where the "log in" link points when the stats request is refused.
    """
    page = _template("dashboard.html").replace('"__STATS_PATH__"', _js_string(stats_path), 1)
    page = page.replace('"__LOGIN_PATH__"', _js_string(login_path), 1)
    return page.encode("utf-8")


def login_html(action: str, error: str | None = None) -> bytes:
    """The login form, posting field ``token`` to ``action``.

    :param action: URL path the form posts to (the app answers with :func:`admin_cookie`).
    :param error: message to show, e.g. after a wrong token.
    """
    page = _template("login.html")
    page = page.replace("__ACTION__", html.escape(action, quote=True), 1)
    page = page.replace("__ERROR__", html.escape(error or ""), 1)
    return page.encode("utf-8")


def admin_cookie(token: str, *, path: str = "/", secure: bool = True, max_age: int = 3600) -> str:
    """A ``Set-Cookie`` value storing the admin token (HttpOnly, SameSite=Strict).

    :param token: the configured admin token (already checked by the caller).
    :param path: cookie path.
    :param secure: add ``Secure`` (leave on unless serving plain HTTP in development).
    :param max_age: lifetime in seconds.
    """
    parts = [
        f"{ADMIN_COOKIE}={token}",
        f"Path={path}",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def check_admin(headers: Mapping[str, str], cookies: Mapping[str, str], token: str | None) -> bool:
    """Whether a request carries the admin token (constant-time compare).

    Accepts ``Authorization: Bearer <token>`` or the ``engine_admin_token`` cookie. Without a
    configured ``token`` nothing is admitted (fail closed); the caller decides whether an
    unprotected dashboard is acceptable.
    """
    if not token:
        return False
    if bearer_ok(headers, token) and _has_authorization(headers):
        return True
    cookie = cookies.get(ADMIN_COOKIE)
    if cookie is None:
        return False
    return hmac.compare_digest(cookie.encode("utf-8"), token.encode("utf-8"))


def _has_authorization(headers: Mapping[str, str]) -> bool:
    return any(key.lower() == "authorization" for key in headers)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
