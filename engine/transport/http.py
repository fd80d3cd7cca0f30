"""Plain HTTP beside Socket.IO: a tiny ASGI router and the monitoring routes.

Routes: health (`/healthz`, `/readyz`, built by `engine.app`), every prometheus sink's `path`
(bearer token when configured), the dashboard, its stats JSON and its login form. Only the login
route accepts POST, with a capped body. Secrets (admin and scrape tokens) are compared in constant
time and never echoed in responses or logs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.monitoring import (
    ADMIN_COOKIE,
    Monitor,
    admin_cookie,
    check_admin,
    dashboard_html,
    login_html,
)
from engine.monitoring.dashboard import is_loopback
from engine.monitoring.sinks import PrometheusSink

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("engine.http")

READ_ONLY = frozenset({"GET", "HEAD"})
LOGIN_MAX_BODY_BYTES = 4096
ADMIN_COOKIE_MAX_AGE = 8 * 3600


@dataclass(frozen=True, slots=True)
class Request:
    """What a route sees of one HTTP request (header names lower-cased)."""

    method: str
    path: str
    scheme: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    client: str | None = None
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response; `Router` adds `content-length` and `cache-control: no-store`."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(
        cls, status: int, body: Mapping[str, object], headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        return cls(status, json.dumps(body).encode(), "application/json", headers)

    @classmethod
    def error(
        cls, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        return cls.json(status, {"error": {"code": code, "message": message}}, headers)

    @classmethod
    def redirect(cls, location: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls(303, b"", "text/plain; charset=utf-8", (("location", location), *headers))


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """A handler, the methods it answers and, for POST, the largest body it reads."""

    handler: Handler
    methods: frozenset[str] = READ_ONLY
    max_body_bytes: int = 0


def parse_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name_b, value_b in raw:
        name = name_b.decode("latin-1").lower()
        value = value_b.decode("latin-1")
        if name in headers:
            headers[name] += ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    return headers


def parse_cookies(header: str) -> dict[str, str]:
    """`Cookie` header -> name: value (first occurrence wins, malformed pairs skipped)."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, refusing (BodyTooLarge) anything above `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_response(send: Send, response: Response, *, head: bool = False) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """Readiness is driven by `engine.serve`, so lifespan only has to be acknowledged."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def dispatch(routes: Mapping[str, Route], scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ASGI connection from `routes` (path -> Route); lifespan is acknowledged."""
    if scope["type"] == "lifespan":
        await acknowledge_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    route = routes.get(scope["path"])
    if route is None:
        await send_response(send, Response.error(404, "not_found", "not found"))
        return
    method = scope["method"]
    if method not in route.methods:
        allow = ", ".join(sorted(route.methods))
        await send_response(
            send,
            Response.error(
                405, "method_not_allowed", f"allowed: {allow}", headers=(("allow", allow),)
            ),
        )
        return
    headers = parse_headers(scope.get("headers", ()))
    body = b""
    if method not in READ_ONLY:
        declared = headers.get("content-length", "0")
        too_large = not declared.isdigit() or int(declared) > route.max_body_bytes
        if not too_large:
            try:
                body = await read_body(receive, route.max_body_bytes)
            except BodyTooLarge:
                too_large = True
        if too_large:
            await send_response(send, Response.error(413, "too_large", "request body too large"))
            return
    client = scope.get("client")
    request = Request(
        method=method,
        path=scope["path"],
        scheme=scope.get("scheme", "http"),
        headers=headers,
        cookies=parse_cookies(headers.get("cookie", "")),
        client=client[0] if client else None,
        body=body,
    )
    response = await route.handler(request)
    await send_response(send, response, head=method == "HEAD")


@dataclass(slots=True)
class Router:
    """A standalone ASGI app over `routes` (used for separate metrics listeners)."""

    routes: dict[str, Route] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await dispatch(self.routes, scope, receive, send)


# -- prometheus ------------------------------------------------------------------------------


def metrics_route(monitor: Monitor, sink: PrometheusSink) -> Route:
    """`GET sink.options.path`: the exposition; 401 without the bearer token when one is set."""

    async def metrics(request: Request) -> Response:
        if not sink.authorized(request.headers):
            return Response.error(
                401,
                "unauthorized",
                "bearer token required",
                headers=(("www-authenticate", 'Bearer realm="metrics"'),),
            )
        body, content_type = monitor.render_prometheus()
        return Response(200, body, content_type)

    return Route(metrics)


def metrics_routes(monitor: Monitor, bind: str | None) -> dict[str, Route]:
    """Routes of the prometheus sinks served on `bind` (None: the engine's own listener)."""
    return {
        sink.options.path: metrics_route(monitor, sink)
        for sink in monitor.prometheus_sinks
        if sink.options.bind == bind
    }


