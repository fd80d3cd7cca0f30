"""`engine [run] --profile FILE [--bind HOST:PORT]`: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path

import anyio

from engine.errors import EX_FAILURE, EX_OK, EX_USAGE
from engine.profile.build import load_profile
from engine.profile.model import Profile
from engine.profile.schema import data_file
from engine.serve import parse_bind, serve


def command(profile_path: Path | None, bind: str | None) -> int:
    path = profile_path or data_file("development.toml", "profiles")
    profile = load_profile(path)
    if bind is not None:
        try:
            parse_bind(bind)
        except ValueError as exc:
            print(f"engine: error: {exc}", file=sys.stderr)
            return EX_USAGE
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
    await serve(profile, bind=bind)
