"""Shared fixtures: a real engine on 127.0.0.1:0 and real python-socketio clients."""

from __future__ import annotations

import gc
import os
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import pytest

from engine.profile.build import load_profile
from engine.serve import Running, serve
from tests.redis_server import redis_server

__all__ = ["redis_server"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[..., Path]:
    """Write a profile text into tmp_path and return its path."""

    def write(text: str, name: str = "profile.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@asynccontextmanager
async def serving(path: Path, environ: dict[str, str] | None = None) -> AsyncIterator[Running]:
    """Serve a profile in this event loop on a free port until the block exits."""
    profile = load_profile(path, environ or {})
    async with anyio.create_task_group() as tasks:
        running: Running = await tasks.start(
            partial(serve, profile, bind="127.0.0.1:0", signals=False)
        )
        try:
            yield running
        finally:
            running.stop()
    collect_shutdown_sockets()


def collect_shutdown_sockets() -> None:
    """Collect, quietly, the sockets of connections accepted while the server shut down.

    asyncio creates a task per accepted connection; when the server is closing, hypercorn
    cancels a task that has not started yet, and a never-started task runs no `finally`: its
    transport stays open until the garbage collector finds it and warns (an upstream race of
    hypercorn's shutdown on asyncio; a process that exits loses nothing). Collected here, right
    after the server stopped, the warning cannot surface in whichever test runs next. Only
    `unclosed` socket/transport warnings are silenced, and only for this collection.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="unclosed", category=ResourceWarning)
        gc.collect()


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


PYTHON = sys.executable


async def release(client: object) -> None:
    """Close the HTTP session python-engineio leaves open after a refused connection."""
    http = getattr(getattr(client, "eio", None), "http", None)
    if http is not None and not http.closed:
        await http.close()
