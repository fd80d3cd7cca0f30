"""Micro-benchmark: the engine's own CPU cost of one admitted event, in process.

    python -m bench.micro_event [--events 50000] [--repeat 3] [--cprofile]

Builds the guard and monitor of `bench/profiles/production-bench.toml` the way `build_app` does
(no sockets, no server), connects one member with a JWT through `Guard.admit_connect`, then
times what the server adapter calls for each `echo` event that passes every policy:
`Monitor.event_in`, `Guard.admit_event` and `Monitor.handler_finished` (the handler itself and
the transport are left out: they are not the chain's cost). Reports microseconds per event for
the whole path and for the guard and the monitor alone, in process CPU time (the machine may be
shared: CPU time is less disturbed by other processes than wall time); the median of `--repeat`
runs is the figure to compare. The socket-level benchmark is `bench.run`; this isolates what
the policies and the metrics cost, which it cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import jwt

from engine.app import declared_events
from engine.guard import Guard, Member, Peer
from engine.monitoring import Monitor
from engine.profile.build import load_profile
from engine.profile.model import NamespaceSpec
from engine.runtime import Runtime, RuntimeRef
from engine.state import build_store

PROFILE = Path(__file__).resolve().parent / "profiles" / "production-bench.toml"
SECRET = "micro-benchmark-secret-of-at-least-32-bytes"
NAMESPACE = "/"
EVENT = "echo"
PAYLOAD = "x" * 64  # what the load generator sends
JOINED_ROOMS = 3  # the profile's auto_join


async def build(log_dir: str) -> tuple[Guard, Monitor, NamespaceSpec, Member]:
    environ = {
        "ENGINE_JWT_SECRET": SECRET,
        "ENGINE_ADMIN_TOKEN": "micro-benchmark-admin-token",
        "ENGINE_SECURITY_LOG": str(Path(log_dir) / "security.jsonl"),
    }
    profile = load_profile(PROFILE, environ)
    monitor = Monitor(
        profile.monitoring,
        profile_name=profile.engine.name,
        config_hash=profile.config_hash,
        declared_events=declared_events(profile),
    )
    store = build_store(profile.cluster, max_keys=profile.security.max_tracked_keys)
    guard = Guard(RuntimeRef(Runtime.build(profile)), monitor, store)
    spec = profile.namespaces[NAMESPACE]
    token = jwt.encode(
        {"sub": "bench-1", "roles": ["user"], "exp": int(time.time()) + 3600},
        SECRET,
        algorithm="HS256",
    )
    peer = Peer("127.0.0.1", {}, {}, guard.clock())
    member = await guard.admit_connect(spec, peer, "sid-1", {"token": token}, "eio-1")
    return guard, monitor, spec, member


Loop = Callable[[int], Awaitable[None]]


def loops(guard: Guard, monitor: Monitor, spec: NamespaceSpec, member: Member) -> dict[str, Loop]:
    nbytes = len(PAYLOAD) + len(EVENT) + 8

    async def whole(n: int) -> None:
        for _ in range(n):
            monitor.event_in(NAMESPACE, EVENT, nbytes)
            started = time.perf_counter()
            await guard.admit_event(spec, member, EVENT, [PAYLOAD], JOINED_ROOMS)
            monitor.handler_finished(NAMESPACE, EVENT, time.perf_counter() - started, error=False)

    async def guard_only(n: int) -> None:
        for _ in range(n):
            await guard.admit_event(spec, member, EVENT, [PAYLOAD], JOINED_ROOMS)

    async def monitor_only(n: int) -> None:
        for _ in range(n):
            monitor.event_in(NAMESPACE, EVENT, nbytes)
            monitor.handler_finished(NAMESPACE, EVENT, 0.0001, error=False)

    return {"event": whole, "guard": guard_only, "monitor": monitor_only}


async def measure(events: int, repeat: int, profile_to: str | None) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="micro-event-") as log_dir:
        guard, monitor, spec, member = await build(log_dir)
        timed = loops(guard, monitor, spec, member)
        await timed["event"](2000)  # warm up: caches, label children, buckets
        if profile_to is not None:
            profiler = cProfile.Profile()
            profiler.enable()
            await timed["event"](events)
            profiler.disable()
            profiler.dump_stats(profile_to)
        results: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(repeat):
            for name, run in timed.items():
                started = time.process_time()
                await run(events)
                results[name].append((time.process_time() - started) / events * 1e6)
        # every event above must have been admitted: a refusal would have raised
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_event", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median kept)")
    parser.add_argument("--cprofile", metavar="FILE", help="also profile one run into FILE")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.events, args.repeat, args.cprofile))
    for name, runs in results.items():
        shown = " ".join(f"{r:.2f}" for r in runs)
        print(f"{name:8} {statistics.median(runs):7.2f} us/event CPU  (runs: {shown})")
    if args.cprofile:
        pstats.Stats(args.cprofile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
