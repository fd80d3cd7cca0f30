"""``[server] workers = N``: one supervisor process, N engine worker processes on one port.

Each worker is ``python -m engine run --profile FILE [--bind ...]`` with ``ENGINE_WORKER_INDEX``
set to its index (1..N). A worker binds the node's port with SO_REUSEPORT (the kernel spreads
new TCP connections over the workers) and its own port ``port + index`` (for a balancer that
must keep a long-polling client on one worker, see `engine.cluster.topology`). With
``adapter = "redis"`` the workers form a cluster like any other nodes.

The supervisor starts the workers, starts a dead one again (with backoff; a worker that keeps
dying at start, or exits with the invalid-profile code, stops everything), forwards SIGHUP
(reload) and SIGTERM/SIGINT (drain; a second one skips the wait) to every worker, and exits 0
once all of them have drained.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import Process

from engine.cluster.options import ClusterOptions
from engine.errors import EX_CONFIG, EX_FAILURE, EX_OK

__all__ = ["WORKER_ENV", "Supervisor", "node_identity", "worker_index"]

log = logging.getLogger("engine.workers")

WORKER_ENV = "ENGINE_WORKER_INDEX"
QUICK_EXIT_SECONDS = 5.0  # a worker that dies sooner than this after its start failed to start
MAX_QUICK_EXITS = 5  # in a row: give up
RESTART_BACKOFF_SECONDS = (0.0, 0.5, 1.0, 2.0, 5.0)


def worker_index(environ: Mapping[str, str] = os.environ) -> int | None:
    """This process's worker index (1..N) when a supervisor started it, else None."""
    value = environ.get(WORKER_ENV, "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def node_identity(cluster: ClusterOptions, environ: Mapping[str, str] = os.environ) -> str:
    """This process's node id: the profile's ``node_id`` (``.wI`` appended in worker I), or
    host name and process id."""
    index = worker_index(environ)
    if cluster.node_id:
        return cluster.node_id if index is None else f"{cluster.node_id}.w{index}"
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_command(profile_path: str, bind: str | None) -> list[str]:
    """The command line of one worker (the same program, the same profile and bind)."""
    command = [sys.executable, "-m", "engine", "run", "--profile", profile_path]
    return command + (["--bind", bind] if bind else [])


@dataclass(slots=True)
class Supervisor:
    """Runs `workers` copies of `command` until SIGTERM/SIGINT; see the module docstring.

    :param command: a worker's command line.
    :param workers: how many workers.
    :param environ: the workers' environment (``ENGINE_WORKER_INDEX`` is added).
    """

    command: Sequence[str]
    workers: int
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: dict[int, Process] = field(default_factory=dict)
    stopping: bool = False
    exit_code: int = EX_OK
    restarts: int = 0
    stopped: anyio.Event | None = None

    async def run(self) -> int:
        """Supervise until every worker has exited after a stop; the process exit code."""
        self.stopped = anyio.Event()
        stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with anyio.open_signal_receiver(*stop_signals) as received:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._forward, received)
                async with anyio.create_task_group() as keepers:
                    for index in range(1, self.workers + 1):
                        keepers.start_soon(self._keep, index)
                tasks.cancel_scope.cancel()  # every worker is gone: stop forwarding
        log.info("engine supervisor: all workers stopped (exit %d)", self.exit_code)
        return self.exit_code

    async def _forward(self, received: Any) -> None:
        async for signum in received:
            if signum == signal.SIGHUP:
                log.info("engine supervisor: SIGHUP, reloading %d workers", len(self.processes))
                self._send(signal.SIGHUP)
                continue
            if not self.stopping:
                log.info("engine supervisor: %s, draining workers", signal.Signals(signum).name)
            self._stopping()
            self._send(signal.SIGTERM)  # a second one makes workers skip their drain wait

    def _send(self, signum: signal.Signals) -> None:
        for process in list(self.processes.values()):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def _stop_all(self, code: int) -> None:
        if not self.stopping:
            self.exit_code = code
            self._stopping()
            self._send(signal.SIGTERM)

    def _stopping(self) -> None:
        self.stopping = True
        if self.stopped is not None:
            self.stopped.set()

    async def _keep(self, index: int) -> None:
        """Run worker `index`, starting it again whenever it dies, until stopping."""
        quick_exits = 0
        env = {**self.environ, WORKER_ENV: str(index)}
        while not self.stopping:
            started = time.monotonic()
            process = await anyio.open_process(
                list(self.command), env=env, stdin=subprocess.DEVNULL, stdout=None, stderr=None
            )
            self.processes[index] = process
            log.info("engine supervisor: worker %d started (pid %d)", index, process.pid)
            code = await process.wait()
            del self.processes[index]
            if self.stopping:
                log.info(
                    "engine supervisor: worker %d (pid %d) exited %d", index, process.pid, code
                )
                break
            if code == EX_CONFIG:
                log.error("engine supervisor: worker %d refused the profile; stopping", index)
                self._stop_all(EX_CONFIG)
                break
            quick_exits = quick_exits + 1 if time.monotonic() - started < QUICK_EXIT_SECONDS else 0
            if quick_exits >= MAX_QUICK_EXITS:
                log.error(
                    "engine supervisor: worker %d died %d times right after starting; stopping",
                    index,
                    quick_exits,
                )
                self._stop_all(EX_FAILURE)
                break
            self.restarts += 1
            delay = RESTART_BACKOFF_SECONDS[min(quick_exits, len(RESTART_BACKOFF_SECONDS) - 1)]
            log.error(
                "engine supervisor: worker %d (pid %d) died (%s); restarting it in %gs",
                index,
                process.pid,
                _exit_reason(code),
                delay,
            )
            if delay and self.stopped is not None:
                with anyio.move_on_after(delay):
                    await self.stopped.wait()  # a stop during the backoff ends it early


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"
