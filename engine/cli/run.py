"""`engine [run] --profile FILE [--bind HOST:PORT]`: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import errno
import logging
import sys
from functools import partial
from pathlib import Path

import anyio

from engine.cluster.workers import Supervisor, worker_command, worker_index
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
    worker = worker_index()
    if profile.server.workers > 1 and worker is None:
        return _supervise(profile, bind)
    try:
        anyio.run(
            _serve,
            profile,
            bind,
            worker,
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


def _supervise(profile: Profile, bind: str | None) -> int:
    """`[server] workers > 1`: this process supervises the workers (engine.cluster.workers)."""
    if (bind and parse_bind(bind)[1] == 0) or (not bind and profile.server.port == 0):
        print("engine: error: several workers need a fixed port to share", file=sys.stderr)
        return EX_USAGE
    if profile.path is None:
        print("engine: error: workers need a profile file to load", file=sys.stderr)
        return EX_USAGE
    supervisor = Supervisor(worker_command(str(profile.path), bind), profile.server.workers)
    print(
        f"engine supervisor: {profile.server.workers} workers on {bind or profile.server.bind}",
        file=sys.stderr,
        flush=True,
    )
    return anyio.run(supervisor.run, backend="asyncio")


async def _serve(profile: Profile, bind: str | None, worker: int | None) -> None:
    async with anyio.create_task_group() as tasks:
        running: Running = await tasks.start(partial(serve, profile, bind=bind, worker=worker))
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
