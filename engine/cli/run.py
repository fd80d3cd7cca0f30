"""`engine [run] --profile FILE [--bind HOST:PORT]`: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import errno
import logging
import sys
from functools import partial
from pathlib import Path

import anyio

from engine.errors import EX_FAILURE, EX_OK, EX_USAGE, Diagnostic, ProfileError
from engine.profile.build import load_profile
from engine.profile.checks import dashboard_exposure
from engine.profile.model import Profile
from engine.profile.schema import data_file
from engine.serve import Running, parse_bind, serve


def command(profile_path: Path | None, bind: str | None) -> int:
    path = profile_path or data_file("development.toml", "profiles")
    profile = load_profile(path)
    if bind is not None:
        try:
            host, _port = parse_bind(bind)
        except ValueError as exc:
            print(f"engine: error: {exc}", file=sys.stderr)
            return EX_USAGE
        dashboard = profile.monitoring.dashboard
        problem = dashboard_exposure(
            host, enabled=dashboard.enabled, has_token=dashboard.token is not None
        )
        if problem:
            raise ProfileError(
                [Diagnostic(profile.source, "monitoring.dashboard", f"--bind {bind}: {problem}")]
            )
    logging.basicConfig(
        level=profile.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        anyio.run(
            _serve,
            profile,
            bind,
            backend="asyncio",
            backend_options={"use_uvloop": profile.server.event_loop == "uvloop"},
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            where = bind or profile.server.bind
            print(f"engine: error: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
            return EX_FAILURE
        raise
    return EX_OK


async def _serve(profile: Profile, bind: str | None) -> None:
    async with anyio.create_task_group() as tasks:
        running: Running = await tasks.start(partial(serve, profile, bind=bind))
        for line in where_to_look(running):
            print(line, file=sys.stderr, flush=True)


def where_to_look(running: Running) -> list[str]:
    """The dashboard's and the metrics' URLs of a serving engine, one line each."""
    lines = []
    dashboard = running.engine.profile.monitoring.dashboard
    if dashboard.enabled:
        note = "" if dashboard.token else " (no token: local clients only)"
        lines.append(f"engine dashboard: {running.url}{dashboard.path}{note}")
    for sink in running.engine.monitor.prometheus_sinks:
        base = running.metrics_urls.get(sink.options.bind or "", running.url)
        lines.append(f"engine metrics: {base}{sink.options.path}")
    return lines
