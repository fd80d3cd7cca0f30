"""`engine reload [--profile FILE] [--url URL]`: ask a running engine to swap its profile.

The engine validates the file, diffs it against the profile it runs, applies live changes
atomically or refuses the whole reload (invalid, or a change that needs a restart) and keeps
serving the old one. This command prints the engine's report and exits non-zero on refusal.
The bearer token is `$ENGINE_ADMIN_TOKEN` when set, else the profile's `[admin] token`.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from engine.errors import EX_CONFIG, EX_FAILURE, EX_OK, EX_USAGE, ProfileError
from engine.profile.build import load_profile

EX_NOPERM = 77
EX_UNAVAILABLE = 69
TOKEN_VARIABLE = "ENGINE_ADMIN_TOKEN"


def command(profile_file: Path | None, url: str | None, timeout: float = 30.0) -> int:
    if profile_file is None and url is None:
        print("engine reload: give --profile FILE, --url URL, or both", file=sys.stderr)
        return EX_USAGE
    token = os.environ.get(TOKEN_VARIABLE)
    path = "/engine/api/reload"
    if profile_file is not None:
        try:
            profile = load_profile(profile_file)
        except ProfileError as exc:
            print(str(exc), file=sys.stderr)
            print(f"engine reload: {profile_file} is invalid; nothing was sent", file=sys.stderr)
            return EX_CONFIG
        token = token or profile.admin.token
        path = profile.admin.path
        if url is None:
            host = profile.server.host
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            host = f"[{host}]" if ":" in host else host
            scheme = "https" if profile.server.tls_cert_file else "http"
            url = f"{scheme}://{host}:{profile.server.port}"
    if token is None:
        print(
            f"engine reload: no admin token: set {TOKEN_VARIABLE} or [admin] token",
            file=sys.stderr,
        )
        return EX_USAGE
    assert url is not None
    body = {"profile": str(profile_file.resolve())} if profile_file is not None else {}
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        print(f"engine reload: cannot reach {url}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    try:
        report = json.loads(text)
    except ValueError:
        report = {}
    if status in (401, 403):
        print(f"engine reload: {url} refused the token (HTTP {status})", file=sys.stderr)
        return EX_NOPERM
    if "outcome" not in report:
        print(f"engine reload: unexpected answer from {url} (HTTP {status})", file=sys.stderr)
        return EX_FAILURE
    print(render(report))
    return {"applied": EX_OK, "unchanged": EX_OK, "invalid": EX_CONFIG}.get(
        report["outcome"], EX_FAILURE
    )


def render(report: dict[str, object]) -> str:
    lines = [
        f"reload {report['outcome']}: {report.get('old_config_hash')} -> "
        f"{report.get('new_config_hash') or '-'}"
    ]
    for key, title in (
        ("errors", "error"),
        ("restart_required", "restart required (the running profile is unchanged)"),
        ("live", "live"),
    ):
        items = report.get(key) or []
        assert isinstance(items, list)
        if items:
            lines.append(f"  {title}:")
            lines += [f"    {item}" for item in items]
    return "\n".join(lines)
