"""What browsers need from the engine: the client configuration and the client helper.

- `GET /engine/api/client-config`: the client options the profile implies (path, transports,
  namespaces and which of them recover sessions, ping settings, reconnection backoff and, per
  refusal code, whether to retry, from the one taxonomy in `engine.policies.codes`);
- `GET /engine/client.js`: an ES module around the official client (`socket.io.esm.min.js`,
  socket.io-client 4.8.4, MIT, vendored next to it and served at `/engine/socket.io.esm.min.js`:
  no CDN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.policies.codes import CODES
from engine.profile.model import Profile
from engine.progress import EVENTS
from engine.transport.http import Request, Response, Route

CLIENT_JS_PATH = "/engine/client.js"
BUNDLE_PATH = "/engine/socket.io.esm.min.js"
CONFIG_PATH = "/engine/api/client-config"
_HERE = Path(__file__).resolve().parent
# reconnection backoff of the official client's Manager (its defaults, stated once here)
RECONNECTION = {"delay_ms": 1000, "delay_max_ms": 5000, "randomization_factor": 0.5}


def client_config(profile: Profile) -> dict[str, Any]:
    """The client options `profile` implies: nothing secret, nothing the browser must guess."""
    server = profile.server
    progress = profile.progress
    return {
        "path": server.path.rstrip("/") + "/",
        "transports": list(server.transports),
        "ping_interval_ms": int(server.ping_interval_seconds * 1000),
        "ping_timeout_ms": int(server.ping_timeout_seconds * 1000),
        "namespaces": {
            name: {
                "recovery": (
                    {"max_disconnection_seconds": spec.recovery.max_disconnection_seconds}
                    if spec.recovery is not None
                    else None
                ),
                "require_auth": spec.require_auth,
            }
            for name, spec in profile.namespaces.items()
        },
        "reconnection": {
            **RECONNECTION,
            # a refusal with one of these codes is retried (after retry_after_seconds when it
            # says so, otherwise with the backoff); any other code is final
            "retry_codes": sorted(code for code, c in CODES.items() if c.recoverable),
        },
        "progress": (
            {
                "namespace": progress.namespace,
                "events": sorted(EVENTS.values()),
                "allow_cancel": progress.allow_cancel,
            }
            if progress.enabled
            else None
        ),
    }


# public and secret-free: pages on other origins (the app's) may load them
PUBLIC = (("access-control-allow-origin", "*"),)


def _static(name: str, content_type: str) -> Route:
    body = (_HERE / name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(200, body, content_type, PUBLIC)

    return Route(serve)


def client_routes(profile_of: Any) -> dict[str, Route]:
    """The three routes; `profile_of()` is the current profile (the config follows reloads)."""

    async def config(request: Request) -> Response:
        return Response.json(200, client_config(profile_of()), PUBLIC)

    return {
        CONFIG_PATH: Route(config),
        CLIENT_JS_PATH: _static("client.js", "text/javascript; charset=utf-8"),
        BUNDLE_PATH: _static("socket.io.esm.min.js", "text/javascript; charset=utf-8"),
    }