def metrics_binds(monitor: Monitor) -> tuple[str, ...]:
    """Distinct separate listeners the prometheus sinks ask for, in profile order."""
    return tuple(dict.fromkeys(s.options.bind for s in monitor.prometheus_sinks if s.options.bind))


# -- dashboard -------------------------------------------------------------------------------

_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def content_security_policy(page: bytes) -> str:
    """A strict CSP admitting exactly the page's inline scripts (by hash) and same-origin fetch."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in _SCRIPT.finditer(page)
    )
    scripts = hashes or "'none'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


PAGE_HEADERS = (("referrer-policy", "no-referrer"), ("x-frame-options", "DENY"))


def _same_origin(request: Request) -> bool:
    """Refuse a browser POST sent from another site (login CSRF).

    `Sec-Fetch-Site` decides when the browser sends it; otherwise a present `Origin` must be this
    host (`null`, sent under a no-referrer policy, is undecidable and admitted).
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


@dataclass(slots=True)
class DashboardRoutes:
    """The dashboard page, its stats JSON and the login form, all behind the admin token.

    :param monitor: the engine's monitor (options, stats, security events).
    :param secure_cookie: mark the admin cookie `Secure` (off only for plain-HTTP development).
    """

    monitor: Monitor
    secure_cookie: bool = True
    _page: bytes = b""
    _csp: str = ""
    _login_csp: str = ""

    def __post_init__(self) -> None:
        options = self.monitor.options.dashboard
        self._page = dashboard_html(options.stats_path, login_path=self.login_path)
        self._csp = content_security_policy(self._page)
        self._login_csp = content_security_policy(login_html(self.login_path))

    @property
    def login_path(self) -> str:
        return self.monitor.options.dashboard.path.rstrip("/") + "/login"

    def routes(self) -> dict[str, Route]:
        options = self.monitor.options.dashboard
        if not options.enabled:
            return {}
        if not options.token:
            log.debug(
                "monitoring.dashboard has no token: %s admits local clients only", options.path
            )
        return {
            options.path: Route(self.dashboard),
            options.stats_path: Route(self.stats),
            self.login_path: Route(
                self.login, READ_ONLY | {"POST"}, max_body_bytes=LOGIN_MAX_BODY_BYTES
            ),
        }

    def admitted(self, request: Request) -> bool:
        """The admin token when one is set; without one, only a peer on this machine.

        A profile may leave the token out only while the engine listens on a loopback
        address (checked at validation and for `--bind`); the peer check holds even so, e.g.
        behind a local reverse proxy that would forward remote clients.
        """
        token = self.monitor.options.dashboard.token
        if token is None:
            return request.client is not None and is_loopback(request.client)
        return check_admin(request.headers, request.cookies, token)

    def page(self, body: bytes, csp: str, status: int = 200) -> Response:
        headers = (("content-security-policy", csp), *PAGE_HEADERS)
        return Response(status, body, "text/html; charset=utf-8", headers)

    async def dashboard(self, request: Request) -> Response:
        if not self.admitted(request):
            return Response.redirect(self.login_path)
        return self.page(self._page, self._csp)

    async def stats(self, request: Request) -> Response:
        if not self.admitted(request):
            return Response.error(
                401,
                "unauthorized",
                "admin token required",
                headers=(("www-authenticate", 'Bearer realm="engine"'),),
            )
        return Response.json(200, self.monitor.stats(self.monitor.now()))

    async def login(self, request: Request) -> Response:
        if request.method != "POST":
            if self.admitted(request):
                return Response.redirect(self.monitor.options.dashboard.path)
            return self.page(login_html(self.login_path), self._login_csp)
        if not _same_origin(request):
            return Response.error(403, "cross_origin", "cross-origin login refused")
        form = parse_qs(request.body.decode("utf-8", "replace"), max_num_fields=4)
        given = (form.get("token") or [""])[0]
        token = self.monitor.options.dashboard.token
        if not check_admin({}, {ADMIN_COOKIE: given}, token):
            self.monitor.security_event(
                {"type": "admin_login_failed", "ip": request.client, "path": request.path}
            )
            body = login_html(self.login_path, error="Wrong token.")
            return self.page(body, self._login_csp, status=401)
        assert token is not None  # check_admin admits nothing without one
        self.monitor.security_event({"type": "admin_login", "ip": request.client})
        cookie = admin_cookie(token, secure=self.secure_cookie, max_age=ADMIN_COOKIE_MAX_AGE)
        return Response.redirect(
            self.monitor.options.dashboard.path, headers=(("set-cookie", cookie),)
        )
